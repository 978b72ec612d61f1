"""Compose routed agent graphs: the :class:`AgentGraph` builder compiles to a LangGraph ``StateGraph``.

The builder validates each ``add_*`` call; :meth:`AgentGraph.compile` validates the whole graph,
derives the stage machine (one stage per role unless given, transitions from the edges) and
returns a :class:`CompiledAgentGraph` with the runtime injected: pool, router, memory, budget
and an optional LangGraph checkpointer. Every role node is one routed step through the
:class:`~agentroute.dispatch.Dispatcher`; plain nodes (retrieval, tools) run Python.

>>> g = AgentGraph("echo").add_role("executor", prompt="Answer the question.")
>>> sorted(g.nodes)
['executor']
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import difflib
import functools
import inspect
import logging
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Hashable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Self, TypedDict, TypeVar

from agentroute.budget import Budget
from agentroute.dispatch.dispatcher import Dispatcher, Postcondition
from agentroute.dispatch.run import LIVE, TaskRun, merge_checkpoints
from agentroute.dispatch.skills import SkillRegistry
from agentroute.dispatch.stages import StageMachine
from agentroute.errors import ConfigurationError
from agentroute.graph_runtime import (
    CHANNEL,
    aclaimed_stream,
    aflush_memory,
    agentroute_state,
    aholding,
    checkpointed,
    claimed_stream,
    claiming,
    durable_saver,
    graph_path,
    holding,
    is_request,
    new_task,
    open_task,
    rebuild,
    recorded_ledger,
    report_step,
    restart_paused,
    routed_node,
    run_sync,
    runnable,
    step_outputs,
    stoppable_in_kernel,
)
from agentroute.memory.base import MemoryStore
from agentroute.memory.codec import FEEDBACK_KEY
from agentroute.pool.pool import ModelPool
from agentroute.routers.base import Router
from agentroute.types import Step, Task, check_role, new_id

log = logging.getLogger(__name__)
T = TypeVar("T")

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig
    from langgraph.graph.state import CompiledStateGraph
    from langgraph.types import StateSnapshot, StreamWriter

    from agentroute.eval.answers import Metric

    # the mixin's base for the type checker: at run time LangGraph's class is combined with it by
    # _compiled_class() (importing LangGraph here would make `import agentroute` heavy)
    _LangGraphCompiled = CompiledStateGraph[Any, Any, Any, Any]
else:
    _LangGraphCompiled = object

__all__ = [
    "END",
    "AgentGraph",
    "CompiledAgentGraph",
    "GraphState",
    "NodeContext",
    "RunResult",
    "claiming",
    "new_task",
    "routed_node",
    "run_sync",
]

END = "__end__"

_RESUMING: contextvars.ContextVar[str | None] = contextvars.ContextVar("agentroute_resuming", default=None)
"""The task :meth:`CompiledAgentGraph.aresume` continues (its nodes look the task up in the memory)."""


@dataclass(frozen=True)
class _Gold:
    """``arun``'s gold answers for its task, scored where the graph finishes it (:meth:`CompiledAgentGraph._leave`)."""

    task_id: str
    score: Callable[[str | None], float]
    source: str  # the feedback's: metric:<name>


_GOLD: contextvars.ContextVar[_Gold | None] = contextvars.ContextVar("agentroute_gold", default=None)


def _metric_name(metric: str | Metric) -> str:
    """``arun``'s metric as its feedback's source names it: the name given, else the callable's ``__name__``."""
    return metric if isinstance(metric, str) else str(getattr(metric, "__name__", "custom"))


def _merge(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    return {**(left or {}), **(right or {})}


class GraphState(TypedDict, total=False):
    """The LangGraph state of an agent graph.

    ``outputs`` maps each node to its latest output text; ``context`` holds what plain nodes
    produce (sub-questions, retrieved passages …). Both merge across nodes. ``agentroute`` is the
    task's checkpoint (id, ledger, step index, stage), saved with the thread by a checkpointer.
    """

    query: str
    task_id: str
    answer: str
    status: str
    outputs: Annotated[dict[str, Any], _merge]
    context: Annotated[dict[str, Any], _merge]
    agentroute: Annotated[dict[str, Any], merge_checkpoints]


@dataclass
class NodeContext:
    """What a plain node may use: the task run, its dispatcher and the skill registry."""

    run: TaskRun
    dispatcher: Dispatcher
    skills: SkillRegistry
    stage: str | None


InputFn = Callable[[GraphState], str]
FanOutFn = Callable[[GraphState], Sequence[str]]
NodeFn = Callable[[GraphState, NodeContext], Mapping[str, Any] | Any]


@dataclass
class _Role:
    name: str
    prompt: str
    stage: str
    input: InputFn | None
    fan_out: FanOutFn | None
    models: tuple[str, ...] | None
    max_tokens: int | None
    postconditions: tuple[Postcondition, ...]


@dataclass
class _Plain:
    name: str
    fn: NodeFn
    stage: str | None


@dataclass
class AgentGraph:
    """A mutable builder of routed agent graphs."""

    name: str
    nodes: dict[str, _Role | _Plain] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    #: conditional edges by source: (path function, targets); no path function: the node returns a Command
    branches: dict[str, tuple[Callable[[GraphState], str] | None, list[str]]] = field(default_factory=dict)
    entry: str | None = None
    skills: SkillRegistry = field(default_factory=SkillRegistry)

    # -- building ---------------------------------------------------------------------------
    def _new_node(self, name: str) -> None:
        if not name or name in (END, "__start__"):
            raise ConfigurationError(f"invalid node name {name!r}")
        if name in self.nodes:
            raise ConfigurationError(f"node {name!r} already exists in graph {self.name!r}")
        if self.entry is None:
            self.entry = name

    def add_role(
        self,
        role: str,
        *,
        prompt: str,
        stage: str | None = None,
        input: InputFn | None = None,
        fan_out: FanOutFn | None = None,
        models: Iterable[str] | None = None,
        max_tokens: int | None = None,
        postconditions: Iterable[Postcondition] = (),
    ) -> Self:
        """Add a routed step played by ``role``.

        Args:
            prompt: the role's system prompt.
            stage: its stage in the stage machine (default: the role name).
            input: builds the step's user message from the state (default: the query).
            fan_out: builds several inputs; one routed step each, run concurrently.
            models: restrict the models this role may be routed to.
            max_tokens: per-call output limit (default: the card's).
            postconditions: checks on the finished step; a failing one fails the step.
        """
        check_role(role)
        self._new_node(role)
        if input is not None and fan_out is not None:
            raise ConfigurationError(f"role {role!r}: give either input or fan_out, not both")
        self.nodes[role] = _Role(
            role,
            prompt,
            stage or role,
            input,
            fan_out,
            tuple(models) if models is not None else None,
            max_tokens,
            tuple(postconditions),
        )
        return self

    def add_node(
        self,
        name: str,
        fn: NodeFn,
        *,
        stage: str | None = None,
        destinations: Iterable[str] | None = None,
    ) -> Self:
        """Add a plain node ``fn(state, node_context) -> state update`` (sync or async).

        ``destinations``: the node routes itself, as in LangGraph, by returning
        ``Command(goto=one of destinations, update=...)`` (``END`` allowed): a supervisor handing
        the task to an agent. It then has no outgoing edges; a stopped task goes to the end.
        """
        self._new_node(name)
        if not callable(fn):
            raise ConfigurationError(f"node {name!r}: {fn!r} is not callable")
        self.nodes[name] = _Plain(name, fn, stage)
        if destinations is not None:
            targets = [destinations] if isinstance(destinations, str) else list(destinations)
            if not targets:
                raise ConfigurationError(f"node {name!r}: destinations is empty")
            self.branches[name] = (None, targets)
        return self

    def add_edge(self, src: str, dst: str) -> Self:
        """Go from ``src`` to ``dst``; as in LangGraph, either may be added later (checked at compile)."""
        if src == END:
            raise ConfigurationError("no edge may leave END")
        if src in self.branches:
            raise ConfigurationError(f"node {src!r} already routes by conditional edges or destinations")
        self.edges.append((src, dst))
        return self

    def add_conditional_edges(
        self, src: str, path: Callable[[GraphState], str], targets: Iterable[str]
    ) -> Self:
        """After ``src``, go where ``path(state)`` says, one of ``targets`` (END allowed)."""
        targets = list(targets)
        if any(s == src for s, _ in self.edges) or src in self.branches:
            raise ConfigurationError(f"node {src!r} already has outgoing edges")
        self.branches[src] = (path, targets)
        return self

    def set_entry(self, name: str) -> Self:
        if name not in self.nodes:
            raise ConfigurationError(f"unknown entry node {name!r}")
        self.entry = name
        return self

    def stage_machine(self) -> StageMachine:
        """Stages of the role nodes, transitions along the edges, each role bound to its stage."""
        stages = {n: node.stage for n, node in self.nodes.items() if node.stage is not None}
        if not stages:
            raise ConfigurationError(f"graph {self.name!r} has no routed roles")
        start = self.nodes[self.entry].stage if self.entry and self.nodes[self.entry].stage else None
        sm = StageMachine(list(dict.fromkeys(stages.values())), start=start or next(iter(stages.values())))
        succ = self._successors()
        for src, stage in stages.items():
            for dst_stage in self._next_stages(src, succ, stages):
                sm.add_transition(stage, dst_stage)
        for name, node in self.nodes.items():
            if isinstance(node, _Role):
                sm.bind(name, [node.stage])
        if start is None:  # a plain entry node: any stage reachable first is a legal start
            sm.start = stages[next(n for n in self._reachable() if n in stages)]
        return sm

    def _static_edges(self) -> dict[str, list[str]]:
        """Each node's successors along static edges (``END`` included), for nodes that have any."""
        static: dict[str, list[str]] = {}
        for src, dst in self.edges:
            static.setdefault(src, []).append(dst)
        return static

    def _successors(self) -> dict[str, list[str]]:
        succ: dict[str, list[str]] = {n: [] for n in self.nodes}
        for src, dst in self.edges:
            succ[src].append(dst)
        for src, (_, targets) in self.branches.items():
            succ[src].extend(targets)
        return succ

    def _next_stages(self, src: str, succ: dict[str, list[str]], stages: dict[str, str]) -> set[str]:
        """Stages reachable from ``src`` through plain (stage-less) nodes."""
        return {stages[n] for dst in succ[src] for n in self._first_staged(dst, succ)}

    def _first_staged(self, start: str, succ: dict[str, list[str]]) -> set[str]:
        """The nodes with a stage (roles, staged plain nodes) first reached from ``start``, itself
        included, through stage-less plain nodes."""
        out, todo, seen = set(), [start], set()
        while todo:
            n = todo.pop()
            if n == END or n in seen:
                continue
            seen.add(n)
            if self.nodes[n].stage is not None:
                out.add(n)
            else:
                todo.extend(succ[n])
        return out

    def _reachable(self) -> list[str]:
        succ, order, todo = self._successors(), [], [self.entry]
        while todo:
            n = todo.pop(0)
            if n is None or n == END or n in order:
                continue
            order.append(n)
            todo.extend(succ[n])
        return order

    def _check_no_parallel_roles(self) -> None:
        """Two staged nodes after one fork would run at once, but a task is in one stage at a time
        and writes one ``answer`` per superstep."""
        succ = self._successors()
        for src, dsts in self._static_edges().items():
            reached = [(d, n) for d in dsts if d != END for n in sorted(self._first_staged(d, succ))]
            pair = next(
                (
                    (a, b)
                    for i, (d, a) in enumerate(reached)
                    for e, b in reached[i + 1 :]
                    if d != e and a != b
                ),
                None,
            )
            if pair is not None:
                raise ConfigurationError(
                    f"graph {self.name!r}: after {src!r}, {pair[0]!r} and {pair[1]!r} would run in parallel, but a "
                    "task is in one stage at a time; chain them, or give one role fan_out= to run its steps concurrently"
                )

    def validate(self) -> None:
        if not self.nodes:
            raise ConfigurationError(f"graph {self.name!r} has no nodes")
        edges: list[tuple[str, tuple[str, ...]]] = [(f"edge {s!r} → {d!r}", (s, d)) for s, d in self.edges]
        edges += [(f"conditional edges of {s!r}", (s, *targets)) for s, (_, targets) in self.branches.items()]
        for what, ends in edges:
            for node in ends:
                if node not in self.nodes and node != END:
                    raise ConfigurationError(
                        f"graph {self.name!r}, {what}: unknown node {node!r}; nodes: {list(self.nodes)}"
                    )
        unreachable = set(self.nodes) - set(self._reachable())
        if unreachable:
            raise ConfigurationError(
                f"graph {self.name!r}: nodes not reachable from {self.entry!r}: {sorted(unreachable)}"
            )

    def compile(
        self,
        *,
        pool: ModelPool,
        router: Router,
        memory: MemoryStore | None = None,
        budget: Budget | None = None,
        checkpointer: Any = None,
        stage_machine: StageMachine | None = None,
        allow_new_agents: bool = False,
        interrupt_before: Sequence[str] | str | None = None,
        interrupt_after: Sequence[str] | str | None = None,
        store: Any = None,
        debug: bool = False,
        **dispatcher_options: Any,
    ) -> CompiledAgentGraph:
        """Validate the graph and bind its runtime; returns an immutable runnable graph.

        A trained ``router`` must fit the pool: agents it never saw are an error unless
        ``allow_new_agents`` (see :func:`agentroute.routers.base.check_pool`).
        ``checkpointer``, ``interrupt_before``/``interrupt_after`` (node names, or ``"*"``),
        ``store`` and ``debug`` are LangGraph's ``StateGraph.compile`` options; the other keyword
        options go to the :class:`~agentroute.dispatch.Dispatcher` (``retries``, ``backoff_s``,
        ``max_fallbacks``, …).
        """
        from agentroute.loading import check_graph_pool  # loading builds on this module

        _check_options(dispatcher_options)
        self.validate()
        self._check_no_parallel_roles()
        for node in self.nodes.values():
            if isinstance(node, _Role) and node.models:
                for model in node.models:
                    pool.card(model)
            if isinstance(node, _Role) and not pool.agents(node.name):
                raise ConfigurationError(f"role {node.name!r}: the pool offers no agents")
        for note in check_graph_pool(router, pool, self, allow_new_agents=allow_new_agents):
            log.warning(note)
        dispatcher = Dispatcher(
            pool,
            router,
            memory=memory,
            stage_machine=stage_machine or self.stage_machine(),
            **dispatcher_options,
        )
        langgraph = {
            "interrupt_before": interrupt_before,
            "interrupt_after": interrupt_after,
            "store": store,
            "debug": debug,
        }
        for when in ("interrupt_before", "interrupt_after"):
            nodes = langgraph[when]
            for name in [nodes] if isinstance(nodes, str) else (nodes or ()):
                if name != "*" and name not in self.nodes:
                    raise ConfigurationError(
                        f"{when}: no node named {name!r}{_did_you_mean(name, list(self.nodes))}"
                    )
        return _compile(self, dispatcher, budget, checkpointer, langgraph)


@dataclass(slots=True, repr=False)
class RunResult:
    """The outcome of one task: the task record, its steps and the final graph state."""

    task: Task
    steps: list[Step]
    state: dict[str, Any]

    def __repr__(self) -> str:
        """One line a notebook cell or a log can show (the full record: ``task``, ``steps``, ``state``)."""
        answer = self.task.answer
        shown = answer if answer is None or len(answer) <= 60 else answer[:57] + "..."
        steps = ", ".join(f"{s.agent.key} {s.status}" for s in self.steps[:4]) + (
            ", ..." if len(self.steps) > 4 else ""
        )
        return (
            f"RunResult(status={self.status!r}, answer={shown!r}, cost_usd={self.cost_usd:.6g}, "
            f"steps=[{steps}], task_id={self.task.id!r})"
        )

    @property
    def answer(self) -> str | None:
        return self.task.answer

    @property
    def status(self) -> str:
        return self.task.status

    @property
    def cost_usd(self) -> float:
        return self.task.cost_usd


FINISH = "agentroute_finish"
_ASYNC_SAVERS: dict[int, tuple[Any, bool]] = {}  # id(saver) → (saver, has async methods)


class CompiledAgentGraph(_LangGraphCompiled):
    """A compiled agent graph: a LangGraph ``CompiledStateGraph`` plus task-level ``arun``/``run``.

    Everything LangGraph offers works as on any compiled graph — ``invoke``/``ainvoke``,
    ``stream``/``astream`` with every stream mode, ``batch``/``abatch``, ``get_state``,
    ``get_state_history``, ``update_state``, ``get_graph``, ``with_config``, use as a node or
    subgraph of a parent graph (:meth:`as_node` where the parent's state is another, e.g. a ``Send``
    target), checkpointers and ``interrupt()``. The input is the state
    (``{"query": ...}``) plus optional ``task_id``, ``budget``, ``query_id``, ``task_type`` and
    ``metadata``; each new input starts one task, which every node of the graph shares and which is
    finished (status, answer, cost recorded) when the graph ends. ``invoke(None, config)`` on a
    checkpointed thread resumes the same task, with its ledger.

    Instances are made by :meth:`AgentGraph.compile`; the class itself is a mixin combined with
    LangGraph's ``CompiledStateGraph`` when LangGraph is first needed (``import agentroute`` stays light).
    """

    spec: AgentGraph
    dispatcher: Dispatcher
    budget: Budget | None

    def __init__(self, *, spec: AgentGraph, dispatcher: Dispatcher, budget: Budget | None, **kwargs: Any):
        super().__init__(**kwargs)
        self.spec, self.dispatcher, self.budget = spec, dispatcher, budget

    @property
    def graph(self) -> Any:
        """The LangGraph graph: this object itself (kept for code written before it was one)."""
        return self

    # -- a new input opens a task ------------------------------------------------------------
    def _resumable(self, config: Mapping[str, Any] | None) -> bool:
        return self.checkpointer not in (None, False) or checkpointed(config)

    def _seed(self, input: Any, config: Any) -> tuple[Any, Any, str | None]:
        """Turn a new input into a task request; ``None`` input or a ``Command`` resumes."""
        if not isinstance(input, Mapping):
            return input, config, None
        channel = input.get(CHANNEL)
        if channel and not is_request(channel) and channel.get("status", "running") == "running":
            return input, config, None  # a parent graph's task: this graph's nodes join it
        state = dict(input)
        budget = state.pop("budget", None)
        if channel and is_request(channel):
            request = dict(channel)
        else:
            request = new_task(
                task_id=state.get("task_id"),
                budget=budget,
                query_id=state.pop("query_id", None),
                task_type=state.pop("task_type", None),
                metadata=state.pop("metadata", None),
            )
        state.update({CHANNEL: request, "task_id": request["task_id"], "status": "running"})
        if self.checkpointer not in (None, False, True):
            configurable = (config or {}).get("configurable") or {}
            if not configurable.get("thread_id"):  # one thread per task by default; never the caller's dict
                config = {**(config or {}), "configurable": {**configurable, "thread_id": request["task_id"]}}
        return state, config, request["task_id"]

    def _abandon(self, task_id: str, config: Any, exc: BaseException) -> None:
        """An invocation that ended by an exception: without a checkpointer, the task has failed —
        or was ``interrupted`` when stopped from outside (cancelled, Ctrl-C, a stream left early)."""
        run = LIVE.get(task_id)
        if run is not None and not run.finished and not self._resumable(config):
            stopped = isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | GeneratorExit)
            self.dispatcher.finish(run, status="interrupted" if stopped else "failed")
            run.finished = True

    # -- one worker at a time runs a task (claims in a shared PostgreSQL memory) ---------------
    def _claimer(self) -> Any:
        """The memory that claims tasks across processes, when checkpoints outlive this process
        (a durable saver and a PostgreSQL memory: the scale-out path); else ``None``."""
        memory = self.dispatcher.memory
        if not getattr(memory, "claims_tasks", False) or not durable_saver(self.checkpointer):
            return None
        return memory

    def _thread_task(self, input: Any, config: Any, snapshot: Any) -> str | None:
        """The task a resume (``None`` or a ``Command`` as input) continues: the thread's."""
        if isinstance(input, Mapping) or not ((config or {}).get("configurable") or {}).get("thread_id"):
            return None
        channel = snapshot.values.get(CHANNEL) if snapshot is not None else None
        return (channel.get("task_id") if channel else None) or None

    def stream(self, input: Any, config: Any = None, **kwargs: Any) -> Iterator[Any]:
        input, config, task_id = self._seed(input, config)
        if (memory := self._claimer()) is not None:
            resume = task_id is None
            claimed = task_id or self._thread_task(
                input, config, None if isinstance(input, Mapping) else self.get_state(config)
            )
            if claimed:

                def open_stream(hold: Any) -> Iterator[Any]:
                    if resume:
                        LIVE.drop(
                            claimed
                        )  # an idle run kept here may be stale: another worker may have gone on
                    return self._plain_stream(task_id, input, config, kwargs)

                return claimed_stream(memory, claimed, claimed, open_stream)
        return self._plain_stream(task_id, input, config, kwargs)

    def _plain_stream(
        self, task_id: str | None, input: Any, config: Any, kwargs: dict[str, Any]
    ) -> Iterator[Any]:
        if task_id is None or LIVE.pinned(task_id):  # a resume, a joined task, or arun watching it
            return super().stream(input, config, **kwargs)
        return self._watched_stream(task_id, input, config, kwargs)

    def _watched_stream(self, task_id: str, input: Any, config: Any, kwargs: dict[str, Any]) -> Iterator[Any]:
        LIVE.pin(task_id)
        try:
            yield from super().stream(input, config, **kwargs)
        except BaseException as exc:
            self._abandon(task_id, config, exc)
            raise
        finally:
            LIVE.unpin(task_id)

    def bulk_update_state(self, config: RunnableConfig, supersteps: Any) -> RunnableConfig:
        """LangGraph's ``bulk_update_state`` (``update_state`` goes through it) holding the thread's
        task claim when workers share the memory: refused (:class:`TaskBusyError`) while one runs it."""
        if (memory := self._claimer()) is None or not (
            task := self._thread_task(None, config, self.get_state(config))
        ):
            return super().bulk_update_state(config, supersteps)
        with holding(memory, task, task):
            return super().bulk_update_state(config, supersteps)

    async def abulk_update_state(self, config: RunnableConfig, supersteps: Any) -> RunnableConfig:
        """:meth:`bulk_update_state` for ``aupdate_state``/``abulk_update_state``; under a sync-only
        saver, :meth:`bulk_update_state` off the event loop (:meth:`_on_saver`)."""
        if not await self._async_checkpointer():
            return await asyncio.to_thread(self.bulk_update_state, config, supersteps)
        if (memory := self._claimer()) is None or not (
            task := self._thread_task(None, config, await self.aget_state(config))
        ):
            return await super().abulk_update_state(config, supersteps)
        async with aholding(memory, task, task):
            return await super().abulk_update_state(config, supersteps)

    async def aget_state(self, config: RunnableConfig, *, subgraphs: bool = False) -> StateSnapshot:
        """LangGraph's ``aget_state``; under a sync-only saver, :meth:`get_state` off the event loop
        (:meth:`_on_saver`)."""
        return await self._on_saver(
            functools.partial(self.get_state, config, subgraphs=subgraphs),
            functools.partial(super().aget_state, config, subgraphs=subgraphs),
        )

    async def aget_state_history(
        self,
        config: RunnableConfig,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[StateSnapshot]:
        """LangGraph's ``aget_state_history``; under a sync-only saver, :meth:`get_state_history`
        read off the event loop (the rule of :meth:`_on_saver`)."""
        if await self._async_checkpointer():
            async for snapshot in super().aget_state_history(
                config, filter=filter, before=before, limit=limit
            ):
                yield snapshot
            return
        history = functools.partial(self.get_state_history, config, filter=filter, before=before, limit=limit)
        for snapshot in await asyncio.to_thread(lambda: list(history())):
            yield snapshot

    async def _on_saver(self, sync: Callable[[], T], coroutine: Callable[[], Awaitable[T]]) -> T:
        """The one rule for async methods under the checkpointer: a sync-only saver (SqliteSaver,
        PostgresSaver) raises ``NotImplementedError`` from LangGraph's async methods, so ``sync`` (the
        sync method) runs in a worker thread; else ``coroutine`` is awaited."""
        if await self._async_checkpointer():
            return await coroutine()
        return await asyncio.to_thread(sync)

    def astream(self, input: Any, config: Any = None, **kwargs: Any) -> AsyncIterator[Any]:
        input, config, task_id = self._seed(input, config)
        if (memory := self._claimer()) is not None and (task_id or not isinstance(input, Mapping)):
            return self._aclaimed(memory, task_id, input, config, kwargs)
        return self._plain_astream(task_id, input, config, kwargs)

    async def _aclaimed(
        self, memory: Any, task_id: str | None, input: Any, config: Any, kwargs: dict[str, Any]
    ) -> AsyncIterator[Any]:
        claimed = task_id
        if claimed is None:  # a resume: the thread's task
            claimed = self._thread_task(input, config, await self.aget_state(config))
        if not claimed:
            async for chunk in self._plain_astream(task_id, input, config, kwargs):
                yield chunk
            return
        key = claimed

        async def open_stream(hold: Any) -> AsyncIterator[Any]:
            if task_id is None:
                LIVE.drop(key)  # a resume: an idle run kept here may be stale
            return self._plain_astream(task_id, input, config, kwargs)

        async with contextlib.aclosing(aclaimed_stream(memory, key, key, open_stream)) as chunks:
            async for chunk in chunks:  # left early: the claim goes back now, not when collected
                yield chunk

    def _plain_astream(
        self, task_id: str | None, input: Any, config: Any, kwargs: dict[str, Any]
    ) -> AsyncIterator[Any]:
        if task_id is None or LIVE.pinned(task_id):
            return super().astream(input, config, **kwargs)
        return self._watched_astream(task_id, input, config, kwargs)

    async def _watched_astream(
        self, task_id: str, input: Any, config: Any, kwargs: dict[str, Any]
    ) -> AsyncIterator[Any]:
        LIVE.pin(task_id)
        try:
            async with stoppable_in_kernel():
                async for chunk in super().astream(input, config, **kwargs):
                    yield chunk
        except BaseException as exc:
            self._abandon(task_id, config, exc)
            raise
        finally:
            LIVE.unpin(task_id)

    # -- task-level API ---------------------------------------------------------------------
    async def arun(
        self,
        query: str,
        *,
        budget: Budget | None = None,
        query_id: str | None = None,
        task_type: str | None = None,
        metadata: dict[str, Any] | None = None,
        config: RunnableConfig | None = None,
        task_id: str | None = None,
        gold: str | Sequence[str] | None = None,
        metric: str | Metric = "em",
    ) -> RunResult:
        """Run one task to the end; never raises for budget or backend failures (see ``status``).

        ``gold``: the right answer(s). A task that ends ``done`` or ``budget_exhausted`` is then
        scored with ``metric`` (``em``, ``f1`` or ``contains``, SQuAD-normalised: see
        :mod:`agentroute.eval.answers`; or your own ``metric(answer, gold) -> float``) as the graph
        finishes it: the score is the task's ``score`` when the router's ``observe(last_step, task)``
        sees it (online learners learn it), and its feedback in the memory (source
        ``metric:<name>``, a callable's ``__name__``), where ``train --from`` learns it.
        """
        if not isinstance(query, str):
            raise ConfigurationError(
                f"arun/run take the query text (got {type(query).__name__}); "
                "a graph's input state goes to invoke/ainvoke, many queries to arun_many"
            )
        score_fn = None
        if gold is not None:
            from agentroute.eval.answers import get_metric

            score_fn = metric if callable(metric) else get_metric(metric)  # an unknown name fails here
        if task_id:
            await asyncio.to_thread(self._check_new_ids, [task_id])
        task_id = task_id or new_id()
        request = new_task(
            task_id=task_id, budget=budget, query_id=query_id, task_type=task_type, metadata=metadata
        )
        inp = {"query": query, CHANNEL: request}  # astream/stream seed it (_seed)
        scoring = (
            None
            if score_fn is None
            else _GOLD.set(
                _Gold(task_id, lambda answer: float(score_fn(answer, gold)), f"metric:{_metric_name(metric)}")  # type: ignore[arg-type]
            )
        )
        LIVE.pin(task_id)
        try:
            async with stoppable_in_kernel():
                final = _values(
                    await self._on_saver(
                        functools.partial(self.invoke, inp, config, **_values_only()),
                        functools.partial(self.ainvoke, inp, config, **_values_only()),
                    )
                )
            run = LIVE.get(task_id)
        except BaseException as exc:
            self._abandon(task_id, config, exc)
            raise
        finally:
            LIVE.unpin(task_id)
            if scoring is not None:
                _GOLD.reset(scoring)
        if run is None:  # pragma: no cover - the graph ran no node
            raise RuntimeError(f"task {task_id} was never opened")
        return RunResult(
            run.task, run.steps, {"outputs": {}, "context": {}, **final, "status": run.task.status}
        )

    def _check_new_ids(self, task_ids: Sequence[str], where: Callable[[int], str] = lambda i: "") -> None:
        """A ``ConfigurationError`` for an explicit ``task_id`` already in the memory: running it
        again would add its steps to the recorded task and restart its budget."""
        memory = self.dispatcher.memory
        for i, task_id in enumerate(task_ids):
            if memory is not None and (known := memory.get_task(task_id)) is not None:
                raise ConfigurationError(
                    f"{where(i)}task_id {task_id!r} is already in the memory ({known.task.status}, "
                    f"${known.task.cost_usd:.6g}): an id names one task, and running it again would add its steps "
                    "and restart its budget; pass a new task_id (or none), or continue a checkpointed task with "
                    "resume/aresume"
                )

    async def aresume(self, config: RunnableConfig, *, command: Any = None) -> RunResult:
        """Continue the task of a checkpointed thread — after a crash, or an ``interrupt()``.

        ``command`` is what to resume with (``Command(resume=value)`` after an interrupt; ``None``
        after a crash). The task keeps its id, ledger and memory row. A thread whose task already
        ended runs nothing and returns that task's result.
        """
        snapshot = await self.aget_state(config)
        channel = dict(snapshot.values.get(CHANNEL) or {})
        task_id = channel.get("task_id")
        memory = self.dispatcher.memory
        if not task_id or (
            is_request(channel)
            and (memory is None or await asyncio.to_thread(memory.get_task, task_id) is None)
        ):
            thread = (config.get("configurable") or {}).get("thread_id")
            raise ConfigurationError(f"thread {thread!r} holds no started agentroute task to resume")
        if self._claimer() is not None:
            LIVE.drop(task_id)  # an idle run kept here may be stale: another worker may have gone on
        LIVE.pin(task_id)
        token = _RESUMING.set(task_id)
        try:
            final = _values(
                await self._on_saver(
                    functools.partial(self.invoke, command, config, **_values_only()),
                    functools.partial(self.ainvoke, command, config, **_values_only()),
                )
            )
            run = LIVE.get(task_id)
        finally:
            _RESUMING.reset(token)
            LIVE.unpin(task_id)
        if run is None:  # nothing ran: the task had ended; its record is the memory's (or the checkpoint's)
            run = rebuild(self.dispatcher, channel)
            run.task.status = channel.get("status", run.task.status)
        state = dict(final) if isinstance(final, Mapping) else dict(snapshot.values)
        return RunResult(
            run.task, run.steps, {"outputs": {}, "context": {}, **state, "status": run.task.status}
        )

    def resume(self, config: RunnableConfig, *, command: Any = None) -> RunResult:
        """Synchronous :meth:`aresume`."""
        return run_sync(self.aresume(config, command=command))

    def _known_async(self) -> bool | None:
        """Whether the checkpointer has async methods, where that is known without a probe (none: yes)."""
        saver = self.checkpointer
        if saver is None or isinstance(saver, bool):
            return True
        known = _ASYNC_SAVERS.get(id(saver))
        return known[1] if known is not None and known[0] is saver else None

    async def _async_checkpointer(self) -> bool:
        """Whether the checkpointer has async methods (probed once per saver)."""
        known = self._known_async()
        if known is not None:
            return known
        saver: Any = self.checkpointer
        try:
            await saver.aget_tuple({"configurable": {"thread_id": "agentroute-probe", "checkpoint_ns": ""}})
            capable = True
        except NotImplementedError:
            capable = False
        except Exception:  # noqa: BLE001 - any other answer means the method exists
            capable = True
        _ASYNC_SAVERS[id(saver)] = (saver, capable)
        return capable

    def as_node(
        self,
        *,
        output: Callable[[dict[str, Any]], Mapping[str, Any] | None],
        input: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
    ) -> Any:
        """This graph as a node of a parent ``StateGraph`` whose state is not this graph's: a
        ``Send`` target of LangGraph's map-reduce, one task per branch.

        Each call runs the graph on ``input(state)`` (default: the state or ``Send`` payload as it
        is, e.g. ``{"query": ..., "query_id": ...}``) and writes to the parent only ``output(final)``,
        the update made of the graph's final state, e.g. ``output=lambda r: {"answers": [r["answer"]]}``
        for a list reducer. ``parent.add_node("qa", app)`` instead writes back every key the two states
        share (``query``, ``answer``, ``status``, …) — which parallel ``Send`` branches cannot all
        write (LangGraph's ``InvalidUpdateError``: "Can receive only one value per step") — and
        nothing to a key the graph does not have (a list to collect the answers in).
        """
        if not callable(output):
            raise ConfigurationError(
                "as_node(output=...): a function from the graph's final state to the parent's update"
            )
        if input is not None and not callable(input):
            raise ConfigurationError(
                "as_node(input=...): a function from the parent's state to this graph's input"
            )
        name = self.spec.name

        def prepare(state: Mapping[str, Any]) -> dict[str, Any]:
            value = input(state) if input is not None else state
            if not isinstance(value, Mapping):
                raise ConfigurationError(
                    f"node {name!r}: input returned {type(value).__name__}, not the graph's input state (a mapping)"
                )
            return dict(value)

        def finish(final: Any) -> dict[str, Any]:
            update = output(dict(final) if isinstance(final, Mapping) else {})
            if update is not None and not isinstance(update, Mapping):
                raise ConfigurationError(
                    f"node {name!r}: output returned {type(update).__name__}, not the parent's update (a mapping)"
                )
            return dict(update or {})

        async def anode(state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
            return finish(_values(await self.ainvoke(prepare(state), config, **_values_only())))

        def node(state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
            return finish(_values(self.invoke(prepare(state), config, **_values_only())))

        return runnable(name, node, anode)

    def run(self, query: str, **kwargs: Any) -> RunResult:
        """Synchronous :meth:`arun`; works inside a running event loop too (notebooks)."""
        return run_sync(self.arun(query, **kwargs))

    async def arun_many(
        self,
        queries: Iterable[str | Mapping[str, Any]],
        *,
        concurrency: int = 8,
        on_done: Callable[[RunResult], None] | None = None,
    ) -> list[RunResult]:
        """Run many tasks with at most ``concurrency`` in flight; results in input order.

        Each item is a query string or a mapping with ``query`` and optional ``query_id``,
        ``task_type``, ``metadata``, ``budget``, ``task_id``, ``config``, ``gold`` and ``metric``.
        Every item is checked before any task starts (a ``ConfigurationError`` names the first bad
        one). If a task raises (a node's bug), the tasks in flight are cancelled — they end
        ``interrupted`` — and the exception propagates: no task keeps spending unseen.
        """
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be ≥ 1 (got {concurrency})")
        items = [_batch_item(i, q) for i, q in enumerate(queries)]
        explicit = [(i, item["task_id"]) for i, item in enumerate(items) if item.get("task_id")]
        first: dict[str, int] = {}
        for i, task_id in explicit:
            if first.setdefault(task_id, i) != i:
                raise ConfigurationError(f"item {i}: task_id {task_id!r} is also item {first[task_id]}'s")
        if explicit:
            await asyncio.to_thread(
                self._check_new_ids, [t for _, t in explicit], lambda k: f"item {explicit[k][0]}: "
            )
        results: list[RunResult | None] = [None] * len(items)
        todo = iter(enumerate(items))

        async def worker() -> None:  # a fixed pool of workers: memory stays flat however long the batch
            for i, item in todo:
                result = await self.arun(**item)
                results[i] = result
                if on_done is not None:
                    on_done(result)

        workers = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, len(items)))]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        return results  # type: ignore[return-value]

    # -- nodes ------------------------------------------------------------------------------
    def _enter(self, state: Mapping[str, Any], config: Any) -> TaskRun:
        """The live run of this invocation's task, held for the node (see :mod:`agentroute.graph_runtime`).

        A run pinned by its running invocation is not held again (release with :meth:`_exit`).
        """
        channel = state.get(CHANNEL) or {}
        task_id = channel.get("task_id")
        restart_paused(task_id, config)
        if task_id and LIVE.pinned(task_id) and (run := LIVE.get(task_id)) is not None:
            return run
        if task_id and not is_request(channel):
            run = LIVE.hold(task_id, lambda: rebuild(self.dispatcher, channel))
        elif (
            task_id and (not LIVE.pinned(task_id) or _RESUMING.get() == task_id)
            and (reopened := self._reopen(channel, config)) is not None
        ):  # fmt: skip
            run = LIVE.hold(task_id, lambda: reopened)
        else:
            request = channel if task_id else new_task(task_id=state.get("task_id"))
            run = LIVE.hold(
                request["task_id"],
                lambda: open_task(
                    self.dispatcher,
                    request,
                    query=str(state.get("query", "")),
                    graph=self.spec.name,
                    budget=self.budget,
                    carry={"opened_by": "graph", "owner": graph_path(config)},
                ),
            )
        if LIVE.pinned(run.task.id):  # the pin keeps it: hold and release stay paired in _exit
            LIVE.release(run.task.id)
        return run

    def _reopen(self, request: Mapping[str, Any], config: Any) -> TaskRun | None:
        """A resume from the thread's first checkpoint (the request) of a task that a worker opened
        and paid steps for before dying, its first node's checkpoint unsaved (LangGraph writes them in
        the background): the task as the memory has it, every recorded step charged; ``None`` when
        the memory never saw it. Opening it again would have restarted its ledger at zero (its time too)."""
        memory = self.dispatcher.memory
        stored = memory.get_task(request["task_id"]) if memory is not None else None
        if stored is None:
            return None
        task = stored.task
        budget = task.budget if task.budget is not None else self.budget
        return rebuild(self.dispatcher, {
            "task_id": task.id, "query": task.query, "graph": task.graph, "task_type": task.task_type,
            "metadata": task.metadata, "budget": budget.given() if budget is not None else None,
            "ledger": recorded_ledger(budget, stored.steps), "index": 0, "stage": None, "seq": 0,
            "carry": {"opened_by": "graph", "owner": graph_path(config)},
        })  # fmt: skip

    @staticmethod
    def _exit(run: TaskRun) -> None:
        if not LIVE.pinned(run.task.id):
            LIVE.release(run.task.id)

    def _leave(
        self,
        run: TaskRun,
        state: Mapping[str, Any],
        update: dict[str, Any],
        config: Any,
        *,
        last: bool,
        index: int,
    ) -> Any:
        """Write the task's checkpoint; at the end of the graph, finish the task it owns."""
        if last:
            carry = run.carry
            if carry.get("opened_by") == "graph" and carry.get("owner") == graph_path(config):
                given = update.get("status") or state.get("status", "running")
                status = self.dispatcher.closing_status(run, None if given == "running" else given)
                answer = update.get("answer") or state.get("answer") or None
                gold = _GOLD.get()
                score = self._gold_score(run, gold, status, answer)
                task = self.dispatcher.finish(
                    run, answer=None if status == "failed" else answer, status=status, score=score
                )
                run.finished = True
                if score is not None and gold is not None and self.dispatcher.memory is not None:
                    self.dispatcher.memory.add_feedback(task.id, score, source=gold.source)
                update["status"] = task.status
                if (
                    task.answer is not None or status == "failed"
                ):  # a failed task's state shows no role's output as its answer
                    update["answer"] = task.answer or ""
            elif carry.get("opened_by") == "node":
                self.dispatcher.finish(run)  # a user graph's task: keep its record up to date
        if last or (run._index != index and (checkpointed(config) or not LIVE.pinned(run.task.id))):
            update[CHANNEL] = run.checkpoint()  # without a checkpointer, the live run is the truth
        return update

    @staticmethod
    def _gold_score(run: TaskRun, gold: _Gold | None, status: str, answer: str | None) -> float | None:
        """The score of ``arun``'s gold answers for the task the graph is finishing ``status`` with
        ``answer`` (``None`` when it has none, or the task failed or was interrupted), handed to the
        dispatcher's finish so that the router's ``observe`` learns it. The task is marked as scored
        by feedback, as the memory marks it when read (:func:`~agentroute.outcomes.learned_scores`
        then judges its answer alike online and in ``train --from``)."""
        if gold is None or gold.task_id != run.task.id or status not in ("done", "budget_exhausted"):
            return None
        run.task.metadata[FEEDBACK_KEY] = gold.source
        return gold.score(answer if answer is not None else run.best_answer)  # the answer finish gives it

    def _before_checkpoint(self, config: Any) -> MemoryStore | None:
        """The memory to commit before a node's checkpoint is written, when checkpoints outlive
        the process: a crash after the checkpoint then never leaves the memory behind it (steps
        paid but missing, charged to no ledger on resume)."""
        memory = self.dispatcher.memory
        if memory is None:  # nothing to commit (the common case of a graph without a memory)
            return None
        saver = (
            ((config or {}).get("configurable") or {}).get(_SAVER_KEY) if _SAVER_KEY else self.checkpointer
        )
        return memory if durable_saver(saver) else None

    def _role(self, role: _Role, last: bool) -> Any:
        """A role node: one routed step (or a fan-out's), a no-op once the task has stopped.

        Its edges stay static, not ``Command(goto=…)``: LangGraph's ``update_state`` (a human
        editing a paused thread) can only continue along edges the graph declares.
        """

        async def anode(state: GraphState, config: RunnableConfig, writer: StreamWriter) -> dict[str, Any]:
            run = self._enter(state, config)
            index = run._index
            try:
                update: dict[str, Any] = {}
                if state.get("status", "running") != "running":
                    pass
                elif role.fan_out is None:  # the common case: one routed step, awaited here (one frame less)
                    text = role.input(state) if role.input else state.get("query", "")
                    step = await self._routed_step(role, run, text)
                    report_step(step, role.name, config, writer)
                    if step is not None and step.status == "ok":
                        update = {"outputs": {role.name: step.output}, "answer": step.output}
                    else:
                        update = {"status": run.stop_status}
                else:
                    update = await self._fan_out(role, run, state, config, writer)
                if run._index != index and (memory := self._before_checkpoint(config)) is not None:
                    await aflush_memory(memory)
                return self._leave(run, state, update, config, last=last, index=index)
            finally:
                self._exit(run)

        def node(state: GraphState, config: RunnableConfig, writer: StreamWriter) -> dict[str, Any]:
            return run_sync(anode(state, config, writer))

        return runnable(role.name, node, anode)

    def _routed_step(self, role: _Role, run: TaskRun, text: str) -> Any:
        """The dispatcher's step of ``role`` on ``text`` (a coroutine)."""
        return self.dispatcher.step(
            run,
            role=role.name,
            stage=role.stage,
            prompt=role.prompt,
            input=text,
            models=role.models,
            max_tokens=role.max_tokens,
            postconditions=role.postconditions,
        )

    async def _fan_out(
        self, role: _Role, run: TaskRun, state: GraphState, config: Any, writer: Any
    ) -> dict[str, Any]:
        """A fan-out role: one routed step per input, run concurrently."""
        assert role.fan_out is not None
        steps = await asyncio.gather(*(self._routed_step(role, run, text) for text in role.fan_out(state)))
        for step in steps:
            report_step(step, role.name, config, writer)
        done = [s for s in steps if s is not None and s.status == "ok"]
        update: dict[str, Any] = {"outputs": {role.name: step_outputs(steps)}}
        if done:
            update["answer"] = done[-1].output
        if len(done) < len(steps):
            update["status"] = run.stop_status
        return update

    def _plain(self, plain: _Plain | None, last: bool, goto: Mapping[str, str] | None = None) -> Any:
        """A plain node (``plain`` given) or the finishing node (``None``); with ``goto`` (its
        destinations, mapped to the compiled graph's nodes) it routes by the ``Command`` it returns."""
        name = plain.name if plain is not None else FINISH

        def begin(state: GraphState, config: Any) -> tuple[TaskRun, int, Any]:
            run = self._enter(state, config)
            if plain is None or state.get("status", "running") != "running":
                return run, run._index, None
            try:
                return (
                    run,
                    run._index,
                    plain.fn(state, NodeContext(run, self.dispatcher, self.spec.skills, plain.stage)),
                )
            except BaseException:
                self._exit(run)
                raise

        def end(run: TaskRun, index: int, state: GraphState, result: Any, config: Any) -> Any:
            if goto is not None:
                return _routed(
                    name,
                    goto,
                    result,
                    lambda update: self._leave(run, state, update, config, last=False, index=index),
                )
            if result is not None and not isinstance(result, Mapping):
                return result  # a Command or anything else LangGraph understands: passed as it is
            return self._leave(run, state, dict(result or {}), config, last=last, index=index)

        async def anode(state: GraphState, config: RunnableConfig) -> Any:
            run, index, result = begin(state, config)
            try:
                if inspect.isawaitable(result):
                    result = await result
                if run._index != index and (memory := self._before_checkpoint(config)) is not None:
                    await aflush_memory(memory)
                return end(run, index, state, result, config)
            finally:
                self._exit(run)

        def node(state: GraphState, config: RunnableConfig) -> Any:
            run, index, result = begin(state, config)
            try:
                if inspect.isawaitable(result):
                    result = run_sync(_awaited(result))
                if run._index != index and (memory := self._before_checkpoint(config)) is not None:
                    memory.flush()
                return end(run, index, state, result, config)
            finally:
                self._exit(run)

        return runnable(name, node, anode)


try:
    from langgraph._internal import _constants

    _SAVER_KEY: str | None = _constants.CONFIG_KEY_CHECKPOINTER
except (
    ImportError,
    AttributeError,
):  # pragma: no cover - another LangGraph layout: the graph's own checkpointer
    _SAVER_KEY = None


def _batch_item(index: int, item: str | Mapping[str, Any]) -> dict[str, Any]:
    """One ``arun_many`` item as ``arun``'s keyword arguments, checked before anything runs."""
    if isinstance(item, str):
        return {"query": item}
    if not isinstance(item, Mapping):
        raise ConfigurationError(
            f"item {index}: expected a query string or a mapping, got {type(item).__name__}"
        )
    item = dict(item)
    unknown = item.keys() - _ARUN_KEYS
    if unknown or not isinstance(item.get("query"), str):
        problem = f"unknown key(s) {sorted(unknown)}" if unknown else "no 'query' string"
        raise ConfigurationError(
            f"item {index}: {problem}; keys: query, {', '.join(sorted(_ARUN_KEYS - {'query'}))}"
        )
    try:
        budget = item.get("budget")
        if budget is None or isinstance(budget, Budget):
            pass
        elif isinstance(budget, Mapping):
            item["budget"] = Budget(**budget)
        else:
            raise ConfigurationError(
                f"budget must be a Budget or a mapping of limits, got {type(budget).__name__}"
            )
        if item.get("gold") is not None:
            from agentroute.eval.answers import get_metric

            metric = item.get("metric", "em")
            if not callable(metric):
                get_metric(metric)
    except (ConfigurationError, TypeError) as exc:
        raise ConfigurationError(f"item {index}: {exc}") from exc
    return item


_ARUN_KEYS = set(inspect.signature(CompiledAgentGraph.arun).parameters) - {"self"}  # what an item may hold


@functools.cache
def _values_only() -> dict[str, Any]:
    """``version="v2"`` where LangGraph has it: the final values without the per-superstep ``updates``
    stream that version 1 reads for interrupts (≈ 20 µs a routed step less; benchmarks/RESULTS.md)."""
    from langgraph.pregel import Pregel

    return {"version": "v2"} if "version" in inspect.signature(Pregel.ainvoke).parameters else {}


def _values(output: Any) -> Any:
    """The final state of an invocation as version 1 returns it: interrupts under ``__interrupt__``."""
    if type(output).__name__ != "GraphOutput":
        return output
    value = output.value
    if output.interrupts:
        value = {**(value if isinstance(value, Mapping) else {}), "__interrupt__": list(output.interrupts)}
    return value


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


@functools.cache
def _compiled_class() -> type[CompiledAgentGraph]:
    from langgraph.graph.state import CompiledStateGraph

    combined = type("CompiledAgentGraph", (CompiledAgentGraph, CompiledStateGraph), {"__module__": __name__})
    assert issubclass(combined, CompiledAgentGraph)
    return combined


def _check_options(options: Mapping[str, Any]) -> None:
    """Keyword options of ``compile`` that the dispatcher does not take: a ``ConfigurationError``."""
    known = set(inspect.signature(Dispatcher.__init__).parameters) - {
        "self",
        "pool",
        "router",
        "memory",
        "stage_machine",
    }
    for name in options:
        if name not in known:
            raise ConfigurationError(
                f"compile() got an unknown option {name!r}{_did_you_mean(name, sorted(known))}; "
                f"dispatcher options: {', '.join(sorted(known))}"
            )


def _did_you_mean(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _compile(
    spec: AgentGraph,
    dispatcher: Dispatcher,
    budget: Budget | None,
    checkpointer: Any,
    langgraph: Mapping[str, Any],
) -> CompiledAgentGraph:
    from langgraph.graph import START, StateGraph

    builder = StateGraph(GraphState)
    _open_fresh_dicts_fast(builder)
    static = spec._static_edges()
    for name in spec.nodes:
        if name not in spec.branches:
            static.setdefault(name, [END])
    # where a task can end in one known node, that node finishes it; otherwise (conditional edges, a
    # fork: parallel nodes) one extra node does, once the others are done
    use_finish = bool(spec.branches) or any(len(d) > 1 for d in static.values())
    exit_to = FINISH if use_finish else END
    compiled_class = _compiled_class()
    shell = compiled_class.__new__(compiled_class)  # nodes need the instance; filled in below
    mappings = {
        src: {t: (exit_to if t == END else t) for t in [*targets, END]}
        for src, (_, targets) in spec.branches.items()
    }
    for name, node in spec.nodes.items():
        last = not use_finish and static.get(name) == [END]
        if isinstance(node, _Role):
            builder.add_node(name, shell._role(node, last))
        elif name in spec.branches and spec.branches[name][0] is None:  # routes by the Command it returns
            builder.add_node(
                name,
                shell._plain(node, last, mappings[name]),
                destinations=tuple(dict.fromkeys(mappings[name].values())),
            )
        else:
            builder.add_node(name, shell._plain(node, last))
    if use_finish:
        builder.add_node(FINISH, shell._plain(None, True))
        builder.add_edge(FINISH, END)
    builder.add_edge(START, spec.entry)  # type: ignore[arg-type]
    # After a fork in a graph of static edges without cycles every node runs once: a node with several
    # predecessors (the finishing node among them) waits for all of them (a LangGraph waiting edge)
    # instead of running once per branch, the shorter branches first.
    joins: dict[str, list[str]] = {}
    if use_finish and not spec.branches and _acyclic(static):
        for name, dsts in static.items():
            for dst in dsts:
                joins.setdefault(FINISH if dst == END else dst, []).append(name)
        joins = {dst: srcs for dst, srcs in joins.items() if len(srcs) > 1}
        for dst, srcs in joins.items():
            builder.add_edge(srcs, dst)
    for name in spec.nodes:
        if name in spec.branches:
            path, _ = spec.branches[name]
            if path is not None:
                path_map: dict[Hashable, str] = {
                    key: dst for key, dst in mappings[name].items()
                }  # the key type LangGraph takes
                builder.add_conditional_edges(name, _guard(name, path, mappings[name]), path_map)
        else:  # static edges: a stopped task passes through the remaining nodes as no-ops
            for dst in static[name]:
                target = exit_to if dst == END else dst
                if target not in joins:
                    builder.add_edge(name, target)
    compiled = builder.compile(checkpointer=checkpointer, name=spec.name, **langgraph)
    attrs = {k: v for k, v in compiled.__dict__.items() if k != "__orig_class__"}
    compiled_class.__init__(shell, spec=spec, dispatcher=dispatcher, budget=budget, **attrs)
    return shell


def _open_fresh_dicts_fast(builder: Any) -> None:
    """Give the state's dict-merging channels (``outputs``, ``context``, ``agentroute``) a class that
    opens a new task's channel without re-deriving its value type: LangGraph opens every channel
    once per invocation, and ``BinaryOperatorAggregate`` spends ≈ 2 µs on it (10× ``LastValue``).
    Where that class cannot be made (another LangGraph), the channels stay LangGraph's own."""
    from langgraph.channels.binop import BinaryOperatorAggregate

    channels, fast = getattr(builder, "channels", None), _fresh_dict_aggregate()
    if not isinstance(channels, dict) or fast is None:
        return
    for key, channel in channels.items():
        if type(channel) is BinaryOperatorAggregate and type(channel.value) is dict:
            channels[key] = fast.like(channel)


@functools.cache
def _fresh_dict_aggregate() -> Any:
    """The fast dict channel class over this LangGraph's ``BinaryOperatorAggregate`` (or ``None``)."""
    from langgraph.channels.binop import BinaryOperatorAggregate

    return _fresh_dict_class(BinaryOperatorAggregate)


#: Every attribute a ``BinaryOperatorAggregate`` holds (LangGraph 1.x): what a fresh one is built of.
_AGGREGATE_SLOTS = frozenset({"key", "typ", "value", "operator"})


def _fresh_dict_class(base: type) -> Any:
    """A subclass of ``base`` (a ``BinaryOperatorAggregate``) that opens a channel without a
    checkpointed value as ``{}`` at once, built from the four attributes the class is known to hold;
    ``None`` where ``base`` holds others (an instance ``__dict__``, a slot a LangGraph upgrade
    added) or LangGraph's ``MISSING`` moved: a fresh channel built without them would break."""
    try:
        from langgraph._internal._typing import MISSING
    except ImportError:  # pragma: no cover - another LangGraph layout
        return None
    if _slots_of(base) != _AGGREGATE_SLOTS:
        return None

    class FreshDictAggregate(base):  # type: ignore[misc, valid-type]
        """A ``BinaryOperatorAggregate`` of a dict: one without a checkpointed value opens as ``{}``
        at once (what the base class makes of ``typ()``), any other as the base class opens it."""

        __slots__ = ()

        @classmethod
        def like(cls, channel: Any) -> Any:
            same = cls(channel.typ, channel.operator)
            same.key = channel.key
            return same

        def from_checkpoint(self, checkpoint: Any) -> Any:
            if checkpoint is not MISSING:
                return super().from_checkpoint(checkpoint)
            fresh = object.__new__(type(self))
            fresh.typ, fresh.key, fresh.operator, fresh.value = self.typ, self.key, self.operator, {}
            return fresh

    return FreshDictAggregate


def _slots_of(kind: type) -> set[str] | None:
    """The attributes ``kind``'s instances hold in slots; ``None`` where they also have a ``__dict__``.
    (A base written in C, as ``typing.Generic`` is from Python 3.12, declares no ``__slots__`` and
    adds none: whether instances have a ``__dict__`` is read from the class itself.)"""
    if kind.__dictoffset__ != 0:
        return None
    names: set[str] = set()
    for c in kind.__mro__:
        slots = vars(c).get("__slots__", ())
        names.update((slots,) if isinstance(slots, str) else slots)
    return names


def _acyclic(successors: Mapping[str, list[str]]) -> bool:
    done: set[str] = set()

    def visit(node: str, path: set[str]) -> bool:
        if node == END or node in done:
            return True
        if node in path:
            return False
        path.add(node)
        ok = all(visit(nxt, path) for nxt in successors.get(node, ()))
        path.discard(node)
        done.add(node)
        return ok

    return all(visit(node, set()) for node in successors)


def _routed(
    src: str, goto: Mapping[str, str], result: Any, leave: Callable[[dict[str, Any]], dict[str, Any]]
) -> Any:
    """The ``Command`` a self-routing plain node returns, checked and mapped; a skipped node (the
    task has stopped) goes to the end."""
    from langgraph.types import Command

    if result is None:
        return Command(update=leave({}), goto=goto[END])
    target = result.goto if isinstance(result, Command) else None
    if not isinstance(target, str) or target not in goto:
        raise ConfigurationError(
            f"node {src!r} declares destinations {sorted(t for t in goto if t != END)}: it must return "
            f"Command(goto=one of them), not {result!r}"
        )
    update = result.update if isinstance(result.update, Mapping) else {}
    return Command(update=leave(dict(update)), goto=goto[target])


def _guard(
    src: str, path: Callable[[GraphState], str], targets: Mapping[str, str]
) -> Callable[[GraphState], str]:
    """``path``, checked; a stopped task goes to the end."""

    def route(state: GraphState) -> str:
        if state.get("status", "running") != "running":
            return END
        target = path(state)
        if (
            not isinstance(target, str) or target not in targets
        ):  # one target: a task is in one stage at a time
            raise ConfigurationError(
                f"conditional edges of {src!r}: the path function returned {target!r}, not one of {sorted(targets)}"
            )
        return target

    return route


def __getattr__(name: str) -> Any:
    if name == "AgentrouteState":  # built on first use: it needs LangGraph's channel types
        return agentroute_state()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

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
import inspect
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Self, TypedDict

from agentroute.budget import Budget
from agentroute.dispatch.dispatcher import Dispatcher, Postcondition, TaskRun
from agentroute.dispatch.skills import SkillRegistry
from agentroute.dispatch.stages import StageMachine
from agentroute.errors import ConfigurationError
from agentroute.memory.base import MemoryStore
from agentroute.pool.pool import ModelPool
from agentroute.routers.base import Router
from agentroute.types import Step, Task

END = "__end__"


def _merge(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    return {**(left or {}), **(right or {})}


class GraphState(TypedDict, total=False):
    """The LangGraph state of an agent graph.

    ``outputs`` maps each node to its latest output text; ``context`` holds what plain nodes
    produce (sub-questions, retrieved passages …). Both merge across nodes.
    """

    query: str
    task_id: str
    answer: str
    status: str
    outputs: Annotated[dict[str, Any], _merge]
    context: Annotated[dict[str, Any], _merge]


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
    branches: dict[str, tuple[Callable[[GraphState], str], list[str]]] = field(default_factory=dict)
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
        self._new_node(role)
        if input is not None and fan_out is not None:
            raise ConfigurationError(f"role {role!r}: give either input or fan_out, not both")
        self.nodes[role] = _Role(
            role, prompt, stage or role, input, fan_out,
            tuple(models) if models is not None else None, max_tokens, tuple(postconditions),
        )
        return self

    def add_node(self, name: str, fn: NodeFn, *, stage: str | None = None) -> Self:
        """Add a plain node ``fn(state, node_context) -> state update`` (sync or async)."""
        self._new_node(name)
        if not callable(fn):
            raise ConfigurationError(f"node {name!r}: {fn!r} is not callable")
        self.nodes[name] = _Plain(name, fn, stage)
        return self

    def add_edge(self, src: str, dst: str) -> Self:
        for node in (src, dst):
            if node not in self.nodes and node != END:
                raise ConfigurationError(f"edge {src!r} → {dst!r}: unknown node {node!r}; nodes: {list(self.nodes)}")
        if src == END:
            raise ConfigurationError("no edge may leave END")
        if src in self.branches:
            raise ConfigurationError(f"node {src!r} already has conditional edges")
        self.edges.append((src, dst))
        return self

    def add_conditional_edges(self, src: str, path: Callable[[GraphState], str], targets: Iterable[str]) -> Self:
        """After ``src``, go where ``path(state)`` says, one of ``targets`` (END allowed)."""
        targets = list(targets)
        for node in [src, *targets]:
            if node not in self.nodes and node != END:
                raise ConfigurationError(f"conditional edges of {src!r}: unknown node {node!r}")
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

    def _successors(self) -> dict[str, list[str]]:
        succ: dict[str, list[str]] = {n: [] for n in self.nodes}
        for src, dst in self.edges:
            succ[src].append(dst)
        for src, (_, targets) in self.branches.items():
            succ[src].extend(targets)
        return succ

    def _next_stages(self, src: str, succ: dict[str, list[str]], stages: dict[str, str]) -> set[str]:
        """Stages reachable from ``src`` through plain (stage-less) nodes."""
        out, todo, seen = set(), list(succ[src]), set()
        while todo:
            n = todo.pop()
            if n == END or n in seen:
                continue
            seen.add(n)
            if n in stages:
                out.add(stages[n])
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

    def validate(self) -> None:
        if not self.nodes:
            raise ConfigurationError(f"graph {self.name!r} has no nodes")
        unreachable = set(self.nodes) - set(self._reachable())
        if unreachable:
            raise ConfigurationError(f"graph {self.name!r}: nodes not reachable from {self.entry!r}: {sorted(unreachable)}")

    def compile(
        self,
        *,
        pool: ModelPool,
        router: Router,
        memory: MemoryStore | None = None,
        budget: Budget | None = None,
        checkpointer: Any = None,
        stage_machine: StageMachine | None = None,
        **dispatcher_options: Any,
    ) -> CompiledAgentGraph:
        """Validate the graph and bind its runtime; returns an immutable runnable graph."""
        self.validate()
        for node in self.nodes.values():
            if isinstance(node, _Role) and node.models:
                for model in node.models:
                    pool.card(model)
            if isinstance(node, _Role) and not pool.agents(node.name):
                raise ConfigurationError(f"role {node.name!r}: the pool offers no agents")
        dispatcher = Dispatcher(
            pool, router, memory=memory, stage_machine=stage_machine or self.stage_machine(), **dispatcher_options
        )
        return CompiledAgentGraph(self, dispatcher, budget, checkpointer)


@dataclass(slots=True)
class RunResult:
    """The outcome of one task: the task record, its steps and the final graph state."""

    task: Task
    steps: list[Step]
    state: dict[str, Any]

    @property
    def answer(self) -> str | None:
        return self.task.answer

    @property
    def status(self) -> str:
        return self.task.status

    @property
    def cost_usd(self) -> float:
        return self.task.cost_usd


class CompiledAgentGraph:
    """A runnable agent graph: LangGraph ``invoke``/``ainvoke``/``stream`` plus task-level ``arun``."""

    def __init__(self, spec: AgentGraph, dispatcher: Dispatcher, budget: Budget | None, checkpointer: Any):
        from langgraph.graph import START, StateGraph

        self.name = spec.name
        self.spec = spec
        self.dispatcher = dispatcher
        self.budget = budget
        self._runs: dict[str, TaskRun] = {}
        builder = StateGraph(GraphState)
        for name, node in spec.nodes.items():
            builder.add_node(name, self._role_node(node) if isinstance(node, _Role) else self._plain_node(node))
        builder.add_edge(START, spec.entry)  # type: ignore[arg-type]
        succ: dict[str, list[str]] = {}
        for src, dst in spec.edges:
            succ.setdefault(src, []).append(dst)
        for name in spec.nodes:
            if name in spec.branches:
                path, targets = spec.branches[name]
                builder.add_conditional_edges(name, self._guard(path), [*targets, END] if END not in targets else targets)
            else:  # static edges: cheaper in LangGraph; a stopped task passes through as no-ops
                for dst in succ.get(name, [END]):
                    builder.add_edge(name, dst)
        self.graph = builder.compile(checkpointer=checkpointer)
        self.checkpointer = checkpointer

    # -- node wrappers ------------------------------------------------------------------------
    @staticmethod
    def _guard(path: Callable[[GraphState], str]) -> Callable[[GraphState], str]:
        def route(state: GraphState) -> str:
            return path(state) if state.get("status", "running") == "running" else END

        return route

    def _run_of(self, state: GraphState) -> TaskRun:
        task_id = state.get("task_id")
        run = self._runs.get(task_id) if task_id else None
        if run is None:  # invoked directly, or resumed from a checkpoint: open the task now
            run = self._start(state.get("query", ""), task_id=task_id)
        return run

    def _role_node(self, role: _Role) -> Callable[[GraphState], Any]:
        dispatcher = self.dispatcher

        async def node(state: GraphState) -> dict[str, Any]:
            if state.get("status", "running") != "running":
                return {}
            run = self._run_of(state)
            if role.fan_out is None:  # the common case: one routed step
                text = role.input(state) if role.input else state.get("query", "")
                step = await dispatcher.step(
                    run, role=role.name, stage=role.stage, prompt=role.prompt, input=text,
                    models=role.models, max_tokens=role.max_tokens, postconditions=role.postconditions,
                )
                if step is not None and step.status == "ok":
                    return {"outputs": {role.name: step.output}, "answer": step.output}
                return {"status": "budget_exhausted" if run.exhausted else "failed"}
            calls = [
                dispatcher.step(
                    run, role=role.name, stage=role.stage, prompt=role.prompt, input=text,
                    models=role.models, max_tokens=role.max_tokens, postconditions=role.postconditions,
                )
                for text in role.fan_out(state)
            ]
            steps = await asyncio.gather(*calls)
            done = [s for s in steps if s is not None and s.status == "ok"]
            update: dict[str, Any] = {"outputs": {role.name: [s.output if s and s.status == "ok" else "" for s in steps]}}
            if done:
                update["answer"] = done[-1].output
            if len(done) < len(steps):
                update["status"] = "budget_exhausted" if run.exhausted else "failed"
            return update

        node.__name__ = role.name
        return node

    def _plain_node(self, plain: _Plain) -> Callable[[GraphState], Any]:
        async def node(state: GraphState) -> Any:
            if state.get("status", "running") != "running":
                return {}
            run = self._run_of(state)
            ctx = NodeContext(run, self.dispatcher, self.spec.skills, plain.stage)
            result = plain.fn(state, ctx)
            if inspect.isawaitable(result):
                result = await result
            return result or {}

        node.__name__ = plain.name
        return node

    # -- task-level API ---------------------------------------------------------------------
    def _start(self, query: str, *, task_id: str | None = None, **kwargs: Any) -> TaskRun:
        budget = kwargs.pop("budget", None) or self.budget
        run = self.dispatcher.start(query, budget=budget, graph=self.name, task_id=task_id, **kwargs)
        self._runs[run.task.id] = run
        return run

    def _config(self, run: TaskRun, config: dict[str, Any] | None) -> dict[str, Any] | None:
        if self.checkpointer is None:
            return config
        config = dict(config or {})
        config["configurable"] = {"thread_id": run.task.id, **config.get("configurable", {})}  # never the caller's dict
        return config

    def _finish(self, run: TaskRun, state: Mapping[str, Any]) -> RunResult:
        status = state.get("status", "running")
        task = self.dispatcher.finish(
            run,
            answer=state.get("answer") or run.best_answer,
            status=None if status == "running" else status,  # type: ignore[arg-type]
        )
        self._runs.pop(run.task.id, None)
        return RunResult(task, run.steps, {"outputs": {}, "context": {}, **state, "status": task.status})

    async def arun(
        self,
        query: str,
        *,
        budget: Budget | None = None,
        query_id: str | None = None,
        task_type: str | None = None,
        metadata: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
    ) -> RunResult:
        """Run one task to the end; never raises for budget or backend failures (see ``status``)."""
        run = self._start(query, budget=budget, query_id=query_id, task_type=task_type, metadata=metadata)
        # "status" is always seeded: a checkpointed thread may hold the previous run's final status
        state: GraphState = {"query": query, "task_id": run.task.id, "status": "running"}
        try:
            final = await self.graph.ainvoke(state, self._config(run, config))
        except BaseException:
            self.dispatcher.finish(run, status="failed")
            self._runs.pop(run.task.id, None)
            raise
        return self._finish(run, final)

    def run(self, query: str, **kwargs: Any) -> RunResult:
        """Synchronous :meth:`arun`."""
        return asyncio.run(self.arun(query, **kwargs))

    async def arun_many(
        self,
        queries: Iterable[str | Mapping[str, Any]],
        *,
        concurrency: int = 8,
        on_done: Callable[[RunResult], None] | None = None,
    ) -> list[RunResult]:
        """Run many tasks with at most ``concurrency`` in flight; results in input order.

        Each item is a query string or a mapping with ``query`` and optional ``query_id``,
        ``task_type``, ``metadata`` and ``budget``.
        """
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be ≥ 1 (got {concurrency})")
        items = [{"query": q} if isinstance(q, str) else dict(q) for q in queries]
        results: list[RunResult | None] = [None] * len(items)
        todo = iter(enumerate(items))

        async def worker() -> None:  # a fixed pool of workers: memory stays flat however long the batch
            for i, item in todo:
                result = await self.arun(**item)
                results[i] = result
                if on_done is not None:
                    on_done(result)

        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(items)))))
        return results  # type: ignore[return-value]

    # -- LangGraph pass-through -------------------------------------------------------------
    def _prepare(self, input: Mapping[str, Any], config: dict[str, Any] | None) -> tuple[TaskRun, GraphState, dict]:
        run = self._start(
            input["query"],
            task_id=input.get("task_id"),
            budget=input.get("budget"),
            query_id=input.get("query_id"),
            task_type=input.get("task_type"),
        )
        extra = {k: v for k, v in input.items() if k in GraphState.__annotations__}
        state: GraphState = {"outputs": {}, "context": {}, "status": "running", **extra, "task_id": run.task.id}  # type: ignore[typeddict-item]
        return run, state, self._config(run, config)

    async def ainvoke(self, input: Mapping[str, Any], config: dict[str, Any] | None = None) -> dict[str, Any]:
        """LangGraph-style: ``{"query": ...}`` in, final state out (the task is recorded)."""
        run, state, cfg = self._prepare(input, config)
        final = await self.graph.ainvoke(state, cfg)
        result = self._finish(run, final)
        return {**final, "status": result.status, "answer": result.answer}

    def invoke(self, input: Mapping[str, Any], config: dict[str, Any] | None = None) -> dict[str, Any]:
        return asyncio.run(self.ainvoke(input, config))

    async def astream(
        self, input: Mapping[str, Any], config: dict[str, Any] | None = None, *, stream_mode: str = "updates"
    ) -> AsyncIterator[Any]:
        """LangGraph ``astream``: yields per-node updates; the task is finished at the end."""
        run, state, cfg = self._prepare(input, config)
        final: dict[str, Any] = dict(state)
        async for chunk in self.graph.astream(state, cfg, stream_mode="updates"):
            for update in chunk.values():
                for key, value in (update or {}).items():
                    final[key] = _merge(final.get(key), value) if key in ("outputs", "context") else value
            yield chunk if stream_mode == "updates" else final
        self._finish(run, final)

    def stream(self, input: Mapping[str, Any], config: dict[str, Any] | None = None, **kwargs: Any) -> Iterator[Any]:
        """Synchronous :meth:`astream` (collects the chunks, then yields them)."""

        async def collect() -> list[Any]:
            return [c async for c in self.astream(input, config, **kwargs)]

        yield from asyncio.run(collect())


def routed_node(
    dispatcher: Dispatcher,
    *,
    role: str,
    prompt: str,
    input_key: str = "query",
    output_key: str = "answer",
    stage: str | None = None,
    budget: Budget | None = None,
) -> Callable[[Mapping[str, Any]], Any]:
    """A routed step as a node of YOUR LangGraph graph.

    The node reads ``state[input_key]`` (and ``state["query_id"]`` for replay, if present), runs one routed step (legality, budget, routing, memory)
    and returns ``{output_key: text, "agentroute_task_id": id, "agentroute_cost_usd": cost}``.
    Nodes that see the same ``agentroute_task_id`` in the state share one task and its budget;
    the task's record (status, answer, cost) is brought up to date after each of them.
    """
    runs: dict[str, TaskRun] = {}

    async def node(state: Mapping[str, Any]) -> dict[str, Any]:
        task_id = state.get("agentroute_task_id")
        run = runs.get(task_id) if task_id else None
        if run is None:
            run = dispatcher.start(
                str(state[input_key]), budget=budget, graph="langgraph", task_id=task_id, query_id=state.get("query_id")
            )
            runs[run.task.id] = run
        step = await dispatcher.step(run, role=role, stage=stage or role, prompt=prompt, input=str(state[input_key]))
        dispatcher.finish(run)  # the task record is updated after every routed node that shares it
        text = step.output if step is not None and step.status == "ok" else (run.best_answer or "")
        return {output_key: text, "agentroute_task_id": run.task.id, "agentroute_cost_usd": run.ledger.spent_usd}

    node.__name__ = f"routed_{role}"
    return node

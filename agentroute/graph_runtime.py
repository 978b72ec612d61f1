"""What a routed node does at run time inside LangGraph: find its task, bridge sync and async, stream.

Every routed node — an :class:`~agentroute.graph.AgentGraph` role or a :func:`routed_node` in your
own ``StateGraph`` — works the same way:

1. **Find the task.** The graph state carries one small JSON-able channel, ``agentroute``
   (:data:`CHANNEL`), holding the task's checkpoint (:meth:`TaskRun.checkpoint`: task id, ledger,
   next step index, stage, sequence number). The node looks the task id up in the in-process
   registry of live runs (:data:`~agentroute.dispatch.run.LIVE`), so all nodes of one invocation —
   concurrent ones too — share one :class:`TaskRun` and one ledger. When the run is not live (a
   resume in a new process, or after a crash) it is rebuilt from the checkpoint and reconciled with
   the memory. No channel, or a *task request* (:func:`new_task`) in it, opens a new task.
2. **Run the step** through the dispatcher, and write the updated checkpoint back to the channel;
   the channel's reducer keeps the latest one (highest ``seq``), so parallel nodes merge correctly.
3. **Stream**: each finished step is reported to LangGraph's ``messages`` stream mode as a chat
   message (what a LangChain chat model would emit) and to the ``custom`` mode as a dict.
4. **End** (a task a :func:`routed_node` opened): its record is brought up to date after each node;
   the router is told it ended once, when the outermost invocation ends (:func:`end_with_invocation`).

Nodes are :class:`RunnableCallable` s with both a sync and an async function: ``invoke``/``stream``
use the sync one, which runs the dispatcher's coroutine on one background event loop
(:func:`run_sync`), so it works inside a running loop too (a notebook cell); ``ainvoke``/``astream``
await it directly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import hashlib
import itertools
import logging
import re
import sys
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from agentroute.budget import RESOURCES, Budget, Ledger
from agentroute.dispatch.dispatcher import add_step_watcher
from agentroute.dispatch.run import LIVE, TaskRun, merge_checkpoints
from agentroute.errors import BackendError, ConfigurationError
from agentroute.memory.errors import MemoryStoreError, TaskBusyError
from agentroute.types import Step, check_role, new_id

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Iterator

    from langchain_core.runnables import RunnableConfig
    from langgraph.graph.state import CompiledStateGraph
    from langgraph.types import StreamWriter

    from agentroute.dispatch.dispatcher import Dispatcher, Postcondition
    from agentroute.memory.base import MemoryStore

    _Compiled = CompiledStateGraph[Any, Any, Any, Any]  # the mixin's base for the type checker
else:
    _Compiled = object

T = TypeVar("T")
G = TypeVar("G")
log = logging.getLogger("agentroute.graph")

#: State key of the task channel (the task's checkpoint, see :class:`TaskRun`).
CHANNEL = "agentroute"
#: State key of the per-invocation marker (untracked: never checkpointed) used by :func:`routed_node`.
LIVE_KEY = "agentroute_live"
_RESUMING = "__pregel_resuming"  # LangGraph sets it in a node's config while a run resumes


# -- sync ↔ async ------------------------------------------------------------------------------
_loop_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_loop_thread: threading.Thread | None = None


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop, _loop_thread
    with _loop_lock:
        if _loop is None or _loop_thread is None or not _loop_thread.is_alive():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="agentroute-sync", daemon=True)
            thread.start()
            _loop, _loop_thread = loop, thread
        return _loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code — also inside a running event loop.

    The coroutine runs on one background event loop shared by every synchronous call of the
    process, in a copy of the caller's context (LangGraph's config, stream writer and
    ``interrupt()`` keep working). One loop, not one per thread: backends keep their connections
    per event loop (the ``openai`` backend's clients), so they are reused across calls.
    """
    ctx = contextvars.copy_context()
    if threading.current_thread() is _loop_thread:  # called from the loop itself: would deadlock
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(ctx.run, asyncio.run, coro).result()
    loop = _background_loop()
    done: concurrent.futures.Future[T] = concurrent.futures.Future()
    task_box: list[asyncio.Task[T]] = []

    def start() -> None:
        task = loop.create_task(coro, context=ctx)
        task_box.append(task)

        def relay(t: asyncio.Task[T]) -> None:
            if t.cancelled():
                done.cancel()
            elif (exc := t.exception()) is not None:
                done.set_exception(exc)
            else:
                done.set_result(t.result())

        task.add_done_callback(relay)

    loop.call_soon_threadsafe(start)
    try:
        return done.result()
    except BaseException:
        if not done.done() and task_box:  # interrupted while waiting (Ctrl-C): stop the work too,
            loop.call_soon_threadsafe(task_box[0].cancel)
            with contextlib.suppress(
                Exception
            ):  # and let it record what its calls cost (a second Ctrl-C: at once)
                done.exception(timeout=1.0)
        raise


def stoppable_in_kernel() -> contextlib.AbstractAsyncContextManager[Any]:
    """Keep a Jupyter kernel's stop button working during a top-level ``await``.

    ipykernel delivers the interrupt to code awaited on its own event loop only when that loop next
    wakes (ipykernel#881): a task waiting on a provider that does not answer ignored the stop
    button until the card's timeout. While the block runs on the kernel's main thread, the loop is
    woken every 0.2 s. Elsewhere (no ipykernel loaded, another thread) this does nothing, at the
    cost of no context manager built per task.
    """
    if "ipykernel" not in sys.modules or threading.current_thread() is not threading.main_thread():
        return _NOTHING
    return _waking_loop()


_NOTHING = contextlib.nullcontext()  # stateless: one for every block


@contextlib.asynccontextmanager
async def _waking_loop() -> Any:
    async def wake() -> None:
        while True:
            await asyncio.sleep(0.2)

    ticker = asyncio.ensure_future(wake())
    try:
        yield
    finally:
        ticker.cancel()


def runnable(name: str, func: Callable[..., Any], afunc: Callable[..., Any]) -> Any:
    """A LangGraph node with a sync and an async implementation (config and writer injected)."""
    try:
        from langgraph._internal._runnable import RunnableCallable
    except ImportError:  # pragma: no cover - older LangGraph
        from langgraph.utils.runnable import RunnableCallable  # type: ignore[no-redef]
    return RunnableCallable(func, afunc, name=name, trace=False)  # as LangGraph wraps plain functions


# -- tasks -------------------------------------------------------------------------------------
def new_task(
    *,
    task_id: str | None = None,
    budget: Budget | Mapping[str, Any] | None = None,
    query_id: str | None = None,
    task_type: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A task request: put it under ``"agentroute"`` in a graph's input to start a new task there.

    >>> sorted(new_task(task_id="t1", budget={"calls": 2}))
    ['budget', 'metadata', 'query_id', 'task_id', 'task_type']
    """
    if isinstance(budget, Budget):
        limits: dict[str, Any] | None = budget.given()
    elif budget is not None:
        limits = Budget(**budget).given()
    else:
        limits = None
    return {
        "task_id": task_id or new_id(),
        "budget": limits,
        "query_id": query_id,
        "task_type": task_type,
        "metadata": dict(metadata or {}),
    }


def graph_path(config: Mapping[str, Any] | None) -> str:
    """The node-name path of the graph a node runs in: ``""`` at the root, ``"parent_node"`` in a subgraph."""
    if not config:
        return ""
    ns = (config.get("metadata") or {}).get("langgraph_checkpoint_ns")
    if ns is None:
        ns = (config.get("configurable") or {}).get("checkpoint_ns", "")
    ns = str(ns)
    if "|" not in ns:  # a node of the root graph
        return ""
    return "|".join(part.split(":", 1)[0] for part in ns.split("|")[:-1])


def fingerprint(value: Any) -> str:
    """A short digest of a state value, stable across processes."""
    return hashlib.blake2b(repr(value).encode("utf-8", "backslashreplace"), digest_size=8).hexdigest()


_GREGORIAN_TO_UNIX_100NS = 0x01B21DD213814000  # from 1582-10-15 (UUID time) to 1970-01-01, in 100 ns


def invocation_task(config: Mapping[str, Any] | None) -> str:
    """The id of the task the nodes of this superstep open, the same in every process.

    Parallel nodes of the first superstep find no task in the state yet; they agree on one through
    the checkpoint their superstep started from (``Runtime.execution_info.checkpoint_id``), from
    which the id is derived: a time-ordered id like :func:`~agentroute.types.new_id` (the
    checkpoint's time, then 80 bits of a digest of thread, graph path and checkpoint). LangGraph
    runs a superstep from the same checkpoint again only to resume it — after its ``interrupt()``
    or a crash, maybe in another process — so that run finds the task the first one opened; a
    replay from an old checkpoint forks a new checkpoint, and opens a new task.
    """
    configurable = (config or {}).get("configurable") or {}
    info = getattr(configurable.get("__pregel_runtime"), "execution_info", None)
    checkpoint_id = getattr(info, "checkpoint_id", None)
    if not checkpoint_id:
        return new_id()
    hexed = str(checkpoint_id).replace("-", "")
    ms = None
    if len(hexed) == 32 and hexed[12] == "6":  # a UUIDv6 (LangGraph's savers): 60 bits of time, in 100 ns
        try:
            ticks = int(hexed[:12], 16) << 12 | int(hexed[13:16], 16)
            ms = (ticks - _GREGORIAN_TO_UNIX_100NS) // 10_000
        except ValueError:
            ms = None
    if ms is None or not 0 <= ms < 1 << 48:  # a saver of your own with other ids
        ms = time.time_ns() // 1_000_000
    key = f"{configurable.get('thread_id')}|{graph_path(config)}|{checkpoint_id}".encode()
    return (
        (ms << 80 | int.from_bytes(hashlib.blake2b(key, digest_size=10).digest(), "big"))
        .to_bytes(16, "big")
        .hex()
    )


try:
    from langgraph._internal._constants import CONFIG_KEY_CHECKPOINTER as _CHECKPOINTER
    from langgraph._internal._constants import CONFIG_KEY_READ as _READ
    from langgraph._internal._constants import CONFIG_KEY_SCRATCHPAD as _SCRATCHPAD
except (
    ImportError
):  # pragma: no cover - another LangGraph layout: always checkpoint; Send branches open their own task
    _CHECKPOINTER = _READ = _SCRATCHPAD = None  # type: ignore[assignment]


def checkpointed(config: Mapping[str, Any] | None) -> bool:
    """Whether this run saves checkpoints (its own checkpointer or a parent's); when unsure, yes."""
    if _CHECKPOINTER is None:
        return True
    return (config or {}).get("configurable", {}).get(_CHECKPOINTER) is not None


def graph_task(config: Mapping[str, Any] | None) -> tuple[dict[str, Any] | None, str | None]:
    """The task channel and live marker of the graph's state, read from inside a node whose own
    input lacks them (a ``Send`` branch gets only its payload); ``(None, None)`` without a channel."""
    read = ((config or {}).get("configurable") or {}).get(_READ)
    if read is None:
        return None, None
    try:
        values = read([CHANNEL, LIVE_KEY], False)
    except KeyError:  # the graph's state declares no task channel
        return None, None
    return values.get(CHANNEL), values.get(LIVE_KEY)


# -- a node LangGraph runs again after its interrupt() -------------------------------------------
_CALLS: weakref.WeakKeyDictionary[Any, Callable[[], int]] = weakref.WeakKeyDictionary()
_CALLS_LOCK = threading.Lock()
_PAID = "_langgraph_calls"  # run.context: (LangGraph task namespace, call ordinal) → index of the step that call returned


def call_position(config: Mapping[str, Any] | None) -> tuple[tuple[str, int], bool] | None:
    """Where this routed call stands in the execution of its LangGraph task, or ``None`` outside one.

    ``(key, replay)``: ``key`` — the task's namespace (the same each time LangGraph runs that task
    again) and the ordinal of this call among the routed calls of this execution; ``replay`` —
    whether the call comes before an ``interrupt()`` of the task that has its answer already, so
    an earlier execution made it and paid for it. LangGraph re-executes an interrupted node from
    its start and answers its interrupts in order, so a call after the last answered one is new
    work (a redraft the human asked for, a call a branch makes once allowed to) and is paid.
    """
    configurable = (config or {}).get("configurable") or {}
    scratchpad = configurable.get(_SCRATCHPAD) if _SCRATCHPAD is not None else None
    if scratchpad is None:
        return None
    execution = scratchpad.get_null_resume  # one closure per execution of a task
    with _CALLS_LOCK:
        counter = _CALLS.get(execution)
        if counter is None:
            counter = _CALLS[execution] = itertools.count().__next__
    key = (str(configurable.get("checkpoint_ns", "")), counter())
    if not scratchpad.resume and execution(False) is None:  # no interrupt of this task has an answer
        return key, False
    # No public API gives these two facts of the running execution (LangGraph 1.2.24: get_state's
    # tasks/interrupts and pending writes describe the thread before it): read from its scratchpad.
    pending, passed = _null_resume_pending(execution), _interrupts_passed(scratchpad)
    if (
        pending is None or passed is None
    ):  # another LangGraph layout: pay (never take back a call meant to be paid)
        return key, False
    return key, passed < len(scratchpad.resume) + pending


def _interrupts_passed(scratchpad: Any) -> int | None:
    """How many ``interrupt()`` calls this execution of the task has made so far."""
    counter = getattr(scratchpad.interrupt_counter, "_counter", False)
    if counter is None:  # LangGraph's lazy counter, not started: none yet
        return 0
    owner = getattr(counter, "__self__", None)
    if not isinstance(owner, itertools.count):
        return None
    made = re.fullmatch(r"count\((\d+)\)", repr(owner))
    return int(made.group(1)) if made else None


def _null_resume_pending(get_null_resume: Any) -> bool | None:
    """Whether the thread's resume value (``Command(resume=value)``) still waits for this task's next
    ``interrupt()`` — LangGraph takes it out of the pending writes when an interrupt consumes it."""
    try:
        free = dict(
            zip(
                get_null_resume.__code__.co_freevars,
                (c.cell_contents for c in get_null_resume.__closure__ or ()),
                strict=True,
            )
        )
        write, parent, pending = free["null_resume_write"], free["parent_scratchpad"], free["pending_writes"]
    except (AttributeError, KeyError, ValueError, TypeError):
        return None
    if write is None:  # a subgraph's task: its parent's resume value
        return False if parent is None else _null_resume_pending(parent.get_null_resume)
    return any(w is write for w in pending)


def taken_back(run: TaskRun, key: tuple[str, int], since: int, stage: str, text: str) -> Step | None:
    """The step an earlier execution of this call paid for, or ``None``.

    The call's own step when this process saw it paid; in a run rebuilt from the memory, the first
    answered step of ``stage`` on the same input since the node's checkpoint (step index ``since``)
    that no other call took back."""
    paid: dict[tuple[str, int], int] = run.context.setdefault(_PAID, {})
    index = paid.get(key)
    taken = set(paid.values()) if index is None else ()
    for step in run.steps:
        if index is not None:
            if step.index == index:
                return step
        elif (
            step.index >= since
            and step.index not in taken
            and step.status == "ok"
            and step.stage == stage
            and step.input == text
        ):
            paid[key] = step.index
            return step
    return None


def remember_call(run: TaskRun, key: tuple[str, int], step: Step | None) -> None:
    if step is not None:
        run.context.setdefault(_PAID, {})[key] = step.index


def resuming(config: Mapping[str, Any] | None) -> bool:
    return bool(config and (config.get("configurable") or {}).get(_RESUMING))


_RESTARTED: weakref.WeakKeyDictionary[Any, set[str]] = (
    weakref.WeakKeyDictionary()
)  # a resumed execution → its tasks


def restart_paused(task_id: str | None, config: Mapping[str, Any] | None) -> TaskRun | None:
    """A node execution's first use of ``task_id`` in a resumed superstep: the task's idle live run,
    kept since the invocation stopped (an ``interrupt()`` a human answers, ``interrupt_before``, an
    error), is dropped and returned, so that it is rebuilt from its checkpoint and the memory as a
    worker in another process does. One rule for both: the time between two invocations does not
    count against ``Budget(seconds)``. ``None`` when nothing was dropped."""
    configurable = (config or {}).get("configurable") or {}
    scratchpad = configurable.get(_SCRATCHPAD) if _SCRATCHPAD is not None else None
    if not task_id or scratchpad is None or not configurable.get(_RESUMING):
        return None
    with _CALLS_LOCK:
        restarted = _RESTARTED.setdefault(scratchpad.get_null_resume, set())  # one closure per execution
        if task_id in restarted:
            return None
        restarted.add(task_id)
    paused = LIVE.get(task_id)
    LIVE.drop(task_id)  # an idle run only: one in use by this invocation is kept
    return paused if paused is not None and LIVE.get(task_id) is None else None


def rebuilt_after(paused: TaskRun, make: Callable[[], TaskRun]) -> TaskRun:
    """``make()``'s run of a task rebuilt by :func:`restart_paused`, knowing which of its steps each
    call of the paused run paid for (so twin branches each take back their own)."""
    run = make()
    run.context.setdefault(_PAID, {}).update(paused.context.get(_PAID, {}))
    return run


def open_task(
    dispatcher: Dispatcher,
    request: Mapping[str, Any],
    *,
    query: str,
    graph: str,
    budget: Budget | None,
    carry: dict[str, Any],
) -> TaskRun:
    """Start the task ``request`` describes (recorded as ``running`` in the memory)."""
    limits = request.get("budget")
    run = dispatcher.start(
        query,
        budget=Budget(**limits) if limits is not None else budget,
        graph=graph,
        task_id=request.get("task_id"),
        query_id=request.get("query_id"),
        task_type=request.get("task_type"),
        metadata=request.get("metadata"),
    )
    run.carry = carry
    return run


def rebuild(dispatcher: Dispatcher, checkpoint: Mapping[str, Any]) -> TaskRun:
    return TaskRun.from_checkpoint(dict(checkpoint), dispatcher.memory)


def reopen(dispatcher: Dispatcher, task_id: str, carry: dict[str, Any]) -> TaskRun | None:
    """The recorded task ``task_id`` as a run that continues it (every recorded step charged to a
    fresh ledger under its budget), or ``None`` when the memory does not have it."""
    memory = dispatcher.memory
    if memory is None:
        return None
    memory.flush()
    stored = memory.get_task(task_id)
    if stored is None:
        return None
    budget = stored.task.budget
    snapshot = {
        "task_id": task_id,
        "budget": budget.given() if budget is not None else None,
        "ledger": recorded_ledger(budget, stored.steps),
        "index": 0,
        "carry": carry,
    }
    return TaskRun.from_checkpoint(snapshot, memory)


def recorded_ledger(budget: Budget | None, steps: Iterable[Step]) -> dict[str, Any]:
    """The ledger snapshot of a task reopened from the memory, its checkpoint holding none: the time
    its recorded steps ran (the union of their spans: concurrent steps count once), so a
    ``seconds`` budget is not given afresh on each resume. Their costs are charged by
    :meth:`TaskRun.from_checkpoint`; time between invocations (a human answering an interrupt)
    counts no more than across a checkpoint."""
    ends = ((s.created_at.timestamp(), s.latency_ms / 1000) for s in steps)  # a step is recorded as it ends
    spans = sorted((end - latency, end) for end, latency in ends)
    ran, reached = 0.0, float("-inf")
    for start, end in spans:
        if end > reached:
            ran += end - max(start, reached)
            reached = end
    snapshot = Ledger(budget).snapshot()
    snapshot["spent"][RESOURCES.index("seconds")] = ran
    return snapshot


def is_request(channel: Mapping[str, Any] | None) -> bool:
    return bool(channel) and "ledger" not in channel  # type: ignore[operator]


# -- the end of a task a routed node opened --------------------------------------------------------
try:
    from langgraph._internal._constants import CONFIG_KEY_CALL as _CALL
except (
    ImportError
):  # pragma: no cover - another LangGraph layout: the router hears of the task's end after each node
    _CALL = None  # type: ignore[assignment]

# a task's runs to finish, one per dispatcher whose routed node ran it (two dispatchers may share a task)
_ENDS: weakref.WeakKeyDictionary[Any, dict[tuple[str, int], tuple[Dispatcher, TaskRun]]] = (
    weakref.WeakKeyDictionary()
)
# where a pause left its thread: (its checkpointer, weakly; the thread's config; the id of its latest checkpoint then)
PausePoint = tuple[Callable[[], Any], dict[str, Any], str]
_PAUSED: OrderedDict[str, dict[int, tuple[weakref.ref[Dispatcher], TaskRun, PausePoint | None]]] = (
    OrderedDict()
)  # resumable, not ended
_PAUSED_LIMIT = 4096  # past it, the oldest paused task ends (its routers told; unfinished: interrupted)
# a thread id → its paused tasks in _PAUSED, each with (weakly) the outermost invocation that paused it
_PAUSED_ON: dict[str, dict[str, Callable[[], Any]]] = {}
_TOLD: OrderedDict[tuple[str, int], None] = OrderedDict()  # (task, dispatcher) whose router was told it ended
_TOLD_LIMIT = 16384
_ENDS_LOCK = threading.Lock()


def _running_loop(configurable: Mapping[str, Any]) -> Any | None:
    """The Pregel loop running the LangGraph task whose ``configurable`` this is: its runner's
    ``__pregel_call`` schedules on the loop's ``accept_push`` (LangGraph 1.x; a node timeout's guard
    wraps it in a closure). ``None`` in another layout."""
    call = configurable.get(_CALL) if _CALL is not None else None
    for _ in range(4):
        if isinstance(call, functools.partial):
            break
        code, cells = getattr(call, "__code__", None), getattr(call, "__closure__", None) or ()
        call = dict(
            zip(getattr(code, "co_freevars", ()), (c.cell_contents for c in cells), strict=False)
        ).get("call")
    if not isinstance(call, functools.partial):
        return None
    loop = getattr(call.keywords.get("schedule_task"), "__self__", None)
    return (
        loop
        if isinstance(getattr(loop, "stack", None), (contextlib.ExitStack, contextlib.AsyncExitStack))
        else None
    )


def _invocations(configurable: Mapping[str, Any]) -> Iterator[Any]:
    """The Pregel loop running the task whose ``configurable`` this is, then the loop running the
    node that invoked that graph (a subgraph's parent), and so on outward."""
    loop = None
    for _ in range(64):
        parent = _running_loop(configurable)
        if parent is None or parent is loop:
            return
        yield parent
        loop, configurable = parent, (getattr(parent, "config", None) or {}).get("configurable") or {}


def root_invocation(config: Mapping[str, Any] | None) -> Any | None:
    """The Pregel loop of the outermost graph invocation this node's task can go on in (through
    subgraphs and nodes that invoke graphs, up to one whose state has no task channel: an agent's
    tool, an ``@entrypoint``), or ``None`` when it cannot be found."""
    root = None
    for loop in _invocations((config or {}).get("configurable") or {}):
        if root is not None and CHANNEL not in (getattr(loop, "channels", None) or {CHANNEL: None}):
            break  # the task cannot be carried out of this graph: it ends with this graph's invocation
        root = loop
    return root


def _outermost(loop: Any) -> Any:
    """The outermost invocation ``loop`` runs in (itself at the top): the one a thread's input reaches."""
    for outer in _invocations((getattr(loop, "config", None) or {}).get("configurable") or {}):
        loop = outer
    return loop


def end_with_invocation(dispatcher: Dispatcher, run: TaskRun, config: Mapping[str, Any] | None) -> bool:
    """Have ``run``'s task finished — the router told it ended, once, with all its steps — when the
    outermost invocation ends; ``False`` (the caller finishes it now) when that end cannot be seen.

    LangGraph gives a node no public hook for its invocation's end: the callback runs as the root
    Pregel loop exits (its exit stack). An ``interrupt()``/``interrupt_before`` pause is no end, nor
    an exception on a checkpointed thread (a resume continues the task); without a checkpointer,
    nothing resumes: an exception, the recursion limit or a pause ends it. Each dispatcher whose
    routed nodes ran the task tells its own router."""
    loop = root_invocation(config)
    if loop is None:
        return False
    with _ENDS_LOCK:
        ending = _ENDS.get(loop)
        if ending is None:
            ending = _ENDS[loop] = {}
            args = (weakref.ref(loop), ending, checkpointed(config))
            if isinstance(
                loop.stack, contextlib.AsyncExitStack
            ):  # ainvoke: an evicted task's thread is read async
                loop.stack.push_async_exit(functools.partial(_ainvocation_ended, *args))
            else:
                loop.stack.push(functools.partial(_invocation_ended, *args))
        ending[(run.task.id, id(dispatcher))] = (dispatcher, run)  # the latest run (a resume may rebuild it)
        for ref, _, _ in _unpause(run.task.id).values():  # the dispatchers that ran it before a pause
            if (earlier := ref()) is not None:
                ending.setdefault((run.task.id, id(earlier)), (earlier, run))
    return True


async def end_paused(task_id: str, config: Mapping[str, Any] | None) -> None:
    """Finish the task ``task_id`` if an invocation left it paused (or resumable) and it was not
    resumed through a routed node since: this invocation's new input on its thread starts another
    task. Recorded as an evicted one is (:func:`_finish_paused`)."""
    with _ENDS_LOCK:
        at, owners = _owners(_unpause(task_id))
    if owners:
        await _end_left([(at, owners)])


async def end_abandoned(config: Mapping[str, Any] | None, opening: str) -> None:
    """A routed node opens the task ``opening``: when its outermost invocation brought its thread a
    new input (not a resume), finish the tasks paused on that thread by an earlier invocation (as
    :func:`end_paused` does the one the state names). LangGraph's new input drops the tasks the
    thread had pending, and with them a subgraph's pause: its state, where the task's id was, is
    gone. Nothing to do, at no read, when no task is paused on the thread."""
    if not _PAUSED_ON:
        return
    outer = _outermost(root) if (root := root_invocation(config)) is not None else None
    thread = (getattr(outer, "checkpoint_config", None) or {}).get("configurable", {}).get("thread_id")
    if thread is None or not _brought_input(outer):
        return
    saver, left = getattr(outer, "checkpointer", None), []
    with _ENDS_LOCK:
        for task_id, by in list(_PAUSED_ON.get(str(thread), {}).items()):
            if task_id == opening or by() is outer:  # paused by this very invocation (a parallel subgraph's)
                continue
            at = _owners(_PAUSED.get(task_id, {}))[0]
            if at is not None and at[0]() is saver:  # not another graph's thread of that name
                left.append(_owners(_unpause(task_id)))
    if left:
        await _end_left(left)


def _brought_input(loop: Any) -> bool:
    """Whether the invocation ``loop`` runs started from an input, not a resume (``None``, a ``Command``)."""
    from langgraph.types import Command

    value = getattr(loop, "input", None)
    return value is not None and not isinstance(value, Command)


async def _end_left(left: Sequence[tuple[PausePoint | None, Owners]]) -> None:
    """Finish paused tasks the thread's new input left (:func:`_finish_paused`, their threads read
    with :func:`_aafter`). A cancel while reading ends the rest all the same, as stopped where they
    paused, then goes on."""
    stopped: BaseException | None = None
    for at, owners in left:
        after: list[Any] = []
        if stopped is None and at is not None:
            try:
                after = await _aafter(at)
            except BaseException as exc:  # noqa: BLE001 - re-raised once every task is finished
                stopped = exc
        _finish_paused(owners, at, after)
    if stopped is not None:
        raise stopped


def _finish(dispatcher: Dispatcher, run: TaskRun, *, unfinished: bool = False) -> None:
    """Finish the task — the router told it ended, unless it was told already (the same input again
    on its thread continues it: the record takes the new steps, the router no second, partial end);
    a claimed invocation's error recorded its status; ``unfinished`` (its graph stopped mid-way):
    ``interrupted``."""
    kept = (
        run.task.status
        if run.task.status in ("failed", "interrupted")
        else "interrupted"
        if unfinished
        else None
    )
    key = (run.task.id, id(dispatcher))
    with _ENDS_LOCK:
        told = key in _TOLD
        _TOLD[key] = None
        _TOLD.move_to_end(key)
        while len(_TOLD) > _TOLD_LIMIT:
            _TOLD.popitem(last=False)
    try:
        dispatcher.finish(run, status=kept, observe=not told)
    except Exception:  # noqa: BLE001 - the invocation's own outcome must stand
        log.exception("finishing task %s at its end", run.task.id)
    if LIVE.get(run.task.id) is run:  # its nodes released it before the end: no finished run kept idle
        LIVE.drop(run.task.id)


def _invocation_ended(loop: weakref.ref[Any], ending: dict[tuple[str, int], tuple[Dispatcher, TaskRun]],
                      resumable: bool, exc_type: Any, exc: BaseException | None, tb: Any) -> None:  # fmt: skip
    """The root loop's exit: finish the tasks its routed nodes opened when the invocation ended them —
    however it stopped when nothing can resume it (no checkpointer: the recursion limit, a pause).
    Paused ones wait; past :data:`_PAUSED_LIMIT` the oldest paused task ends now, ``interrupted``
    unless its thread went on past the pause (:func:`_went_on`)."""
    runs, evicted = _ended(loop, ending, resumable, exc)
    for dispatcher, run in runs:
        _finish(dispatcher, run)
    for at, owners in evicted:
        _finish_paused(owners, at, _after(at))


async def _ainvocation_ended(loop: weakref.ref[Any], ending: dict[tuple[str, int], tuple[Dispatcher, TaskRun]],
                             resumable: bool, exc_type: Any, exc: BaseException | None, tb: Any) -> None:  # fmt: skip
    """:func:`_invocation_ended` at an async root loop's exit: an evicted task's checkpointer is read
    with its async interface (an async saver refuses sync calls from its own loop)."""
    runs, evicted = _ended(loop, ending, resumable, exc)
    for dispatcher, run in runs:
        _finish(dispatcher, run)
    for at, owners in evicted:
        after: list[Any] = []
        try:
            after = await _aafter(at)
        finally:  # cancelled while reading: it ends all the same, as stopped where it paused
            _finish_paused(owners, at, after)


Owners = list[tuple["Dispatcher", TaskRun]]


def _owners(
    paused: Mapping[int, tuple[weakref.ref[Dispatcher], TaskRun, PausePoint | None]],
) -> tuple[PausePoint | None, Owners]:
    """A paused task's entry in :data:`_PAUSED`: where its pause left its thread, and its runs whose
    dispatcher is still alive."""
    entries = list(paused.values())
    owners = [(owner, run) for ref, run, _ in entries if (owner := ref()) is not None]
    return (entries[0][2] if entries else None), owners


def _finish_paused(owners: Owners, at: PausePoint | None, after: Sequence[Any]) -> None:
    """Finish a paused task — evicted past :data:`_PAUSED_LIMIT`, or left by its thread's new input:
    ``interrupted`` unless the thread's checkpoints from the pause on (``after``, :func:`_after`)
    show its graph went on past the pause to its end (:func:`_went_on`)."""
    unfinished = not _went_on(at, after)
    for dispatcher, run in owners:
        _finish(dispatcher, run, unfinished=unfinished)


def _ended(loop: weakref.ref[Any], ending: dict[tuple[str, int], tuple[Dispatcher, TaskRun]],
           resumable: bool, exc: BaseException | None) -> tuple[Owners, list[tuple[PausePoint | None, Owners]]]:  # fmt: skip
    """The runs the invocation ended, and the paused tasks evicted past :data:`_PAUSED_LIMIT` (each
    with where its pause left its thread); the others are kept as paused."""
    root = loop()
    ended = not resumable or exc is None and getattr(root, "status", "done") == "done"
    evicted: list[tuple[PausePoint | None, Owners]] = []
    with _ENDS_LOCK:
        runs = list(ending.values())
        ending.clear()
        if ended:
            return runs, evicted
        at = _pause_point(root)
        by = weakref.ref(_outermost(root)) if at is not None else None
        for dispatcher, run in runs:
            _PAUSED.setdefault(run.task.id, {})[id(dispatcher)] = (weakref.ref(dispatcher), run, at)
            _PAUSED.move_to_end(run.task.id)
            if at is not None and by is not None:  # found again by the thread's next input (end_abandoned)
                _PAUSED_ON.setdefault(str(at[1]["configurable"].get("thread_id")), {})[run.task.id] = by
        while len(_PAUSED) > _PAUSED_LIMIT:
            task_id = next(iter(_PAUSED))
            evicted.append(_owners(_unpause(task_id)))
    return [], evicted


def _unpause(task_id: str) -> dict[int, tuple[weakref.ref[Dispatcher], TaskRun, PausePoint | None]]:
    """Take the task out of :data:`_PAUSED` (and its thread's index); the caller holds :data:`_ENDS_LOCK`."""
    paused = _PAUSED.pop(task_id, {})
    for _, _, at in paused.values():
        thread = str(at[1]["configurable"].get("thread_id")) if at is not None else ""
        if (tasks := _PAUSED_ON.get(thread)) is not None:
            tasks.pop(task_id, None)
            if not tasks:
                del _PAUSED_ON[thread]
    return paused


def _pause_point(loop: Any) -> PausePoint | None:
    """Where the paused root loop left its thread: its checkpointer (weakly), the thread and
    namespace, and the checkpoint it paused at; ``None`` when it cannot be read (no checkpointer)."""
    saver = getattr(loop, "checkpointer", None)
    source = getattr(loop, "checkpoint_config", None)
    configurable = (source if isinstance(source, Mapping) else {}).get("configurable") or {}
    if saver is None or not configurable.get("checkpoint_id"):
        return None
    thread = {
        "thread_id": configurable.get("thread_id"),
        "checkpoint_ns": configurable.get("checkpoint_ns", ""),
    }
    try:
        held: Callable[[], Any] = weakref.ref(saver)  # a paused task keeps no saver (its threads) alive
    except TypeError:  # a saver with __slots__
        held = functools.partial(lambda saver: saver, saver)
    return held, {"configurable": thread}, str(configurable["checkpoint_id"])


def _went_on(at: PausePoint | None, after: Sequence[Any]) -> bool:
    """Whether a paused task's graph ran on past the pause to its end on a line of checkpoints that
    continues from it (``after``: its namespace's checkpoints from the pause on, :func:`_after`):
    steps of the graph (a resume through plain nodes only; the record stands as they left it)
    after the pause and, before any new input, the graph standing finished (:func:`_at_end`) — not
    paused again. Not after ``update_state`` alone. A line forked from before the pause (LangGraph
    time travel: an input sent from an earlier checkpoint) does not continue it: the task is judged
    on the lines that do (finished on its own line before the fork: ``done``). ``False`` — stopped
    where it paused — when the thread cannot be read."""
    if at is None:
        return False
    by_id = {_checkpoint_id(checkpoint): checkpoint for checkpoint in after}
    parents = {key: _parent_id(checkpoint) for key, checkpoint in by_id.items()}
    for leaf in by_id.keys() - set(parents.values()):  # each line's newest checkpoint
        line, key = [], leaf
        while key in by_id and key != at[2]:
            line.append(by_id[key])
            key = parents[key]
        if key == at[2] and _ran_to_end(reversed(line)):
            return True
    return False


def _ran_to_end(line: Iterable[Any]) -> bool:
    """Whether the checkpoints after a pause (oldest first) hold a step of the graph and, where the
    next input came (or the line ends), a finished graph."""
    stepped, last = False, None
    for checkpoint in line:
        source = (getattr(checkpoint, "metadata", None) or {}).get("source")
        if source == "input":
            break
        stepped, last = stepped or source == "loop", checkpoint
    return stepped and _at_end(last)


def _at_end(checkpoint: Any) -> bool:
    """Whether the graph stood finished at ``checkpoint``: no ``interrupt()`` nor error pending on it,
    and no node still to run (LangGraph 1.x: a ``branch:to:NODE`` channel written and newer than the
    node last saw, as behind ``interrupt_before``/``interrupt_after``)."""
    if any(
        write[1] in ("__interrupt__", "__error__")
        for write in getattr(checkpoint, "pending_writes", None) or ()
    ):
        return False
    saved = getattr(checkpoint, "checkpoint", None) or {}
    seen, values = saved.get("versions_seen") or {}, saved.get("channel_values") or {}
    for channel, version in (saved.get("channel_versions") or {}).items():
        if channel.startswith("branch:to:") and channel in values:  # written, not yet consumed
            had = (seen.get(channel.removeprefix("branch:to:")) or {}).get(channel)
            if had is None or type(had) is type(version) and version > had:
                return False
    return True


def _checkpoint_id(checkpoint: Any) -> str | None:
    """A checkpoint tuple's id (a uuid6: later ones sort after earlier ones, as LangGraph's savers read them)."""
    return (getattr(checkpoint, "config", None) or {}).get("configurable", {}).get("checkpoint_id")


def _parent_id(checkpoint: Any) -> str | None:
    return (getattr(checkpoint, "parent_config", None) or {}).get("configurable", {}).get("checkpoint_id")


_PAGE = 8  # checkpoints a paused thread's first listing reads; doubled for each next one


def _paged(
    after: list[Any], listed: Sequence[Any], pause: str, page: dict[str, Any]
) -> dict[str, Any] | None:
    """Keep the checkpoints of one listed page (newest first) that are the pause or newer; the
    ``list`` arguments of the next page, or ``None`` once the pause (or the thread's first) is read.
    In pages: ``PostgresSaver.list`` fetches every row it matches before it yields one (a long
    thread's whole history read to end a task paused near its end)."""
    for checkpoint in listed:
        key = _checkpoint_id(checkpoint) or ""
        if key >= pause:
            after.append(checkpoint)
        if key <= pause:
            return None
    if len(listed) < page["limit"]:
        return None
    return {"before": listed[-1].config, "limit": page["limit"] * 2}


def _after(at: PausePoint | None) -> list[Any]:
    """The paused thread's checkpoints in the pause's namespace, newest first, down to the pause
    ``at[2]`` (listed in pages, :func:`_paged`), read from synchronous code; as far as they could be read
    (none: an async saver whose loop is this thread's or not running, a closed connection)."""
    after: list[Any] = []
    if at is None or (saver := at[0]()) is None:
        return after
    bound = getattr(saver, "loop", None)  # an async saver serves sync calls from other threads only
    if isinstance(bound, asyncio.AbstractEventLoop):
        if bound.is_closed() or not bound.is_running() or _this_loop() is bound:
            return after
        # listed on its own loop: its sync list(), left early, would keep the saver's lock taken
        try:
            return asyncio.run_coroutine_threadsafe(_aafter(at), bound).result()
        except Exception:  # noqa: BLE001 - the task ends all the same, as stopped where it paused
            log.debug("reading the paused thread %s", at[1], exc_info=True)
            return after
    try:
        page: dict[str, Any] | None = {"limit": _PAGE}
        while page is not None:
            page = _paged(after, list(saver.list(at[1], **page)), at[2], page)
    except Exception:  # noqa: BLE001 - the task ends all the same, as stopped where it paused
        log.debug("reading the paused thread %s", at[1], exc_info=True)
    return after


async def _aafter(at: PausePoint | None) -> list[Any]:
    """:func:`_after` from a running event loop: through the saver's async interface when it is
    bound to this loop or to none (a sync-only saver: its sync one), awaited on its own loop when
    it is bound to another."""
    after: list[Any] = []
    if at is None or (saver := at[0]()) is None:
        return after
    bound = getattr(saver, "loop", None)
    if isinstance(bound, asyncio.AbstractEventLoop) and bound is not _this_loop():
        if bound.is_closed() or not bound.is_running():
            return after
        # read on its own loop, awaited: blocking this one (sync nodes' shared loop) while the saver's
        # loop waits on it (a sync agentroute call on that loop's thread) would stop both for good
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_aafter(at), bound))
    try:
        page: dict[str, Any] | None = {"limit": _PAGE}
        while page is not None:
            page = _paged(after, [checkpoint async for checkpoint in saver.alist(at[1], **page)], at[2], page)
    except NotImplementedError:  # SqliteSaver, PostgresSaver: sync only
        return _after(at)
    except Exception:  # noqa: BLE001 - the task ends all the same, as stopped where it paused
        log.debug("reading the paused thread %s", at[1], exc_info=True)
    return after


def _this_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


# -- streaming ---------------------------------------------------------------------------------
def _observed(config: Mapping[str, Any]) -> bool:
    """Whether callback handlers watch the run: LangGraph's ``messages`` stream, ``astream_events``,
    a tracer (LangSmith, Langfuse) or the caller's own; a plain ``invoke`` attaches none."""
    callbacks = config.get("callbacks")
    return bool(getattr(callbacks, "handlers", callbacks))


# -- one worker at a time runs a thread (claims in a shared PostgreSQL memory) --------------------
CLAIM_KEY = (
    "__agentroute_claim"  # the config key :func:`claiming` sets for the nodes: the invocation's ClaimHold
)


def durable_saver(saver: Any) -> bool:
    """Whether ``saver`` keeps checkpoints beyond this process (any saver but an ``InMemorySaver``,
    subclasses included)."""
    if saver is None or isinstance(saver, bool):
        return False
    return not any(c.__name__ == "InMemorySaver" for c in type(saver).__mro__)


async def aflush_memory(memory: MemoryStore) -> None:
    """Commit ``memory``'s writes from a coroutine: its ``aflush`` where it has one (``SQLMemory``),
    else its ``flush`` off the event loop (any other :class:`MemoryStore`)."""
    aflush = getattr(memory, "aflush", None)
    if aflush is not None:
        await aflush()
    else:
        await asyncio.to_thread(memory.flush)


def flush_memory(memory: MemoryStore, *, quiet: bool) -> None:
    """Commit the memory; ``quiet`` (an exception is on its way already): log a failure instead."""
    try:
        memory.flush()
    except MemoryStoreError as exc:
        if not quiet:
            raise
        log.error("memory: %s", exc)


def _thread_claim(thread: Any) -> str:
    return f"thread:{thread}"


class ClaimHold:
    """One invocation's claim (on a thread, or an ``AgentGraph``'s task). The claim goes back when the
    invocation has ended *and* no routed call of it is still running (a sync node LangGraph started
    in a thread runs on after an async stream is closed); a routed call that starts after the end
    refuses to run.

    ``opened``: the tasks its routed nodes opened or continued (a user graph's), each with its
    dispatcher; ``error``: what ended the invocation, if it raised — those tasks then end
    ``failed`` (``interrupted`` when stopped from outside) when the claim goes back.
    """

    __slots__ = ("calls", "ended", "error", "failed", "key", "memory", "opened")

    def __init__(self, memory: Any, key: str):
        self.memory, self.key = memory, key
        self.calls, self.ended, self.failed = 0, False, False
        self.error: BaseException | None = None
        self.opened: dict[str, tuple[Any, TaskRun]] = {}


_HELD: dict[tuple[int, str], ClaimHold] = {}  # (id(memory), claim key) → this process's invocation holding it
_HELD_LOCK = threading.Lock()


def take_claim(memory: Any, key: str) -> ClaimHold | None:
    """Claim ``key`` for one invocation: ``None`` when another invocation holds it, in this process
    (the memory counts its claims per process) or in another one."""
    hold = ClaimHold(memory, key)
    with _HELD_LOCK:
        if (id(memory), key) in _HELD:
            return None
        _HELD[(id(memory), key)] = hold
    taken = False
    try:
        taken = memory.claim_task(key)
    finally:
        if not taken:
            with _HELD_LOCK:
                del _HELD[(id(memory), key)]
    return hold if taken else None


def end_claim(hold: ClaimHold, *, failed: bool, error: BaseException | None = None) -> None:
    """The invocation ended (by ``error`` if it raised): its claim goes back now, or when its last
    running routed call returns."""
    with _HELD_LOCK:
        hold.ended, hold.failed = True, hold.failed or failed
        hold.error = hold.error or error
        last = hold.calls == 0
    if last:
        give_back(hold)


def give_back(hold: ClaimHold) -> None:
    """Close the tasks of an invocation that raised, commit the memory, then give the claim back."""
    try:
        if hold.error is not None:
            close_opened(hold.opened, hold.error)
        flush_memory(hold.memory, quiet=hold.failed)  # the next worker reads every paid step
    finally:
        try:
            hold.memory.release_task(hold.key)
        finally:
            with _HELD_LOCK:
                _HELD.pop((id(hold.memory), hold.key), None)


def close_opened(opened: Mapping[str, tuple[Any, TaskRun]], error: BaseException) -> None:
    """An invocation raised after its routed nodes had brought their tasks' records up to date
    (``done``): those tasks are recorded ``failed`` — ``interrupted`` when it was stopped from outside
    (a cancel, Ctrl-C, a stream left early). A resume that runs a routed node updates them again; the
    router is told they ended when that resume ends them (:func:`end_with_invocation`)."""
    stopped = isinstance(error, asyncio.CancelledError | KeyboardInterrupt | GeneratorExit)
    for dispatcher, run in opened.values():
        if run.task.status != "failed":
            dispatcher.finish(run, status="interrupted" if stopped else "failed", observe=False)


def enter_claim(config: Mapping[str, Any] | None) -> ClaimHold | None:
    """A routed call of a claimed invocation starts: counted, so that the claim outlives it; refused
    (:class:`TaskBusyError`, before anything is paid) once the invocation has ended, or once the
    claim's database session ended (``memory.claim_unbroken``: another worker may have taken it)."""
    hold = ((config or {}).get("configurable") or {}).get(CLAIM_KEY)
    if not isinstance(hold, ClaimHold):
        return None
    with _HELD_LOCK:
        ended = hold.ended
        if not ended and hold.memory.claim_unbroken(hold.key):  # no I/O: the lease's own check's finding
            hold.calls += 1
            return hold
    why = (
        "its invocation has ended"
        if ended
        else "its claim was lost with its database session: another worker may run it now"
    )
    raise TaskBusyError(f"of {hold.key.replace(':', ' ', 1)} ({why})", getattr(hold.memory, "url", ""))


def leave_claim(hold: ClaimHold) -> bool:
    """A routed call of a claimed invocation returned: whether it was the last one after the
    invocation's end, which must give the claim back (:func:`give_back`)."""
    with _HELD_LOCK:
        hold.calls -= 1
        return hold.ended and hold.calls == 0


def unclaimed_thread(memory: Any, config: Mapping[str, Any] | None) -> str | None:
    """The thread of a node run that needs a worker's claim and runs without one, else ``None``:
    a durable checkpointer and a memory that claims tasks (PostgreSQL), outside :func:`claiming`."""
    if not getattr(memory, "claims_tasks", False):
        return None
    configurable = (config or {}).get("configurable") or {}
    thread = configurable.get("thread_id")
    if thread is None or not durable_saver(configurable.get(_CHECKPOINTER)):
        return None
    hold = configurable.get(CLAIM_KEY)
    return None if isinstance(hold, ClaimHold) and hold.key == _thread_claim(thread) else str(thread)


async def take_claim_async(memory: Any, key: str) -> ClaimHold | None:
    """:func:`take_claim` off the event loop; a claim the caller was cancelled while taking is given back."""
    taking: concurrent.futures.Future[ClaimHold | None] = concurrent.futures.Future()

    def take() -> None:
        try:
            taking.set_result(take_claim(memory, key))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            taking.set_exception(exc)

    threading.Thread(target=take, name="agentroute-claim", daemon=True).start()
    try:
        return await asyncio.shield(asyncio.wrap_future(taking))
    except asyncio.CancelledError:

        def untake(done: concurrent.futures.Future[ClaimHold | None]) -> None:
            if done.exception() is None and (hold := done.result()) is not None:
                end_claim(hold, failed=True)

        taking.add_done_callback(untake)
        raise


async def give_back_async(end: Callable[[], None]) -> None:
    """Run ``end`` (a claim given back) off the event loop, in a thread of its own that runs to its
    end even if the caller is cancelled again: a job queued in the default executor would be dropped
    by that cancel before it starts (a busy executor), keeping the claim until the process exits."""
    done: concurrent.futures.Future[None] = concurrent.futures.Future()

    def run() -> None:
        try:
            end()
            done.set_result(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            done.set_exception(exc)

    threading.Thread(
        target=run, name="agentroute-claim-end"
    ).start()  # not a daemon: paid steps are committed
    await asyncio.shield(asyncio.wrap_future(done))


@contextlib.contextmanager
def holding(memory: Any, key: str, busy: str) -> Iterator[ClaimHold]:
    """The one rule of a claimed invocation: claim ``key`` (else :class:`TaskBusyError` naming
    ``busy``, before anything runs), and give the claim back however the block ends — done, raised,
    cancelled, a stream closed early by its consumer. Paid steps are committed first (:func:`end_claim`)."""
    if (hold := take_claim(memory, key)) is None:  # another worker, or another invocation of this process
        raise TaskBusyError(busy, memory.url)
    failed, error = True, None
    try:
        yield hold
        failed = False
    except BaseException as exc:
        error = exc
        raise
    finally:
        end_claim(hold, failed=failed, error=error)


@contextlib.asynccontextmanager
async def aholding(memory: Any, key: str, busy: str) -> AsyncIterator[ClaimHold]:
    """:func:`holding` off the event loop: the claim is taken and given back in a thread."""
    if (hold := await take_claim_async(memory, key)) is None:
        raise TaskBusyError(busy, memory.url)
    failed, error = True, None
    try:
        yield hold
        failed = False
    except BaseException as exc:
        error = exc
        raise
    finally:
        await give_back_async(functools.partial(end_claim, hold, failed=failed, error=error))


def claimed_stream(
    memory: Any, key: str, busy: str, open_stream: Callable[[ClaimHold], Iterator[Any]]
) -> Iterator[Any]:
    """Stream what ``open_stream(hold)`` yields while :func:`holding` the claim; a consumer that
    leaves early closes the inner stream too (``yield from``: LangGraph waits for its running nodes)."""
    with holding(memory, key, busy) as hold:
        yield from open_stream(hold)


async def aclaimed_stream(
    memory: Any,
    key: str,
    busy: str,
    open_stream: Callable[[ClaimHold], Awaitable[AsyncIterator[Any]]],
) -> AsyncGenerator[Any, None]:
    """:func:`claimed_stream` for ``astream``: left early or cancelled, the inner stream is closed
    (LangGraph stops the nodes it runs) before the claim goes back."""
    async with aholding(memory, key, busy) as hold:
        chunks = await open_stream(hold)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            if (aclose := getattr(chunks, "aclose", None)) is not None:
                await aclose()


class ClaimingGraph(_Compiled):
    """A compiled LangGraph graph whose every invocation on a thread holds that thread's claim in a
    shared PostgreSQL memory (see :func:`claiming`). LangGraph's ``invoke``/``batch`` go through
    ``stream``, ``ainvoke``/``abatch`` through ``astream`` and ``update_state`` through
    ``bulk_update_state`` (async alike), so those take it."""

    claims_memory: Any

    def __init__(self, *, claims_memory: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.claims_memory = claims_memory

    def _claimed_thread(self, config: Mapping[str, Any] | None) -> str | None:
        if not getattr(self.claims_memory, "claims_tasks", False) or not durable_saver(self.checkpointer):
            return None
        configurable = (config or {}).get("configurable") or {}
        thread = configurable.get("thread_id")
        if thread is None:
            thread = (self.config or {}).get("configurable", {}).get("thread_id")
        if thread is None:
            return None
        hold = configurable.get(CLAIM_KEY)
        if (
            isinstance(hold, ClaimHold)
            and hold.key == _thread_claim(thread)
            and hold.memory is self.claims_memory
        ):
            return None  # invoked from inside the invocation that holds the claim (a subgraph)
        return str(thread)

    @staticmethod
    def _tagged(config: Mapping[str, Any] | None, hold: ClaimHold) -> Any:
        configurable = {**((config or {}).get("configurable") or {}), CLAIM_KEY: hold}
        return {**(config or {}), "configurable": configurable}

    @staticmethod
    def _thread_task(snapshot: Any) -> str | None:
        channel = (
            snapshot.values.get(CHANNEL)
            if snapshot is not None and isinstance(snapshot.values, Mapping)
            else None
        )
        return channel.get("task_id") if isinstance(channel, Mapping) else None

    def stream(self, input: Any, config: Any = None, **kwargs: Any) -> Iterator[Any]:
        thread = self._claimed_thread(config)
        if thread is None:
            return super().stream(input, config, **kwargs)
        stream = super().stream

        def open_stream(hold: ClaimHold) -> Iterator[Any]:
            if (task_id := self._thread_task(self.get_state(config))) is not None:
                LIVE.drop(task_id)  # an idle run kept here may be stale: another worker may have gone on
            return stream(input, self._tagged(config, hold), **kwargs)

        return claimed_stream(self.claims_memory, _thread_claim(thread), f"of thread {thread!r}", open_stream)

    def astream(self, input: Any, config: Any = None, **kwargs: Any) -> AsyncIterator[Any]:
        thread = self._claimed_thread(config)
        if thread is None:
            return super().astream(input, config, **kwargs)
        astream = super().astream

        async def open_stream(hold: ClaimHold) -> AsyncIterator[Any]:
            try:
                snapshot = await self.aget_state(config)
            except NotImplementedError:  # a sync-only saver
                snapshot = await asyncio.to_thread(self.get_state, config)
            if (task_id := self._thread_task(snapshot)) is not None:
                LIVE.drop(task_id)
            return astream(input, self._tagged(config, hold), **kwargs)

        return aclaimed_stream(
            self.claims_memory, _thread_claim(thread), f"of thread {thread!r}", open_stream
        )

    def bulk_update_state(self, config: RunnableConfig, supersteps: Any) -> RunnableConfig:
        """LangGraph's ``bulk_update_state`` (``update_state`` goes through it) holding the thread's
        claim: a human's edit between two runs is refused (:class:`TaskBusyError`) while a worker
        runs the thread, never written under a running invocation."""
        thread = self._claimed_thread(config)
        if thread is None:
            return super().bulk_update_state(config, supersteps)
        with holding(self.claims_memory, _thread_claim(thread), f"of thread {thread!r}"):
            return super().bulk_update_state(config, supersteps)

    async def abulk_update_state(self, config: RunnableConfig, supersteps: Any) -> RunnableConfig:
        """:meth:`bulk_update_state` for ``aupdate_state``/``abulk_update_state``."""
        thread = self._claimed_thread(config)
        if thread is None:
            return await super().abulk_update_state(config, supersteps)
        async with aholding(self.claims_memory, _thread_claim(thread), f"of thread {thread!r}"):
            return await super().abulk_update_state(config, supersteps)


@functools.cache
def _claiming_class(base: type) -> type:
    return type(f"Claiming{base.__name__}", (ClaimingGraph, base), {"__module__": __name__})


def claiming(app: G, memory: MemoryStore | None) -> G:
    """Your compiled ``StateGraph`` whose invocations each claim their thread in ``memory``.

    For worker processes sharing one PostgreSQL memory and one durable checkpointer: an invocation
    on a thread (``invoke``, ``stream``, ``batch`` and their async forms, a resume) or an edit of its
    state (``update_state``, ``bulk_update_state``, async alike) first claims the thread; a second worker's invocation of the same thread meanwhile raises
    :class:`~agentroute.memory.TaskBusyError` before anything runs, so a step is paid once. Paid
    steps are committed to the memory before the claim is given back. An invocation that raises
    (a node's error, ``GraphRecursionError``) after its routed nodes ends their tasks ``failed``
    (``interrupted`` when cancelled or its stream is left early; :func:`close_opened`). With another memory or
    saver (SQLite, ``InMemorySaver``), it is the graph as it was: nothing is claimed.

    ``routed_node`` s under a durable checkpointer and a memory that claims tasks refuse to run
    outside it (``ConfigurationError``): without the claim, two workers resuming one thread both
    run it — plain nodes before the routed one included, since each loaded the same checkpoint.
    """
    if isinstance(app, ClaimingGraph):
        base: type = type(app).__mro__[2]
    elif hasattr(app, "astream") and hasattr(app, "checkpointer") and hasattr(app, "copy"):
        base = type(app)
    else:
        raise ConfigurationError(
            f"claiming() takes a compiled LangGraph graph (builder.compile(...)), got {type(app).__name__}"
        )
    attrs = {k: v for k, v in vars(app).items() if k not in ("__orig_class__", "claims_memory")}
    return _claiming_class(base)(claims_memory=memory, **attrs)  # type: ignore[no-any-return]


def _noop(chunk: Any) -> None:
    pass


_NOOP_CODE = _noop.__code__.co_code


_last_writer: tuple[Any, bool] = (None, False)  # the last writer asked about, and the answer


def _writes(writer: Any) -> bool:
    """Whether ``writer`` does anything (LangGraph passes a do-nothing one unless ``custom`` is streamed)."""
    global _last_writer
    last = _last_writer
    if writer is last[0]:
        return last[1]
    code = getattr(writer, "__code__", None)
    writes = writer is not None and (code is None or code.co_code != _NOOP_CODE or bool(code.co_names))
    _last_writer = (writer, writes)
    return writes


_WATCHED: OrderedDict[tuple[str, int], str] = (
    OrderedDict()
)  # (task id, step index) → the message id its answer streamed under
_WATCHED_LOCK = threading.Lock()


def _watched_id(task_id: str, index: int) -> str | None:
    return _WATCHED.get((task_id, index))


def _watch(task_id: str, index: int, message: str) -> None:
    with _WATCHED_LOCK:
        _WATCHED[(task_id, index)] = message
        _WATCHED.move_to_end((task_id, index))
        if len(_WATCHED) > 4096:
            _WATCHED.popitem(last=False)


def watch_step(run: TaskRun, role: str) -> _StepWatch | None:
    """The step's watcher when callback handlers listen to the LangGraph node (or LangChain
    runnable) running it — ``stream_mode="messages"``, ``astream_events``, a tracer — else ``None``
    (a plain ``invoke``, or no LangChain at all). The dispatcher asks once per step."""
    module = sys.modules.get("langchain_core.runnables.config")
    if module is None:
        return None
    config = module.var_child_runnable_config.get()
    if not config or not _observed(config):
        return None
    return _StepWatch(config, run.task.id, role)


class _StepWatch:
    """Reports each provider attempt of one routed step to the callback handlers as a chat model's
    run: ``on_chat_model_start``, ``on_llm_new_token`` for each piece of text the backend streams,
    then ``on_llm_end`` (the whole message) or ``on_llm_error``.

    Message ids: ``agentroute-{task}-{index}`` (:func:`message_id`, the id of the answer written to
    the state, so LangGraph does not emit it twice); a retry of an attempt that had already streamed
    text streams under ``…-{index}-{attempt}``, a new message, and becomes the step's message id."""

    __slots__ = ("config", "ids", "role", "task_id")

    def __init__(self, config: Mapping[str, Any], task_id: str, role: str):
        self.config, self.task_id, self.role = config, task_id, role
        self.ids: dict[int, _AttemptWatch] = {}  # step index → its last attempt

    async def attempt(self, plan: Any, stage: str, index: int, attempt: int) -> _AttemptWatch:
        from langchain_core.callbacks.manager import AsyncCallbackManager
        from langchain_core.messages import convert_to_messages

        config, model = self.config, plan.card.id
        last = self.ids.get(index)
        message = f"agentroute-{self.task_id}-{index}"
        if last is not None:
            message = f"{message}-{attempt}" if last.streamed else last.message
        manager = AsyncCallbackManager.configure(
            inheritable_callbacks=config.get("callbacks"),
            inheritable_tags=config.get("tags"),
            inheritable_metadata={
                **(config.get("metadata") or {}),
                "ls_model_name": model,
                "agentroute_role": self.role,
            },
        )
        try:
            runs = await manager.on_chat_model_start(
                {"name": model},
                [convert_to_messages(plan.request.messages)],
                name=model,
                invocation_params={
                    "model": model,
                    "max_tokens": plan.request.max_tokens,
                    "temperature": plan.request.temperature,
                },
            )
        except Exception:  # noqa: BLE001 - a handler that raises (raise_error=True) must not fail the call unmade
            runs = []
        watch = self.ids[index] = _AttemptWatch(runs, message, self.role, model, plan.agent.key, stage, index)
        _watch(self.task_id, index, message)
        return watch


class _AttemptWatch:
    """One attempt's chat model runs (one per callback manager), fed by the backend's stream."""

    __slots__ = ("agent", "closed", "index", "message", "model", "role", "runs", "stage", "streamed")

    def __init__(
        self, runs: list[Any], message: str, role: str, model: str, agent: str, stage: str, index: int
    ):
        self.runs, self.message, self.role, self.model = runs, message, role, model
        self.agent, self.stage, self.index = agent, stage, index
        self.streamed = self.closed = False

    async def _chunk(self, text: str, **fields: Any) -> None:
        from langchain_core.messages import AIMessageChunk
        from langchain_core.outputs import ChatGenerationChunk

        chunk = ChatGenerationChunk(
            message=AIMessageChunk(content=text, id=self.message, name=self.role, **fields)
        )
        for llm_run in self.runs:
            await llm_run.on_llm_new_token(text, chunk=chunk)

    async def token(self, text: str) -> None:
        if self.closed or not text:
            return
        self.streamed = True
        await self._chunk(text)

    async def end(self, completion: Any) -> None:
        """The attempt answered: the last chunk carries usage and metadata, then the whole message."""
        from langchain_core.messages import AIMessage
        from langchain_core.outputs import ChatGeneration, LLMResult

        if self.closed:
            return
        tokens_in, tokens_out = completion.tokens_in or 0, completion.tokens_out or 0
        usage = {
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        }
        metadata = {
            "model_name": self.model,
            "agent": self.agent,
            "stage": self.stage,
            "step_index": self.index,
            "cost_usd": completion.cost_usd,
            "finish_reason": completion.raw.get("finish_reason") or "stop",
        }
        if self.streamed:
            await self._chunk("", usage_metadata=usage, response_metadata=metadata, chunk_position="last")
        self.closed = True
        reasoning = completion.raw.get("reasoning")  # a reasoning model's thoughts, where LangChain's
        extra = {"reasoning_content": reasoning} if reasoning else {}  # DeepSeek/OpenAI chat models put them
        message = AIMessage(
            content=completion.text,
            id=self.message,
            name=self.role,
            response_metadata=metadata,
            usage_metadata=usage,
            additional_kwargs=extra,
        )
        for llm_run in self.runs:
            await llm_run.on_llm_end(LLMResult(generations=[[ChatGeneration(message=message)]]))

    async def error(self, reason: str) -> None:
        """The attempt failed: a message it had begun ends with a chunk that says so
        (``finish_reason: "error"``); a retry or another model then answers in a new message."""
        if self.closed:
            return
        if self.streamed:
            await self._chunk(
                "",
                response_metadata={
                    "model_name": self.model,
                    "agent": self.agent,
                    "finish_reason": "error",
                    "agentroute_error": reason,
                },
                chunk_position="last",
            )
        self.closed = True
        for llm_run in self.runs:
            await llm_run.on_llm_error(BackendError(self.model, reason, retryable=False))


def report_step(step: Step | None, role: str, config: Mapping[str, Any] | None, writer: Any) -> None:
    """Report a finished step to LangGraph's ``custom`` stream mode and to callback handlers
    (``messages`` stream mode, ``astream_events``, tracers) as a chat model's run — unless its
    attempts were reported as they ran (:func:`watch_step`: one-sample strategies)."""
    if step is None:
        return
    if _writes(writer):
        writer(
            {
                "agentroute": {
                    "task_id": step.task_id,
                    "index": step.index,
                    "stage": step.stage,
                    "role": role,
                    "agent": step.agent.key,
                    "model": step.agent.model,
                    "status": step.status,
                    "cost_usd": step.cost_usd,
                }
            }
        )
    if not config or not _observed(config) or _watched_id(step.task_id, step.index) is not None:
        return
    from langchain_core.callbacks.manager import CallbackManager
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_core.outputs import ChatGeneration, LLMResult

    manager = CallbackManager.configure(
        inheritable_callbacks=config.get("callbacks"),
        inheritable_tags=config.get("tags"),
        inheritable_metadata={
            **(config.get("metadata") or {}),
            "ls_model_name": step.agent.model,
            "agentroute_role": role,
        },
    )
    message = AIMessage(
        content=step.output,
        id=f"agentroute-{step.task_id}-{step.index}",
        name=role,
        response_metadata={
            "model_name": step.agent.model,
            "agent": step.agent.key,
            "stage": step.stage,
            "step_index": step.index,
            "cost_usd": step.cost_usd,
        },
        usage_metadata={
            "input_tokens": step.tokens_in,
            "output_tokens": step.tokens_out,
            "total_tokens": step.tokens_in + step.tokens_out,
        },
    )
    for llm_run in manager.on_chat_model_start(
        {"name": step.agent.model}, [[HumanMessage(content=step.input)]], name=step.agent.model
    ):
        if step.status == "ok":
            llm_run.on_llm_end(LLMResult(generations=[[ChatGeneration(message=message)]]))
        else:
            llm_run.on_llm_error(BackendError(step.agent.model, step.error or step.status, retryable=False))


# -- a routed node in your own graph -----------------------------------------------------------
def routed_node(
    dispatcher: Dispatcher,
    *,
    role: str,
    prompt: str,
    input_key: str = "query",
    output_key: str = "answer",
    input: Callable[[Mapping[str, Any]], str] | None = None,
    output: Callable[[str], Mapping[str, Any]] | None = None,
    stage: str | None = None,
    budget: Budget | None = None,
    models: Iterable[str] | None = None,
    max_tokens: int | None = None,
    postconditions: Iterable[Postcondition] = (),
    require_claim: bool = True,
) -> Any:
    """A routed step as a node of YOUR LangGraph graph (sync and async).

    The node reads ``state[input_key]`` (and ``state["query_id"]`` for replay, if present), runs one
    routed step (legality, budget, routing, memory) and returns ``{output_key: text}`` plus the task
    channel. Chat messages work as LangGraph's chat-model nodes do: when ``state[input_key]`` is a
    list of messages (``MessagesState``), the step reads the last one's text, and when
    ``state[output_key]`` holds messages, the answer is appended as an ``AIMessage`` named after the
    role. ``input`` (the step's text from the state) and ``output`` (the state update from the
    answer's text, e.g. ``lambda text: {"jokes": [text]}`` for a list reducer after ``Send``)
    replace the two keys' defaults; ``input_key`` still decides when a checkpointed thread starts a
    new task (below). Give your state the channel with :class:`AgentrouteState` (or its two keys): then every
    routed node of one invocation — subgraphs included — shares one task and one ledger, and a
    checkpointed thread resumes the same task. The task's record (status, answer, cost) is brought
    up to date after each routed node. ``agentroute_task_id`` and ``agentroute_cost_usd`` are also
    returned; :class:`AgentrouteState` declares both so that routed nodes may run in parallel.

    A task ends with its invocation: a new input on a checkpointed thread starts a new task when the
    value under ``input_key`` changed (pass ``agentroute=new_task(...)`` in the input to force one);
    a resume (``invoke(None, config)``, ``Command(resume=…)``) continues it. The router's
    ``observe(last_step, task)`` hears once that the task ended, with all its steps, when the
    outermost invocation whose state has the task channel ends (:func:`end_with_invocation`) — on a checkpointed thread, not at an
    ``interrupt()`` nor at an exception; a task whose resume ran no routed node ends at the thread's
    next new input (or, past 4096 paused tasks in the process, when it is the oldest), recorded
    ``interrupted`` if its graph never went on past the pause to its end. A router is
    told a task ended once: the same value again continues the task's record and budget, and brings
    the router no second end.

    Under a durable checkpointer with a memory shared by workers (PostgreSQL), run the graph
    through :func:`claiming`; the node refuses to run without the thread's claim, unless
    ``require_claim=False`` (your runtime already runs one invocation per thread at a time, such as
    LangGraph Server's run queue).
    """
    check_role(role)
    stage = stage or role
    model_list = tuple(models) if models is not None else None
    post = tuple(postconditions)

    def read(state: Mapping[str, Any]) -> str:
        if input is not None:
            return str(input(state))
        if input_key not in state:
            raise ConfigurationError(
                f"routed node {role!r}: the state has no {input_key!r} (it has {sorted(state)}); "
                "pass input_key= or input="
            )
        return message_text(state[input_key])

    def update(state: Mapping[str, Any], step: Step | None, run: TaskRun) -> dict[str, Any]:
        """The answer's update; a step without an answer writes the task's best partial answer to
        a plain key, and nothing to ``output`` or to messages (no duplicate or empty entries)."""
        messages = output is None and holds_messages(state.get(output_key))
        if step is None or step.status != "ok":
            return {} if output is not None or messages else {output_key: run.best_answer or ""}
        if output is not None:
            return dict(output(step.output))
        if messages:
            from langchain_core.messages import AIMessage

            return {
                output_key: [AIMessage(content=step.output, name=role, id=message_id(step))]
            }  # streamed once
        return {output_key: step.output}

    async def acquire(state: Mapping[str, Any], config: Mapping[str, Any] | None, query: str) -> TaskRun:
        channel, live = state.get(CHANNEL), state.get(LIVE_KEY)
        sent = channel is None and CHANNEL not in state  # a Send's payload: the task is in the graph's state
        if sent:
            channel, live = graph_task(config)
        channel = channel or {}
        task_id = channel.get("task_id")

        def hold(task_id: str, make: Callable[[], TaskRun]) -> TaskRun:
            if (paused := restart_paused(task_id, config)) is not None:  # a resume: the pause does not count
                make = functools.partial(rebuilt_after, paused, make)
            return LIVE.hold(task_id, make)

        def opened(request: Mapping[str, Any]) -> Callable[[], TaskRun]:
            carry = {"opened_by": "node", "fp_key": input_key, "fp": fingerprint(state.get(input_key))}
            request = {
                "query_id": state.get("query_id"),
                **{k: v for k, v in request.items() if v is not None},
            }

            def make() -> TaskRun:
                if resuming(config) and (run := reopen(dispatcher, request["task_id"], carry)) is not None:
                    return run  # this superstep opened it before its interrupt() or a crash: continue it
                return open_task(
                    dispatcher, request, query=query, graph="langgraph", budget=budget, carry=carry
                )

            return make

        if task_id and is_request(channel):
            await end_abandoned(config, task_id)  # new_task(...) in the input: the thread's paused task ends
            return hold(task_id, opened(channel))
        if task_id:
            carry = channel.get("carry") or {}
            same = (
                live == task_id
                or resuming(config)
                or not sent
                and (
                    carry.get("opened_by") != "node"  # an AgentGraph's task, passed down to this node
                    or carry.get("fp") == fingerprint(state.get(carry.get("fp_key", input_key)))
                )
            )
            if same:
                return hold(task_id, lambda: rebuild(dispatcher, channel))
            await end_paused(task_id, config)  # the thread's new input: a task it left paused ends here
        elif sent and (legacy := state.get("agentroute_task_id")):  # a state without the channel
            return hold(legacy, opened({"task_id": legacy}))
        task_id = invocation_task(config)
        await end_abandoned(config, task_id)  # and one paused where no state names it now (a subgraph's)
        return hold(task_id, opened({"task_id": task_id}))

    async def anode(state: Mapping[str, Any], config: RunnableConfig, writer: StreamWriter) -> dict[str, Any]:
        if require_claim and (thread := unclaimed_thread(dispatcher.memory, config)) is not None:
            raise ConfigurationError(
                f"routed node {role!r}: thread {thread!r} is checkpointed durably and the memory is shared by "
                "workers (PostgreSQL), but this invocation holds no claim on the thread: two workers resuming it "
                "would both pay for its steps. Invoke the graph through agentroute.graph.claiming(app, memory), or pass "
                "routed_node(..., require_claim=False) if your runtime runs one invocation per thread at a time"
            )
        hold = enter_claim(config)
        try:
            return await routed(state, config, writer, hold)
        finally:
            if hold is not None and leave_claim(hold):
                await give_back_async(functools.partial(give_back, hold))

    async def routed(
        state: Mapping[str, Any], config: RunnableConfig, writer: StreamWriter, hold: ClaimHold | None
    ) -> dict[str, Any]:
        text = read(state)
        run = await acquire(state, config, text)
        try:
            step = None
            position = call_position(config) if checkpointed(config) else None
            if position is not None and position[1]:  # made before an answered interrupt(): paid already
                channel = state.get(CHANNEL) if CHANNEL in state else graph_task(config)[0]
                since = 0 if not channel or is_request(channel) else int(channel.get("index", 0))
                step = taken_back(run, position[0], since, stage, text)
            if step is None:
                step = await dispatcher.step(
                    run,
                    role=role,
                    stage=stage,
                    prompt=prompt,
                    input=text,
                    models=model_list,
                    max_tokens=max_tokens,
                    postconditions=post,
                )
                report_step(step, role, config, writer)
                if position is not None:
                    remember_call(run, position[0], step)
            if run.carry.get("opened_by") == "node":  # the record is kept up to date after every routed node,
                ends = end_with_invocation(dispatcher, run, config)  # the router told of the end once
                # ``running`` until the invocation's end says ``done``: a task paused at an interrupt (or a
                # crash mid-graph) is no finished task in the memory a router learns from
                going = ends and dispatcher.closing_status(run) == "done"
                dispatcher.finish(run, observe=not ends, status="running" if going else None)
                if hold is not None:  # and closed by the claimed invocation's end if it raises (close_opened)
                    hold.opened[run.task.id] = (dispatcher, run)
            memory = dispatcher.memory
            if (
                memory is not None
                and step is not None
                and durable_saver(((config or {}).get("configurable") or {}).get(_CHECKPOINTER))
            ):
                # the checkpoint written after this node counts the step: a crash after it must find the step stored
                await aflush_memory(memory)
            return {
                **update(state, step, run),
                CHANNEL: run.checkpoint(),
                LIVE_KEY: run.task.id,
                "agentroute_task_id": run.task.id,
                "agentroute_cost_usd": run.ledger.spent_usd,
            }
        finally:
            LIVE.release(run.task.id)

    def node(state: Mapping[str, Any], config: RunnableConfig, writer: StreamWriter) -> dict[str, Any]:
        return run_sync(anode(state, config, writer))

    name = f"routed_{role}"
    node.__name__ = anode.__name__ = name
    return runnable(name, node, anode)


def message_id(step: Step) -> str:
    """The id of a step's chat message: the ``messages`` stream and the state's messages share it."""
    return _watched_id(step.task_id, step.index) or f"agentroute-{step.task_id}-{step.index}"


def _is_message(value: Any) -> bool:
    from langchain_core.messages import BaseMessage

    return isinstance(value, BaseMessage)


def holds_messages(value: Any) -> bool:
    """Whether a state value is a list of LangChain messages (``MessagesState``'s ``messages``)."""
    return isinstance(value, list) and bool(value) and _is_message(value[-1])


def message_text(value: Any) -> str:
    """The text a routed step reads from a state value: a string as it is; from a list of chat
    messages (LangChain messages, ``{"role", "content"}`` dicts or ``(role, content)`` pairs), the
    last one's text (its text parts, when its content is a list of parts)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value:
        last = value[-1]
        if _is_message(last):
            content = last.content
        elif isinstance(last, Mapping) and "content" in last:
            content = last["content"]
        elif isinstance(last, tuple) and len(last) == 2 and isinstance(last[0], str):
            content = last[1]
        else:
            return str(value)
        if isinstance(content, list):  # OpenAI-style parts: [{"type": "text", "text": ...}, ...]
            return "".join(
                p if isinstance(p, str) else str(p.get("text", ""))
                for p in content
                if isinstance(p, (str, Mapping))
            )
        return str(content)
    return str(value)


@functools.cache
def agentroute_state() -> type:
    """The ``TypedDict`` with the keys a state needs for :func:`routed_node` tasks.

    Use it as a base of your state: ``class State(AgentrouteState): query: str; answer: str``. Besides
    the task channel it declares ``agentroute_task_id`` and ``agentroute_cost_usd``, which take the
    writes of routed nodes running in parallel (the cost that counts every step stands).
    """
    from typing import Annotated

    from langgraph.channels.untracked_value import UntrackedValue
    from typing_extensions import TypedDict  # LangGraph's own states (MessagesState) use it: the two combine

    greatest = _greatest_of_step()
    return TypedDict(  # type: ignore[operator]
        "AgentrouteState",
        {
            CHANNEL: Annotated[dict[str, Any], merge_checkpoints],  # checkpointed with the thread
            LIVE_KEY: Annotated[str, UntrackedValue(str, guard=False)],  # this invocation only
            "agentroute_task_id": Annotated[str, greatest(str)],
            "agentroute_cost_usd": Annotated[float, greatest(float)],
        },
        total=False,
    )


@functools.cache
def _greatest_of_step() -> type:
    from langgraph.channels.last_value import LastValue

    class GreatestOfStep(LastValue):  # type: ignore[misc]
        """The greatest value written in the latest superstep that wrote any: parallel routed nodes
        of one task each write its id and its spending so far, which grows with every step."""

        def update(self, values: Sequence[Any]) -> bool:
            if not values:
                return False
            self.value = max(values)
            return True

    return GreatestOfStep


def step_outputs(steps: Sequence[Step | None]) -> list[str]:
    return [s.output if s is not None and s.status == "ok" else "" for s in steps]


add_step_watcher(watch_step)  # the dispatcher asks, once per step, whether LangGraph's handlers listen

"""Routed serving: the model ``"router"`` of the OpenAI-compatible server is one agentroute task.

RouteLLM serves ``model="router-mf-0.116"`` and picks a strong or a weak model per request; here
the request's messages become one routed step that the :class:`~agentroute.dispatch.Dispatcher`
runs with the server's router over the pool's agents, under a hard per-request :class:`Budget`
(the server's default, tightened by the request's ``extra_body={"agentroute": {"budget": {...}}}``).
Retries, fallbacks and the budget rule are the dispatcher's; with a memory, every request is a task
there, so ``agentroute train --from`` learns from the served traffic.

While the memory cannot store a request's write-ahead record (its database is down), the request is
not sent to a model: it gets a retryable 503 (``Retry-After``, ``x-should-retry: true``) at once
when the memory is known to refuse writes (or its SQLite file to be locked by another process: its
write lock was seen held throughout :data:`LOCKED_AFTER_S` while a record waited), else once the record has waited
``memory_wait_s``; a memory the server opens retries its writes until the database returns
(``retry_s=math.inf``), so the rows of the calls it answered are kept through the outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from agentroute.budget import Budget
from agentroute.dispatch.dispatcher import Dispatcher, StepWatch, add_step_watcher, check_tool_calls
from agentroute.dispatch.options import RequestOptions
from agentroute.dispatch.run import TaskRun
from agentroute.errors import ConfigurationError, ProtocolError
from agentroute.memory.base import MemoryStore
from agentroute.memory.engine import STOP_LOCKED_S, held_throughout, is_memory_sqlite, write_locked
from agentroute.memory.errors import MemoryStoreError, first_line
from agentroute.pool.pool import ModelPool
from agentroute.routers.base import Router, check_pool
from agentroute.serve.openai_server import (
    FinishReason,
    choice_logprobs,
    finish_reason,
    message,
    takers_of,
    tool_call_deltas,
)
from agentroute.types import Completion, Step

#: The ``model`` of a routed request; ``router:<name>`` (the router's registered name) works too.
ROUTER_MODEL = "router"
ROLE = "executor"  # the role a pool is checked for (``loading.graph_agents``) and the memory logs
EXTENSION_FIELDS = ("budget", "query_id")
MEMORY_WAIT_S = 5.0
"""How long a routed request waits for the memory to store its write-ahead record before it gets a
retryable 503 (the record normally commits in about a millisecond)."""
RETRY_AFTER_S = 2
"""The ``Retry-After`` of a 503 sent while the memory refuses writes."""
LOCKED_AFTER_S = 1.0
"""How long another process must hold a SQLite file's write lock without a break (a ``sqlite3`` shell
in a transaction, a ``VACUUM``), seen while a write-ahead record waits, before the memory is known
``locked``: requests are then refused at once, not each after ``memory_wait_s`` (the file's busy
timeout is 30 s). A file written in short transactions by another process is busy, not locked."""
LOCK_POLL_S = 0.25
"""How often a request whose write-ahead record waits checks whether a SQLite file's lock is the cause."""
LOCK_RECHECK_S = 0.1
"""While the memory is known ``locked``: how often the lock is tried again (without waiting) to see it go."""


class FileLock:
    """Whether the memory's SQLite file is known locked by another process: watched for
    :data:`LOCKED_AFTER_S` (on a thread) while one of the memory's writes waits, known locked when
    held throughout, then tried again (without waiting) at most every :data:`LOCK_RECHECK_S` until
    it is free."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.since: float | None = None  # time.monotonic() since it is held (known locked), else None
        self._tried = 0.0
        self._watch: threading.Thread | None = None  # the watch of :meth:`watch` in flight
        self._stop = threading.Event()  # set by :meth:`close`: watches end at their next try
        self.why = f"its SQLite file {engine.url.database} is locked by another process (its writes wait for the lock)"

    @classmethod
    def of(cls, memory: MemoryStore | None) -> FileLock | None:
        """The lock of ``memory``'s SQLite file (``None``: not a store on a SQLite file)."""
        engine = getattr(memory, "engine", None)
        url = getattr(engine, "url", None)
        sqlite_file = (
            isinstance(url, URL) and url.get_backend_name() == "sqlite" and not is_memory_sqlite(url)
        )
        return cls(engine) if sqlite_file else None

    def held_over(self, seconds: float) -> bool:
        """Whether another process holds the lock throughout the next ``seconds`` (blocks that
        long at most): then it is known locked since they began."""
        started = time.monotonic()
        if not held_throughout(self.engine, seconds, self._stop):
            return False
        self._tried = time.monotonic()
        if self.since is None:
            self.since = started
        return True

    def watch(self) -> None:
        """Start :meth:`held_over` for :data:`LOCKED_AFTER_S` on a thread unless one runs or the
        lock is known held (returns at once; :meth:`held_for` tells the outcome)."""
        if (
            self.since is None
            and not self._stop.is_set()
            and (self._watch is None or not self._watch.is_alive())
        ):
            self._watch = threading.Thread(
                target=self.held_over, args=(LOCKED_AFTER_S,), name="agentroute-serve-lock-watch", daemon=True
            )
            self._watch.start()

    def close(self) -> None:
        """End the watches (:meth:`watch`, :meth:`held_over` on a thread) at their next try: the server
        stops with no thread left trying its file (was: for the rest of :data:`LOCKED_AFTER_S`)."""
        self._stop.set()
        if self._watch is not None:
            self._watch.join()

    def held_for(self) -> float | None:
        """Seconds the lock is known held (``None``: not known locked, or free again)."""
        if self.since is not None and time.monotonic() - self._tried >= LOCK_RECHECK_S:
            self._tried = time.monotonic()
            if not write_locked(self.engine):
                self.since = None
        return None if self.since is None else time.monotonic() - self.since


class RequestError(ValueError):
    """A routed request the server refuses (400): ``param`` names the field."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


def resolve_router(router: Router | str | Path, pool: ModelPool, *, allow_new_agents: bool = False) -> Router:
    """A :class:`Router` from an instance, a registered name or a directory saved by
    ``agentroute train``, checked against ``pool`` (:func:`~agentroute.routers.base.check_pool`:
    pool agents a trained router never saw are refused unless ``allow_new_agents``) and fitted."""
    from agentroute.loading import graph_agents, load_router

    if isinstance(router, Router):
        for note in check_pool(
            router, graph_agents(pool), allow_new_agents=allow_new_agents, source=router.name
        ):
            print(f"warning: {note}", file=sys.stderr)
    elif isinstance(router, str | Path):
        router = load_router(str(router), pool=pool, allow_new_agents=allow_new_agents)
    else:
        raise ConfigurationError(
            f"router= takes a Router, a registered name or a saved router's directory (got {type(router).__name__})"
        )
    router.check_fitted()
    return router


def open_memory(memory: MemoryStore | str | None) -> tuple[MemoryStore | None, bool]:
    """The memory and whether the server opened it (a URL: then the server closes it)."""
    if memory is None or isinstance(memory, MemoryStore):
        return memory, False
    if isinstance(memory, str):
        from agentroute.memory import SQLMemory

        return SQLMemory(memory, retry_s=math.inf), True  # a server keeps the rows of what it answered
    raise ConfigurationError(f"memory= takes a MemoryStore or a database URL (got {type(memory).__name__})")


def check_budget(budget: Budget | Mapping[str, Any] | None) -> Budget | None:
    if budget is None or isinstance(budget, Budget):
        return budget
    if isinstance(budget, Mapping):
        return Budget(**budget)
    raise ConfigurationError(f"budget= takes a Budget or a mapping of limits (got {type(budget).__name__})")


class Routing:
    """What the server needs to answer the router model: the dispatcher and the default budget."""

    def __init__(
        self,
        pool: ModelPool,
        router: Router | str | Path,
        *,
        memory: MemoryStore | str | None = None,
        budget: Budget | Mapping[str, Any] | None = None,
        allow_new_agents: bool = False,
        memory_wait_s: float = MEMORY_WAIT_S,
    ):
        self.memory_wait_s = self.check_memory_wait_s(memory_wait_s)
        self._probe: asyncio.Future[str | None] | None = None  # the /health probe of the database in flight
        if ROUTER_MODEL in pool.ids:
            raise ConfigurationError(
                f"the pool has a card named {ROUTER_MODEL!r}, the name of the routed model; rename the card"
            )
        self.router = resolve_router(router, pool, allow_new_agents=allow_new_agents)
        self.budget = check_budget(budget)
        self.memory, self.owns_memory = open_memory(memory)
        self.dispatcher = Dispatcher(pool, self.router, memory=self.memory)
        self._lock = FileLock.of(self.memory)
        self.lock_poll_s = math.inf if self._lock is None else LOCK_POLL_S
        #: each pool card's request fields (its backend's ``request_fields``): a request option one
        #: of them cannot honour is refused, since the router may pick that card
        self.takers = {card.id: takers_of(pool.backend(card.id)) for card in pool}
        self.cards = list(pool)
        #: the routed tasks running now (:meth:`track`), ended ``interrupted`` by :meth:`stop_in_flight`
        self.in_flight: set[asyncio.Future[Any]] = set()

    @staticmethod
    def check_memory_wait_s(value: Any, name: str = "memory_wait_s") -> float:
        """``value`` as seconds in (0, 3600]; else a :class:`ConfigurationError` naming ``name``."""
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
            raise ConfigurationError(f"{name} must be a number of seconds in (0, 3600] (got {value!r})")
        return float(value)

    def track(self, task: asyncio.Future[Any]) -> None:
        """Hold ``task`` (a routed request's run) in :attr:`in_flight` until it ends."""
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def stop_in_flight(self) -> None:
        """Cancel the routed tasks still running and wait for them to end ``interrupted``, their
        cancelled calls' costs stored as steps: the server's stop cancels the requests after
        ``drain_s`` without waiting, and the memory must not close under them (they stayed
        ``running`` at $0)."""
        tasks = list(self.in_flight)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def names(self) -> list[str]:
        """The model names that route: ``router`` and ``router:<router name>``."""
        return [ROUTER_MODEL, f"{ROUTER_MODEL}:{self.router.name}"]

    def close(self) -> None:
        """End the watch of the memory's SQLite lock, close the memory the server opened, flush one it
        was given (not while its database refuses writes, nor while another process holds its SQLite
        file's write lock, and waiting at most ``memory_wait_s``: its owner closes it); writes it could
        not store are reported on one line, not raised. A close does not wait for another process's
        lock: the writes it holds are given up at once, named (:meth:`SQLMemory.close`)."""
        memory = self.memory
        locked = memory is not None and not self.owns_memory and self._locked(memory)
        if self._lock is not None:
            self._lock.close()
        if memory is None:
            return
        try:
            if self.owns_memory:
                memory.close()
            elif not locked and getattr(memory, "refusing_for_s", None) is None:
                _flush_within(memory, self.memory_wait_s)
        except MemoryStoreError as exc:
            print(f"agentroute serve: memory: {first_line(exc)}", file=sys.stderr)

    def _locked(self, memory: MemoryStore) -> bool:
        """Whether ``memory`` holds writes not yet stored while another process holds its SQLite
        file's write lock (known held, or held throughout :data:`STOP_LOCKED_S`): a flush would wait."""
        if self._lock is None or not getattr(memory, "pending_writes", 0):
            return False
        return self._lock.held_for() is not None or self._lock.held_over(STOP_LOCKED_S)

    def memory_health(self) -> dict[str, Any] | None:
        """The memory's state for ``/health`` (``None`` without one): ``state`` is ``ok``, or
        ``refusing_writes`` (with ``for_s`` and ``error``) while its writer retries a failing batch,
        ``locked`` while its SQLite file is known locked by another process (:meth:`waits_on_lock`);
        ``pending_writes`` and ``lost_writes`` (refused, then given up) where the store tells them."""
        memory = self.memory
        if memory is None:
            return None
        down_for = getattr(memory, "refusing_for_s", None)
        health: dict[str, Any] = {"state": "ok" if down_for is None else "refusing_writes"}
        if self._lock is not None and (locked_for := self._lock.held_for()) is not None:
            health.update(state="locked", for_s=round(locked_for, 3), error=self._lock.why)
        elif down_for is not None:
            health["for_s"] = round(down_for, 3)
            health["error"] = first_line(getattr(memory, "retry_error", None) or "")
        for key, name in (("pending_writes", "pending_writes"), ("lost_writes", "refused_writes")):
            if (value := getattr(memory, name, None)) is not None:
                health[key] = value
        return health

    async def probed_memory_health(self) -> dict[str, Any] | None:
        """:meth:`memory_health`, the database asked (``SELECT 1``, waited for ``memory_wait_s`` at
        most) while the writer tells nothing wrong: ``state`` ``unreachable`` with ``error`` when it
        does not answer (an idle server, or one whose connection hangs, said ``ok``). One probe at a
        time: a hung one is waited for again, not joined by a thread per call."""
        health = self.memory_health()
        probe = getattr(self.memory, "unreachable", None)
        if health is None or health["state"] != "ok" or probe is None:
            return health
        if self._probe is None or self._probe.done():
            self._probe = asyncio.ensure_future(asyncio.to_thread(self._ask, probe))
        try:
            why = await asyncio.wait_for(asyncio.shield(self._probe), self.memory_wait_s)
        except TimeoutError:
            why = f"it did not answer within {self.memory_wait_s:g}s"
        if self._lock is not None and self._lock.since is not None:
            return self.memory_health()
        if why is not None:
            health.update(state="unreachable", error=why)
        return health

    def _ask(self, unreachable: Any) -> str | None:
        """The probe of :meth:`probed_memory_health` (on a thread): why the database does not answer,
        else whether its SQLite file stays locked by another process for :data:`LOCKED_AFTER_S` (at
        most half of ``memory_wait_s``): then it is known ``locked``."""
        why: str | None = unreachable()
        if why is None and self._lock is not None:
            self._lock.held_over(min(LOCKED_AFTER_S, self.memory_wait_s / 2))
        return why

    def waits_on_lock(self, task_id: str | None) -> bool:
        """Whether ``task_id``'s request should give up now: a write-ahead record of it waits (its
        call not sent; one in flight is answered) while the memory's SQLite file is known locked by
        another process (its write lock held without a break for :data:`LOCKED_AFTER_S`: a watch of
        it starts while a record waits). The writer keeps waiting for the lock meanwhile: nothing
        recorded is lost."""
        if self._lock is None or self.write_ahead_wait(task_id) is None:
            return False
        if self._lock.held_for() is not None:
            return True
        self._lock.watch()
        return False

    def write_ahead_wait(self, task_id: str | None) -> float | None:
        """Seconds ``task_id``'s oldest write-ahead record has waited for the memory (``None``: none waits)."""
        wait = getattr(self.memory, "write_ahead_wait", None)
        return wait(task_id) if wait is not None and task_id is not None else None

    def memory_wait_left(self, task_id: str | None) -> float:
        """Seconds before ``task_id``'s waiting write-ahead record reaches ``memory_wait_s``
        (≤ 0: give up the request); ``memory_wait_s`` when none waits."""
        return self.memory_wait_s - (self.write_ahead_wait(task_id) or 0.0)

    def request_budget(self, extension: Any) -> tuple[Budget | None, str | None]:
        """The budget and query id of a request's ``agentroute`` extension.

        A request budget tightens the server's: each limit is the smaller of the two, so a client
        cannot spend more than the server allows per request.
        """
        if extension is None:
            return self.budget, None
        if not isinstance(extension, Mapping):
            raise RequestError(
                'agentroute: expected an object such as {"budget": {"usd": 0.01}}', "agentroute"
            )
        unknown = sorted(set(extension) - set(EXTENSION_FIELDS))
        if unknown:
            raise RequestError(
                f"agentroute: unknown field(s) {unknown}; fields: {list(EXTENSION_FIELDS)}", "agentroute"
            )
        query_id = extension.get("query_id")
        if query_id is not None and not isinstance(query_id, str):
            raise RequestError("agentroute.query_id: expected a string", "agentroute.query_id")
        given = extension.get("budget")
        if given is None:
            return self.budget, query_id
        if not isinstance(given, Mapping):
            raise RequestError(
                'agentroute.budget: expected an object of limits such as {"usd": 0.001, "calls": 2}',
                "agentroute.budget",
            )
        try:
            requested = Budget(**given)
        except ConfigurationError as exc:
            raise RequestError(f"agentroute.budget: {exc}", "agentroute.budget") from None
        if self.budget is None:
            return requested, query_id
        limits = dict(self.budget.given())
        for name, value in requested.given().items():
            limits[name] = min(value, limits[name]) if name in limits else value
        return Budget(**limits), query_id

    async def run(
        self,
        messages: list[tuple[str, str]],
        *,
        budget: Budget | None,
        query_id: str | None,
        max_tokens: int | None,
        watch: ServedStep | None = None,
        temperature: float | None = None,
        options: RequestOptions | None = None,
    ) -> tuple[TaskRun, Step | None]:
        """One task: the messages as one routed step; the finished run (``run.task`` has the status
        and cost) and its step (``None`` when nothing was affordable). A cancelled request (client
        gone) ends the task ``interrupted``. ``watch`` sees the step's provider attempts as they run
        (the dispatcher's step watcher): their tokens, their ends and failures. ``options``: the
        request's provider fields, carried by every attempt."""
        prompt, query, text, history = split_messages(messages)
        dispatcher = self.dispatcher
        add_step_watcher(_watch_served)
        _served_step.set(watch)  # this request's task has its own context: other requests see theirs
        run = dispatcher.start(
            query, budget=budget, graph="serve", query_id=query_id, metadata={"served": True}
        )
        if watch is not None:
            watch.task_id = run.task.id
        try:
            step = await dispatcher.step(
                run,
                role=ROLE,
                stage=ROLE,
                prompt=prompt,
                input=text,
                max_tokens=max_tokens,
                query_id=query_id,
                history=history,
                temperature=temperature,
                options=options,
            )
        except BaseException:
            dispatcher.finish(run, status="interrupted")
            raise
        ok = step is not None and step.status == "ok"
        dispatcher.finish(run, answer=step.output if ok and step is not None else None)
        return run, step


def split_messages(messages: list[tuple[str, str]]) -> tuple[str, str, str, list[tuple[str, str]]]:
    """``(system prompt, query, step input, earlier turns)`` of a chat.

    System and developer messages become the step's system prompt; the query (what the router
    reads and the memory keeps) is the last user message; the step's input is the last turn, and
    the turns before it go to the model as they were sent (``user`` / ``assistant`` messages; a
    ``tool`` or ``function`` message as a user message ``"tool: text"``).
    """
    system = "\n".join(text for role, text in messages if role in ("system", "developer") and text)
    turns = [(role, text) for role, text in messages if role not in ("system", "developer")]
    users = [text for role, text in turns if role == "user"]
    query = users[-1] if users else (turns[-1][1] if turns else "")
    if not turns:
        return system, query, query, []
    spoken = [(role, text if role in ("user", "assistant") else f"{role}: {text}") for role, text in turns]
    *earlier, (_, last) = spoken
    return system, query, last, earlier


# -- watching the routed step (the dispatcher's step watcher, as LangGraph's messages mode uses it) --
_served_step: ContextVar[ServedStep | None] = ContextVar("agentroute_served_step", default=None)


def _watch_served(run: TaskRun, role: str) -> StepWatch | None:
    """The dispatcher asks this once per step (:func:`add_step_watcher`): a served request's own
    watch, or ``None`` for every other step (LangGraph's watcher answers for those)."""
    return _served_step.get()


class ServedStep:
    """A served request's view of its routed step: each provider attempt's tokens as they come
    (backends that stream them: ``openai``, ``litellm``, ``local``), its end or its failure.

    ``events`` gets ``("token", text)``, ``("error", reason)`` and ``("done", None)`` (the task has
    finished) when ``stream``; ``ended`` keeps each agent's last completed attempt (its finish
    reason: ``length`` when the answer was cut at ``max_tokens``; its reasoning text, its log
    probabilities) — of every backend, streaming or not (``whole_replies``: so the answer keeps the
    tool calls and finish reason a backend of the user's returns whole, as direct models pass them)."""

    whole_replies = True

    def __init__(self, stream: bool) -> None:
        self.stream = stream
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.first_token = asyncio.Event()
        self.model: str | None = None  # the card whose tokens are streamed
        self.task_id: str | None = None  # set once the task has started
        self.ended: dict[str, Completion] = {}

    async def attempt(self, plan: Any, stage: str, index: int, attempt: int) -> _ServedAttempt:
        return _ServedAttempt(self, plan)


class _ServedAttempt:
    def __init__(self, step: ServedStep, plan: Any) -> None:
        self.step, self.plan = step, plan

    async def token(self, text: str) -> None:
        step = self.step
        if step.stream and text:
            if step.model is None:
                step.model = self.plan.agent.model
            step.events.put_nowait(("token", text))
            step.first_token.set()

    async def end(self, completion: Completion) -> None:
        self.step.ended[self.plan.agent.key] = completion

    async def error(self, reason: str) -> None:
        if self.step.stream:
            self.step.events.put_nowait(("error", f"{self.plan.agent.key}: {reason}"))


def escalates(router: Router) -> bool:
    """Whether ``router`` may run a second agent after an answer (its ``escalate`` hook)."""
    return getattr(type(router), "escalate", None) is not Router.escalate


# -- the HTTP side --------------------------------------------------------------------------------
NO_RETRY = {"x-should-retry": "false"}  # the OpenAI SDKs honour it: the dispatcher already retried


def _flush_within(memory: MemoryStore, seconds: float) -> None:
    """``memory.flush()``, no longer waited for after ``seconds``: a database that stops answering
    as the server stops (a file another process holds locked) held that flush, and the server's
    exit, as long as the store retries: forever for ``retry_s=math.inf``, as ``agentroute serve`` opens it."""
    flushed: list[BaseException | None] = []

    def flush() -> None:
        try:
            memory.flush()
            flushed.append(None)
        except BaseException as exc:  # noqa: BLE001 - raised below, on the caller's thread
            flushed.append(exc)

    flushing = threading.Thread(target=flush, name="agentroute-serve-flush", daemon=True)
    flushing.start()
    flushing.join(seconds)
    if not flushed:
        raise MemoryStoreError(
            f"its writes were not all stored within {seconds:g}s (its database does not answer)"
        )
    if flushed[0] is not None:
        raise flushed[0]


def memory_unavailable(routing: Routing, task_id: str | None = None) -> Any:
    """The retryable 503 of a request the memory cannot record now (its model call not made)."""
    from agentroute.serve.openai_server import _error

    health = routing.memory_health() or {}
    why = f": {health['error']}" if health.get("error") else ""
    message = (
        f"the memory cannot store this request's records now{why}; the request was not sent to a model: "
        f"send it again in a few seconds (GET /health tells when the memory is back)"
    )
    response = _error(503, message, "server_error", code="memory_unavailable")
    response.headers.update({"Retry-After": str(RETRY_AFTER_S), "x-should-retry": "true"})
    if task_id is not None:
        response.headers["x-agentroute-task-id"] = task_id
    return response


async def routed_completion(routing: Routing, body: Any, http: Any) -> Any:
    """The response to a chat completion whose ``model`` is the router (``body``: the request)."""
    from fastapi.responses import JSONResponse, Response, StreamingResponse

    from agentroute.serve.openai_server import (
        _error,
        _error_body,
        _unless_disconnected,
        bad_upstream_reply,
        refused_options,
    )

    if (body.n or 1) != 1:
        return _error(
            400,
            "n: the router model answers one choice per request (one task)",
            "invalid_request_error",
            code="unsupported_value",
            param="n",
        )
    options = body.options()
    for card_id, takes in routing.takers.items():
        if (
            refused := refused_options(options, [takes], f"the router model (it may pick model {card_id!r})")
        ) is not None:
            return refused
    if body.stop:
        return _error(
            400,
            "stop: the router model does not apply stop sequences (the routed strategy writes the whole "
            "answer); leave stop out, or name a card as the model",
            "invalid_request_error",
            code="unsupported_parameter",
            param="stop",
        )
    try:
        budget, query_id = routing.request_budget((body.model_extra or {}).get("agentroute"))
    except RequestError as exc:
        return _error(
            400, f"invalid request: {exc}", "invalid_request_error", code="invalid_budget", param=exc.param
        )
    if (routing.memory_health() or {}).get("state", "ok") != "ok":  # fail fast: no task, no call
        return memory_unavailable(routing)
    messages = [(m.role, m.text()) for m in body.messages]
    max_tokens = body.max_completion_tokens or body.max_tokens
    # tokens are streamed as they come unless the router may answer twice (escalate): the answer
    # streamed must be the answer returned
    watch = ServedStep(stream=bool(body.stream) and not escalates(routing.router))
    task = asyncio.ensure_future(
        routing.run(
            messages,
            budget=budget,
            query_id=query_id,
            max_tokens=max_tokens,
            watch=watch,
            temperature=body.temperature,
            options=options if options.given() else None,
        )
    )
    task.add_done_callback(lambda _: watch.events.put_nowait(("done", None)))
    routing.track(task)

    async def started() -> bool:
        """``True`` once the task has finished or its answer's first token has come; ``False`` when
        a write-ahead record of it waits ``memory_wait_s`` for the memory (its call not sent), or
        waits on a SQLite file another process holds locked (:meth:`Routing.waits_on_lock`)."""
        first = asyncio.ensure_future(watch.first_token.wait())
        try:
            while (left := routing.memory_wait_left(watch.task_id)) > 0:  # each wait: ≤ memory_wait_s
                timeout = min(left, routing.lock_poll_s)
                done, _ = await asyncio.wait(
                    {task, first}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if done:
                    return True
                if routing.waits_on_lock(watch.task_id):
                    return False
            return False
        finally:
            first.cancel()

    try:
        ready = await _unless_disconnected(http, started())
    except asyncio.CancelledError:  # the server's stop cancelled the request after --drain-s
        await _cancel(task)  # the task is in the memory as interrupted
        return _stopping(watch.task_id)
    if ready is None:  # the client has gone
        await _cancel(task)  # the task is in the memory as interrupted
        return Response(status_code=499)
    if not ready and not task.done():  # the memory is down: the task ends interrupted, its call never sent
        await _cancel(task)
        return memory_unavailable(routing, watch.task_id)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time())}
    extra = {"usage": None} if include_usage else {}

    def chunk(
        model: str, delta: dict[str, Any] | None, finish: str | None = None, logprobs: Any = None, **more: Any
    ) -> str:
        choices = (
            []
            if delta is None
            else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": logprobs}]
        )
        data = {
            **head,
            "model": model,
            "object": "chat.completion.chunk",
            "choices": choices,
            **extra,
            **more,
        }
        return f"data: {json.dumps(data)}\n\n"

    def ending(run: TaskRun, step: Step, answered: Answer, *, thought: bool) -> list[str]:
        """The stream's last events: the reasoning text when ``thought`` (the answer's tokens went
        first, as they came), the tool calls the model made (one delta), the end with the answer's
        log probabilities, the usage, ``[DONE]``."""
        usage, extension = _usage(step), _extension(routing, run, step)
        answer, logprobs, finish = answered
        events = []
        if thought and "reasoning_content" in answer:
            events.append(chunk(step.agent.model, {"reasoning_content": answer["reasoning_content"]}))
        if calls := tool_call_deltas(answer.get("tool_calls")):
            events.append(chunk(step.agent.model, {"tool_calls": calls}))
        events.append(chunk(step.agent.model, {}, finish, logprobs))
        if include_usage:
            events.append(chunk(step.agent.model, None, usage=usage, agentroute=extension))
        return [*events, "data: [DONE]\n\n"]

    if task.done():  # finished before any token was streamed: the whole answer, or an ordinary error
        run, step = task.result()
        if step is None or step.status != "ok":
            return _failed(routing, run, step, max_tokens)
        try:
            answered = _answer(watch, step)
        except ProtocolError as exc:
            response = bad_upstream_reply(exc)
            response.headers["x-agentroute-task-id"] = run.task.id
            return response
        if not body.stream:
            answer, logprobs, finish = answered
            choice = {"index": 0, "message": answer, "finish_reason": finish, "logprobs": logprobs}
            return JSONResponse({
                **head, "model": step.agent.model, "object": "chat.completion", "choices": [choice],
                "usage": _usage(step), "agentroute": _extension(routing, run, step),
            })  # fmt: skip
        model, thought = step.agent.model, answered[0].get("reasoning_content")
        events = [chunk(model, {"role": "assistant", "content": ""})]
        if thought:  # before the answer, as a card streams it
            events.append(chunk(model, {"reasoning_content": thought}))
        if step.output:  # a reply of tool calls alone has no text delta, as on direct models
            events.append(chunk(model, {"content": step.output}))
        events += ending(run, step, answered, thought=False)

        async def whole() -> AsyncIterator[str]:
            for event in events:
                yield event

        return StreamingResponse(
            whole(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    streamed = watch.model or ""

    async def tokens() -> AsyncIterator[str]:
        """The answer's tokens as the provider sends them; an attempt that fails after some were sent
        ends the stream with an error event (the task stops: no retry or fallback is spliced on)."""
        sent = False
        try:
            yield chunk(streamed, {"role": "assistant", "content": ""})
            while True:
                kind, value = await watch.events.get()
                if kind == "token":
                    sent = True
                    yield chunk(streamed, {"content": value})
                elif kind == "error" and not sent:  # an attempt before the streamed one: retried, fallen back
                    continue
                elif kind == "error":
                    await _cancel(task)
                    message = (
                        f"the routed answer failed after part of it was sent ({value}); it is not retried "
                        f"or replaced by another model's: send the request again (task {_task_id(task)})"
                    )
                    yield f"data: {json.dumps(_error_body(message, 'server_error', code='stream_interrupted'))}\n\n"
                    return
                else:  # done
                    break
            run, step = task.result()
            if step is None or step.status != "ok":  # not expected: every failed attempt reports an error
                message = f"the routed task ended {run.task.status} after part of its answer was sent"
                yield f"data: {json.dumps(_error_body(message, 'server_error', code='stream_interrupted'))}\n\n"
                return
            try:
                answered = _answer(watch, step)
            except ProtocolError as exc:  # after part of the answer: the same error as the last event
                yield f"data: {bytes(bad_upstream_reply(exc).body).decode()}\n\n"
                return
            for event in ending(run, step, answered, thought=True):
                yield event
        finally:
            await _cancel(task)  # a client that goes away stops the task

    return StreamingResponse(tokens(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _cancel(task: asyncio.Future[Any]) -> None:
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _stopping(task_id: str | None) -> Any:
    """The retryable 503 of a request the server's stop cancelled before it answered."""
    from agentroute.serve.openai_server import _error

    return _error(
        503,
        f"the server is stopping: the routed task {task_id or ''} was interrupted before it answered; "
        "send the request again",
        "server_error",
        code="server_stopping",
    )


def _task_id(task: asyncio.Future[Any]) -> str:
    if task.done() and not task.cancelled() and task.exception() is None:
        return task.result()[0].task.id
    return "interrupted"


def _broke_protocol(run: TaskRun, step: Step | None) -> ProtocolError | None:
    """The :class:`ProtocolError` that failed ``step`` (its last model's reply broke the protocol:
    tool calls not in OpenAI's shape, a bad usage), as the dispatcher audited it; else ``None``."""
    if step is None or not step.error:
        return None
    for event in reversed(run.context.get("audit", [])):
        if event.kind == "protocol_error" and event.detail == step.error:
            return ProtocolError(event.subject, event.detail.removeprefix(f"{event.subject}: "))
    return None


def priced_out(routing: Routing, limits: Mapping[str, float], max_tokens: int | None) -> bool:
    """Whether ``max_tokens`` alone puts every card over the budget's ``usd`` or ``tokens`` limit:
    the least a routed call asks for (``direct``: half of it), priced as output at the card's price."""
    if not max_tokens:
        return False
    least = max_tokens // 2
    usd, tokens = limits.get("usd", math.inf), limits.get("tokens", math.inf)
    return least > tokens or all(card.usd(0, least) > usd for card in routing.cards)


def _failed(routing: Routing, run: TaskRun, step: Step | None, max_tokens: int | None = None) -> Any:
    """The 402 (budget) or 502 (every model failed) of a task that has no answer; the retryable 503
    when its deadline came while the memory held a write-ahead record (the memory's outage, not the budget).
    A 402 before any call whose ``max_tokens`` alone priced every model out (:func:`priced_out`) says so."""
    from agentroute.serve.openai_server import _error, bad_upstream_reply

    task = run.task
    if task.status == "budget_exhausted" and routing.write_ahead_wait(task.id) is not None:
        return memory_unavailable(routing, task.id)
    spent = run.ledger.spent
    detail = f"task {task.id} spent ${task.cost_usd:.6g} in {int(spent.get('calls', 0))} call(s)"
    if step is not None and step.error:
        detail += f"; last error: {step.error}"
    if (broke := _broke_protocol(run, step)) is not None:  # the last model's reply was unreadable
        response = bad_upstream_reply(broke)
    elif task.status == "budget_exhausted":
        limits = ", ".join(f"{k}={v:g}" for k, v in run.ledger.limits.items())
        message = f"budget exhausted before any model answered (budget: {limits}; {detail})"
        if not spent.get("calls") and priced_out(routing, run.ledger.limits, max_tokens):
            message += (
                f"; max_tokens {max_tokens} is priced at its worst case, beyond the budget for every model: "
                "lower max_tokens (or raise the budget)"
            )
        response = _error(402, message, "budget_exhausted", code="budget_exhausted")
    else:
        response = _error(
            502, f"every model the router tried failed ({detail})", "server_error", code="all_models_failed"
        )
    response.headers.update({**NO_RETRY, "x-agentroute-task-id": task.id})
    return response


Answer = tuple[dict[str, Any], Any, FinishReason]
"""A routed answer's message, ``logprobs`` and ``finish_reason``."""


def _answer(watch: ServedStep, step: Step) -> Answer:
    """The routed answer's message, ``logprobs`` and ``finish_reason``: with the answering attempt's
    reasoning text, tool calls and log probabilities where it gave the step its answer (one sample:
    not ``sc@K``, whose answer is a vote); the finish reason its backend said (:func:`finish_reason`,
    read with the calls the message carries). Tool calls not in OpenAI's shape are a
    :class:`ProtocolError`, as on direct models (:func:`check_tool_calls`)."""
    ended = watch.ended.get(step.agent.key)
    if ended is None or ended.text != step.output:
        answer, logprobs = {"role": "assistant", "content": step.output}, None
    else:
        check_tool_calls(ended, step.agent.model)
        answer, logprobs = message(ended), choice_logprobs(ended)
    reason = ended.raw.get("finish_reason") if ended is not None else None
    return answer, logprobs, finish_reason(reason, answer.get("tool_calls"))


def _usage(step: Step) -> dict[str, int]:
    return {
        "prompt_tokens": step.tokens_in,
        "completion_tokens": step.tokens_out,
        "total_tokens": step.tokens_in + step.tokens_out,
    }


def _extension(routing: Routing, run: TaskRun, step: Step) -> dict[str, Any]:
    decision, task = step.decision, run.task
    return {
        "routed_to": step.agent.key,
        "why": decision.why if decision is not None else "",
        "router": decision.router if decision is not None else routing.router.name,
        "task_id": task.id,
        "status": task.status,
        "cost_usd": task.cost_usd,
        "latency_ms": step.latency_ms,
        "confidence": step.confidence,
    }

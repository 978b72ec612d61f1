"""``SQLMemory``: the memory store on SQLite (default) or PostgreSQL, with batched writes.

>>> with open_memory("sqlite:///runs/memory.db") as memory:  # doctest: +SKIP
...     memory.start_task(task); memory.record_step(step); memory.finish_task(task)
...     memory.trajectories(graph="qa", with_score=True)

Writes (``start_task``, ``record_step``, ``finish_task``, ``record_audit``, ``add_feedback``) only
enqueue: they cost a microsecond or so and never touch the database on the caller's thread, so
they are safe on the dispatcher's hot path, from many threads and asyncio tasks at once. A
background thread commits them in batches (:mod:`agentroute.memory.writer`). ``flush()`` blocks
until everything recorded before it is committed and raises
:class:`~agentroute.memory.errors.MemoryWriteError` for writes that could not be; reads see every
write recorded before them. The store keeps a reference to what you record until its batch is
written: don't mutate a recorded step (a task may change until ``finish_task``, which records it
again).

Durability when the process dies (``kill -9``, the OOM killer, a lost host): what is committed
stays (SQLite in WAL mode, ``synchronous=NORMAL``: it survives a process crash, not a power cut;
PostgreSQL: its own). At a real provider's pace (fewer than ``LOAD_WRITES`` = 16 writes in 50 ms,
about 300 a second) the writer commits each write as soon as it is recorded, in about a millisecond,
so a step whose settle returned before the kill is stored; only a call still in flight at the kill
(billed by the provider, its reply never read) has no step. Faster than that (a replay backend, a
local model at high concurrency) writes are batched and a crash loses at most ``flush_interval_s``
(50 ms) worth. Measured on a loaded 2-core machine, ``benchmarks/dispatch_overhead.py --tasks 500
--repeats 3`` (CPU µs per step with the SQLite memory, concurrency 1 / 32): 530 / 461 with prompt
commits, 460 / 440 without, within the run-to-run noise (the replay benchmark runs in the batched
regime). ``prompt_commit=False`` always waits for the batch deadline. ``flush()`` makes a point durable
whatever the pace. Tasks a dead process left ``running`` stay ``running`` until closed: a later
``agentroute run --resume`` closes its batch's ones ``interrupted`` (:mod:`agentroute.memory.batches`);
any of them, in a batch or not, :meth:`SQLMemory.reconcile_running` (``agentroute memory reconcile``)
when the process was on this host, or on another host sharing a PostgreSQL memory (whose lease the
dead process no longer holds) — each task row names its process (:mod:`agentroute.memory.processes`),
and ``agentroute memory stats`` shows them as running with their process gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import numbers
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from agentroute.budget import Attempt
from agentroute.errors import ConfigurationError
from agentroute.memory import claims, export, processes, queries
from agentroute.memory.base import MemoryStore
from agentroute.memory.claims import TaskClaims
from agentroute.memory.codec import attempt_from_row
from agentroute.memory.engine import (
    STOP_LOCKED_S,
    create_memory_engine,
    held_throughout,
    is_memory_sqlite,
    resolve_url,
    safe_url,
)
from agentroute.memory.errors import MemoryStoreError, first_line
from agentroute.memory.migrate import upgrade
from agentroute.memory.settle import replace_settled
from agentroute.memory.tables import ATTEMPTS, TASKS
from agentroute.memory.writer import (
    ATTEMPT,
    AUDIT_EVENT,
    BATCH_ITEM,
    FEEDBACK_SCORE,
    FINISH,
    RETRY_S,
    START,
    STEP,
    BatchItemWrite,
    BatchWriter,
)
from agentroute.types import AuditEvent, Step, Task, TaskStatus, Trajectory

__all__ = ["SQLMemory", "TaskWatch", "open_memory", "watch_tasks"]


class TaskWatch:
    """The tasks started and steps recorded in one context (see :func:`watch_tasks`)."""

    __slots__ = ("tasks", "steps")

    def __init__(self) -> None:
        self.tasks: list[Task] = []
        self.steps: list[Step] = []

    def cost_of(self, task_id: str) -> float:
        """The cost of the steps recorded for ``task_id`` in this context."""
        return sum(s.cost_usd for s in self.steps if s.task_id == task_id)


_WATCH: contextvars.ContextVar[TaskWatch | None] = contextvars.ContextVar(
    "agentroute_task_watch", default=None
)


@contextlib.contextmanager
def watch_tasks() -> Iterator[TaskWatch]:
    """Collect the tasks and steps a :class:`SQLMemory` records in this context (asyncio tasks and
    LangGraph nodes started from it included): how a batch learns the task of each item, to mark
    it ``failed`` with its reason or ``interrupted`` with the cost of its steps."""
    watch = TaskWatch()
    token = _WATCH.set(watch)
    try:
        yield watch
    finally:
        _WATCH.reset(token)


log = logging.getLogger("agentroute.memory")


_TASK_STATUSES: tuple[str, ...] = get_args(TaskStatus)
SQLITE_RETRY_S = 1.5
MAX_FLUSH_INTERVAL_S = 86_400.0
"""The longest ``flush_interval_s`` (a day); ``flush()`` commits at once whatever the interval."""


def _where(
    *,
    graph: str | None,
    status: Sequence[str] | None,
    since: datetime | None,
    with_score: bool,
    limit: int | None,
) -> list[sa.ColumnElement[bool]]:
    """The filters of :meth:`SQLMemory.trajectories`, checked: a bad ``limit`` or ``since`` is a
    :class:`ConfigurationError` (a negative limit returned nothing; a text ``since`` failed in SQLAlchemy)."""
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 0
    ):
        raise ConfigurationError(f"limit must be a non-negative whole number or None (got {limit!r})")
    if since is not None and not isinstance(since, datetime):
        raise ConfigurationError(
            f"since must be a datetime (got {type(since).__name__} {since!r}): e.g. datetime.fromisoformat(...)"
        )
    if status is not None:
        unknown = [s for s in ([status] if isinstance(status, str) else status) if s not in _TASK_STATUSES]
        if unknown:
            raise ConfigurationError(f"status {unknown}: not a task status ({', '.join(_TASK_STATUSES)})")
    return queries.task_filter(graph=graph, status=status, since=since, with_score=with_score)


@contextlib.contextmanager
def write_transaction(
    engine: sa.Engine, lock: contextlib.AbstractContextManager[Any]
) -> Iterator[sa.Connection]:
    """One write transaction, committed unless its body raises; on SQLite ``BEGIN IMMEDIATE`` takes
    the write lock up front (live processes write too)."""
    with lock, engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


def _replace_settled(
    writer: BatchWriter, engine: sa.Engine, lock: contextlib.AbstractContextManager[Any], task_ids: list[str]
) -> int:
    """:meth:`SQLMemory.taken_for_dead` (a function: a lease's callback holds no memory alive)."""
    writer.replacing = True
    writer.drain()
    with write_transaction(engine, lock) as conn:
        return replace_settled(conn, task_ids)


def _on_retaken(
    writer: BatchWriter, engine: sa.Engine, lock: contextlib.AbstractContextManager[Any]
) -> Callable[[], None]:
    """The lease's callback (:attr:`TaskClaims.on_retaken`): :func:`_replace_settled` for the tasks of
    the steps committed since the lease was last found held (:attr:`BatchWriter.stepped`), on a
    thread of its own, as the claims' lock is held and the writer may wait on it."""

    def replace(task_ids: list[str]) -> None:
        try:
            if replaced := _replace_settled(writer, engine, lock, task_ids):
                log.warning(
                    "memory: this process was taken for dead while its lease was lost: %d settled call(s) replaced by its own steps",
                    replaced,
                )
        except Exception as exc:  # noqa: BLE001 - the reconcile's worst case stays stored
            log.error("memory: replacing settled calls after the lease was taken again: %s", first_line(exc))

    def retaken() -> None:
        writer.replacing = True  # its steps from now on, before the thread starts
        stepped = list(writer.stepped.copy()) if writer.stepped is not None else []
        threading.Thread(
            target=replace, args=(stepped,), name="agentroute-memory-settled", daemon=True
        ).start()

    return retaken


def _shutdown(writer: BatchWriter, engine: sa.Engine, claims: TaskClaims | None, pid: int) -> None:
    """Commit what a store that was never closed still holds (at exit or garbage collection). In a
    process forked from the one that opened it (``pid``), nothing: its pooled connections are the
    parent's, and closing them would end the parent's sessions."""
    if os.getpid() != pid:
        engine.dispose(close=False)
        return
    writer.stop()
    try:
        writer.raise_errors()
    except MemoryStoreError as exc:
        log.error("memory: at shutdown: %s", exc)
    if claims is not None:
        claims.close()
    engine.dispose()


class _Lease:
    """This process's lease in one PostgreSQL memory, taken by the memory's writer thread before it
    writes a task row (never on the caller's thread: opening the connection takes a round trip or
    more); another host then tells whether the process still runs (:mod:`agentroute.memory.processes`).
    Calling it says whether the lease is held: without it (the server refused: down, out of
    connections) tasks are written as before, their liveness unknown to other hosts, and it is
    tried again before the next task row written one lease check or more later."""

    def __init__(self, task_claims: TaskClaims, url: str) -> None:
        self._claims, self._url = task_claims, url
        self._next_try = -math.inf  # time.monotonic() of the next attempt

    def __call__(self) -> bool:
        if not self._claims.leased and time.monotonic() >= self._next_try:
            try:
                self._claims.hold_lease(claims.lease_key(processes.this_process()))
            except SQLAlchemyError as exc:
                self._next_try = time.monotonic() + self._claims.check_s
                log.warning("memory: cannot take this process's lease in %s (%s): other hosts cannot tell "
                            "whether its running tasks still run", self._url, exc)  # fmt: skip
        return self._claims.leased


class SQLMemory(MemoryStore):
    """The interaction memory on a SQL database, brought to the newest schema on open.

    Args:
        url: SQLAlchemy URL; default ``$AGENTROUTE_MEMORY``, else ``sqlite:///.agentroute/memory.db``
            (its folder is created). ``postgresql://`` uses psycopg 3 (extra ``postgres``).
            ``sqlite://`` is a private in-memory database.
        batch_size: most writes committed in one transaction.
        flush_interval_s: longest time a write waits for its batch to fill before it is committed
            (at most a day; ``flush()`` commits at once).
        max_pending: when more writes than this wait in the queue, a record call blocks until they
            are committed (back-pressure instead of unbounded memory).
        migrate: bring the schema to the Alembic head on open (skipped quickly when already there).
        retry_s: how long the writer retries a batch whose connection failed (a server restart, a
            network blip) before the batch's writes are lost and the next ``flush()`` raises; new
            writes wait in the queue meanwhile. Default: 30 s on PostgreSQL, 1.5 s on SQLite (whose
            busy timeout already waits 30 s for a lock). ``math.inf``: until the database returns,
            unless more than ``max_pending`` writes wait behind the batch (then it is lost, loudly).
        prompt_commit: commit a write at once while fewer than 16 writes were committed in the last
            50 ms (the default: a process killed right after a step keeps it); ``False`` always waits
            for the batch to fill or its ``flush_interval_s`` deadline.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        batch_size: int = 1000,
        flush_interval_s: float = 0.05,
        max_pending: int = 100_000,
        migrate: bool = True,
        retry_s: float | None = None,
        prompt_commit: bool = True,
    ) -> None:
        for name, value in (("batch_size", batch_size), ("max_pending", max_pending)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ConfigurationError(f"{name} must be a whole number (got {value!r})")
        if batch_size < 1:
            raise ConfigurationError(f"batch_size must be at least 1 (got {batch_size})")
        if (
            isinstance(flush_interval_s, bool)
            or not isinstance(flush_interval_s, numbers.Real)
            or not 0
            <= flush_interval_s
            <= MAX_FLUSH_INTERVAL_S  # NaN fails too; inf killed the writer thread
        ):
            raise ConfigurationError(
                f"flush_interval_s must be a number of seconds in [0, {MAX_FLUSH_INTERVAL_S:g}] (got {flush_interval_s!r})"
            )
        if retry_s is not None and (
            isinstance(retry_s, bool)
            or not isinstance(retry_s, numbers.Real)
            or not (0 <= retry_s <= MAX_FLUSH_INTERVAL_S or retry_s == math.inf)
        ):
            raise ConfigurationError(
                f"retry_s must be a number of seconds in [0, {MAX_FLUSH_INTERVAL_S:g}] or math.inf (got {retry_s!r})"
            )
        if max_pending < batch_size:
            raise ConfigurationError(
                f"max_pending (got {max_pending}) must be at least batch_size (got {batch_size})"
            )
        parsed = resolve_url(url)
        self.url: str = safe_url(parsed)
        self.batch_size: int = batch_size
        self.flush_interval_s: float = flush_interval_s
        self.max_pending: int = max_pending
        # before the memory's own engine: a wrong $AGENTROUTE_LEASE_CHECK_S is refused with nothing open
        self._claims: TaskClaims | None = (
            TaskClaims(parsed) if parsed.get_backend_name() == "postgresql" else None
        )
        self.engine: sa.Engine = create_memory_engine(parsed)
        try:
            if migrate:
                upgrade(self.engine)
        except (SQLAlchemyError, MemoryStoreError) as exc:
            self.engine.dispose()
            raise MemoryStoreError(f"cannot open the memory at {self.url}: {exc}") from exc
        # one shared connection for an in-memory SQLite database: serialise its users
        self._shared_connection: bool = is_memory_sqlite(parsed)
        self._lock: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if self._shared_connection else contextlib.nullcontext()
        )
        if retry_s is None:
            retry_s = RETRY_S if parsed.get_backend_name() == "postgresql" else SQLITE_RETRY_S
        self._writer: BatchWriter = BatchWriter(
            self.engine,
            batch_size=batch_size,
            flush_interval_s=flush_interval_s,
            lock=self._lock,
            retry_s=retry_s,
            prompt=bool(prompt_commit),
            lease=None if self._claims is None else _Lease(self._claims, self.url),
            max_pending=max_pending,
        )
        # write-ahead records not yet committed: token → (task id, time.monotonic() it was recorded)
        self._write_aheads: dict[object, tuple[str, float]] = {}
        if self._claims is not None and (stepped := self._writer.stepped) is not None:
            self._claims.on_alive = stepped.clear
            self._claims.on_retaken = _on_retaken(self._writer, self.engine, self._lock)
        self._put: Callable[[Any], None] = self._writer.put
        self._qsize: Callable[[], int] = self._writer.qsize
        self.closed: bool = False
        self._pid: int = os.getpid()  # the process that opened it (a forked child's copy closes nothing)
        self._finalizer: weakref.finalize[Any, Any] = weakref.finalize(
            self, _shutdown, self._writer, self.engine, self._claims, self._pid
        )

    @property
    def refusing_writes(self) -> bool:
        """Whether the database refuses the memory's writes now (its writer retries a batch)."""
        return self._writer.refusing

    @property
    def refusing_for_s(self) -> float | None:
        """Seconds since the database began refusing the batch its writer retries (``None``: not refusing)."""
        since = self._writer.refusing_since
        return None if since is None else time.monotonic() - since

    @property
    def retry_error(self) -> BaseException | None:
        """The last error of the batch the writer retries now (``None``: not refusing)."""
        return self._writer.retry_error

    @property
    def pending_writes(self) -> int:
        """Writes recorded and not yet committed (nor lost), the batch being written included."""
        return self._qsize() + len(self._writer._writing)  # noqa: SLF001 - the memory's own writer

    def give_up_writes(self, why: str) -> int:
        """Stop storing now, without waiting for the database (a file another process keeps locked
        as the process stops): the writes not yet committed are lost, each with ``why``, and raised
        by the next :meth:`flush` or :meth:`close` (which then returns at once; not logged: that
        error says it, on one line); a try in flight that the database answers after all is rolled
        back. Returns how many were given up."""
        return self._writer.give_up(MemoryStoreError(why), logged=False)

    def unreachable(self) -> str | None:
        """Why the database does not answer now, on one line (``None``: it does): one ``SELECT 1``,
        what ``agentroute serve``'s ``/health`` asks while the writer has nothing to tell (idle)."""
        if self.closed:
            return f"memory {self.url} is closed"
        try:
            with self._lock, self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except SQLAlchemyError as exc:
            return first_line(getattr(exc, "orig", None) or exc)
        return None

    def write_ahead_wait(self, task_id: str) -> float | None:
        """Seconds the oldest uncommitted write-ahead record of ``task_id`` has waited for its
        commit (:meth:`reserve_attempt`), ``None`` when none waits: what a caller that cannot wait
        out a memory outage (``agentroute serve``) watches, since the attempt is not sent meanwhile."""
        waits = [since for task, since in list(self._write_aheads.values()) if task == task_id]
        return time.monotonic() - min(waits) if waits else None

    @property
    def refused_writes(self) -> int:
        """How many recorded writes were lost because the database refused them (a full disk, a
        read-only database, a server that stayed down), not for their data; :meth:`flush` raises them."""
        return self._writer.refused

    @property
    def write_refusal(self) -> BaseException | None:
        """The last error of a write the database refused (see :attr:`refused_writes`)."""
        return self._writer.refusal

    @property
    def retry_s(self) -> float:
        """How long a write whose connection failed is retried (see the constructor)."""
        return self._writer.retry_s

    def __repr__(self) -> str:
        return f"SQLMemory({self.url!r})"

    # -- writes (enqueue; committed by the writer thread) --------------------------------------
    def _enqueue(self, kind: str, payload: Any) -> None:
        if self.closed:
            raise MemoryStoreError(f"memory {self.url} is closed")
        self._put((kind, payload))
        self._pressure()

    def _pressure(self) -> None:
        """Wake the writer when a batch is full; block the caller when too much is waiting."""
        pending = self._qsize()
        if pending >= self.batch_size:
            if pending > self.max_pending:
                self._writer.drain()
            else:
                self._writer.wake()

    def start_task(self, task: Task) -> None:
        self._enqueue(START, task)
        if (watch := _WATCH.get()) is not None:
            watch.tasks.append(task)

    def record_step(self, step: Step) -> None:
        self._enqueue(STEP, step)
        if (watch := _WATCH.get()) is not None:
            watch.steps.append(step)

    def record_batch_item(
        self, row: dict[str, Any], on_commit: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        """Record a batch item's outcome, committed with the task writes recorded before it
        (see :mod:`agentroute.memory.batches`); ``on_commit(row)`` runs on the writer thread after,
        with the row as stored."""
        self._enqueue(BATCH_ITEM, BatchItemWrite(row, on_commit))

    def finish_task(self, task: Task) -> None:
        self._enqueue(FINISH, task)

    async def reserve_attempt(self, attempt: Attempt) -> None:
        """Store ``attempt``'s write-ahead record, returning once it is committed (or its write has
        failed: the next :meth:`flush` raises it): the dispatcher calls this before each provider
        attempt, so that a crash with the call in flight leaves its reservation behind. Cancelled
        before the commit (a deadline, a client gone), the record is left out if not yet written: a
        stored one no step settles is charged its worst case when the task is resumed or rerun."""
        if self.closed:
            raise MemoryStoreError(f"memory {self.url} is closed")
        loop = asyncio.get_running_loop()
        stored: asyncio.Future[None] = loop.create_future()
        token = object()
        self._write_aheads[token] = (attempt.task_id, time.monotonic())

        def done() -> None:
            if not stored.done():  # not cancelled meanwhile
                stored.set_result(None)

        def then() -> None:  # on the writer thread, also when nobody waits any more
            self._write_aheads.pop(token, None)
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(done)

        try:
            self._writer.commit_soon((ATTEMPT, attempt), then)
        except MemoryStoreError:
            self._write_aheads.pop(token, None)
            raise
        try:
            await stored
        except asyncio.CancelledError:  # the attempt will not be sent: its record, not yet written, never is
            if token in self._write_aheads:
                self._writer.withdraw(attempt)
            raise

    def attempts(self, task_id: str) -> list[Attempt]:
        """The write-ahead records of ``task_id``'s provider attempts, oldest first."""
        query = sa.select(ATTEMPTS).where(ATTEMPTS.c.task_id == task_id).order_by(ATTEMPTS.c.created_at)
        with self._read() as conn:
            return [attempt_from_row(row) for row in conn.execute(query).mappings()]

    def record_audit(self, event: AuditEvent) -> None:
        self._enqueue(AUDIT_EVENT, event)

    def add_feedback(self, task_id: str, score: float, *, source: str = "user", comment: str = "") -> None:
        """Queue a score for ``task_id``; a score that is not a number in [0, 1] is a
        :class:`ConfigurationError` naming it, here (not a failed write at the next ``flush()``), by
        :func:`agentroute.outcomes.feedback_score`'s rule. The task's score becomes the newest
        feedback given (by the time of this call, whichever process commits last), over the one its
        process gives. An id that names no task yet is stored all the same (log tables have no
        foreign keys): it scores the task when its row arrives (the task still running, or not yet
        flushed, in another process); a mistyped id scores nothing: check it with :meth:`get_task`."""
        from agentroute.outcomes import feedback_score

        row = {
            "task_id": task_id,
            "score": feedback_score(score),
            "source": source,
            "comment": comment,
            "created_at": datetime.now(UTC),
        }
        self._enqueue(FEEDBACK_SCORE, row)

    # -- claims (one worker at a time runs a task; see agentroute.memory.claims) ---------------
    @property
    def claims_tasks(self) -> bool:
        """Whether :meth:`claim_task` guards tasks across processes (PostgreSQL; not SQLite)."""
        return self._claims is not None

    def claim_task(self, task_id: str) -> bool:
        """Claim ``task_id`` for this process until :meth:`release_task`; ``False`` when another
        process holds it. Always ``True`` on SQLite (no cross-process claims there)."""
        if self.closed:
            raise MemoryStoreError(f"memory {self.url} is closed")
        try:
            return self._claims is None or self._claims.claim(task_id)
        except SQLAlchemyError as exc:
            raise MemoryStoreError(f"cannot claim task {task_id} in the memory at {self.url}: {exc}") from exc

    def confirm_claim(self, task_id: str) -> bool:
        """Whether this process still holds, unbroken, the claim :meth:`claim_task` took on
        ``task_id`` (one round trip; see :meth:`TaskClaims.confirm`): ``False`` once its session
        was lost, when another worker may have claimed and run the task. Always ``True`` on SQLite."""
        if self._claims is None:
            return True
        return not self.closed and self._claims.confirm(task_id)

    def claim_unbroken(self, task_id: str) -> bool:
        """:meth:`confirm_claim` without a round trip (no I/O, for each paid call): ``False`` within
        a lease check (``$AGENTROUTE_LEASE_CHECK_S``) of the claim's session ending. Always ``True`` on SQLite."""
        if self._claims is None:
            return True
        return not self.closed and self._claims.unbroken(task_id)

    def release_task(self, task_id: str) -> None:
        """Give back a claim taken by :meth:`claim_task`."""
        if self._claims is not None:
            self._claims.release(task_id)

    def flush(self) -> None:
        if not self.closed:
            self._writer.drain()
        self._writer.raise_errors()

    async def aflush(self) -> None:
        """:meth:`flush` without blocking the event loop."""
        await asyncio.to_thread(self.flush)

    def close(self, *, retry_s: float | None = None) -> None:
        """Commit what is queued and close; a batch the database refuses meanwhile is retried
        ``retry_s`` more at most (default 30 s), then its writes are lost and raised here. A close
        during a Ctrl-C (a ``KeyboardInterrupt`` on its way out: ``agentroute serve``'s stop) does
        not wait for a SQLite file's write lock that another process holds throughout
        :data:`STOP_LOCKED_S`: the writes waiting for it are given up at once
        (:meth:`give_up_writes`; a try in flight waits the file's 30 s busy timeout, which nothing
        cuts short). Any other close waits for the lock, as for the other writers of the file."""
        if retry_s is not None and (
            isinstance(retry_s, bool) or not isinstance(retry_s, numbers.Real) or not retry_s >= 0
        ):
            raise ConfigurationError(f"retry_s must be a number of seconds ≥ 0 (got {retry_s!r})")
        if self.closed:
            return
        self.closed = True
        self._finalizer.detach()
        if os.getpid() != self._pid:  # a forked child's copy: the connections are the parent's
            _shutdown(self._writer, self.engine, self._claims, self._pid)
            return
        try:
            if (
                self.pending_writes
                and isinstance(sys.exc_info()[1], KeyboardInterrupt)
                and held_throughout(self.engine, STOP_LOCKED_S)
            ):
                self.give_up_writes(
                    f"not stored: the memory was closed while another process held the write lock of "
                    f"{self.engine.url.database}; what was stored stays, as after a crash: "
                    "`agentroute memory reconcile` closes the tasks left running"
                )  # fmt: skip
            self._writer.stop(retry_s)
            self._writer.raise_errors()
        finally:
            if self._claims is not None:
                self._claims.close()
            self.engine.dispose()

    def __enter__(self) -> SQLMemory:
        return self

    # -- reads (see every write recorded before them) -------------------------------------------
    @contextlib.contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        if self.closed:
            raise MemoryStoreError(f"memory {self.url} is closed")
        self._writer.drain()
        with self._lock, self.engine.connect() as conn:
            yield conn

    def get_task(self, task_id: str) -> Trajectory | None:
        with self._read() as conn:
            return queries.get_task(conn, task_id)

    def trajectories(
        self,
        *,
        graph: str | None = None,
        status: Sequence[str] | None = None,
        since: datetime | None = None,
        with_score: bool = False,
        limit: int | None = None,
    ) -> list[Trajectory]:
        """Tasks with their steps (ordered by index), oldest first; two queries per 1,000 tasks.

        ``status`` defaults to every finished status (all but ``running``).
        """
        return list(
            self.iter_trajectories(
                graph=graph, status=status, since=since, with_score=with_score, limit=limit
            )
        )

    def iter_trajectories(
        self,
        *,
        graph: str | None = None,
        status: Sequence[str] | None = None,
        since: datetime | None = None,
        with_score: bool = False,
        limit: int | None = None,
    ) -> Iterator[Trajectory]:
        """:meth:`trajectories` as a stream, 1,000 tasks in memory at a time (for large logs)."""
        where = _where(graph=graph, status=status, since=since, with_score=with_score, limit=limit)
        if self._shared_connection:  # don't hold the one connection (and its lock) while the caller runs
            with self._read() as conn:
                items = list(queries.iter_trajectories(conn, where, limit=limit))
            yield from items
            return
        with self._read() as conn:
            yield from queries.iter_trajectories(conn, where, limit=limit)

    def audit_events(self, task_id: str | None = None) -> list[AuditEvent]:
        with self._read() as conn:
            return queries.audit_events(conn, task_id)

    def stats(self) -> dict[str, Any]:
        """``tasks`` (count by status), ``tasks_total``, ``steps``, ``cost_usd``, ``tokens_in``,
        ``tokens_out``, ``models`` (per model: ``calls``, ``cost_usd``, ``tokens``), ``feedback``,
        ``feedback_no_task`` (of them, those whose id names no stored task: still running elsewhere,
        or mistyped), ``audit_events``, ``running`` (the ``running`` tasks by their process: ``alive``, ``gone``,
        ``other_host``, ``unknown``; see :meth:`running_tasks`)."""
        with self._read() as conn:
            figures = queries.stats(conn)
            figures["running"] = processes.running_tasks(conn).counts()
        return figures

    def running_tasks(self) -> processes.RunningTasks:
        """The ``running`` tasks' ids by their process: ``alive`` (runs on this host, or holds its
        lease on another), ``gone`` (died without finishing them: :meth:`reconcile_running` closes
        them), ``other_host`` (another host's without a lease: cannot be told from here) and
        ``unknown`` (stored before processes were recorded)."""
        with self._read() as conn:
            return processes.running_tasks(conn)

    def reconcile_running(self, task_ids: Sequence[str] | None = None) -> list[str]:
        """The ids of the tasks :meth:`reconcile` closed."""
        return self.reconcile(task_ids).tasks

    def reconcile(self, task_ids: Sequence[str] | None = None) -> processes.Closed:
        """Close as ``interrupted`` the ``running`` tasks whose process is gone (``kill -9``, a
        crash; on another host sharing a PostgreSQL memory: its lease released), of ``task_ids``
        when given: their cost becomes that of their recorded steps and ``metadata["error"]`` says
        why. Tasks of live processes, and of other hosts without a lease, are never touched; another
        host's task is closed only when its lease stays released for
        :func:`~agentroute.memory.claims.lease_grace_s` (this call waits that long to look again: a
        live process takes back a lease whose connection was dropped). Returns the ids closed and the
        calls in flight they had, stored at their worst case (:class:`~agentroute.memory.processes.Closed`;
        see :mod:`agentroute.memory.processes`)."""
        if self.closed:
            raise MemoryStoreError(f"memory {self.url} is closed")
        running = self.running_tasks()
        wanted = None if task_ids is None else set(task_ids)
        gone = [t for t in running.gone if wanted is None or t in wanted]
        if released := set(gone) & set(running.released):
            # a live process whose lease connection was dropped takes it again: look once more later
            grace_s = claims.lease_grace_s()
            log.info(
                "memory: waiting %g s to see that %d released lease(s) stay released", grace_s, len(released)
            )
            time.sleep(grace_s)
        if not gone:
            return processes.Closed()
        with write_transaction(self.engine, self._lock) as conn:
            return processes.reconcile_running(conn, gone)

    def taken_for_dead(self, task_ids: Iterable[str]) -> int:
        """Say that another process took this one for dead while it lived (a batch worker retired
        by another's reconcile; on PostgreSQL, a lease taken again after its session was lost: done
        by itself), which may have settled its calls in flight at their worst case: the steps it
        stores from now on, and those of ``task_ids`` already stored, replace the settling steps of
        their index (:func:`~agentroute.memory.settle.replace_settled`), so each call is charged
        once. Returns how many settling steps were replaced now."""
        return _replace_settled(self._writer, self.engine, self._lock, list(task_ids))

    def save_router_state(self, router: str, state: dict[str, Any]) -> None:
        """Written at once (not batched): a state is saved rarely and read back right after.

        ``state`` must be a mapping (a list was stored, and every load of it then raised)."""
        if self.closed:
            raise MemoryStoreError(f"memory {self.url} is closed")
        if not isinstance(state, Mapping):
            raise ConfigurationError(f"router state must be a dict (got {type(state).__name__})")
        with self._lock, self.engine.begin() as conn:
            queries.save_router_state(conn, router, state)

    def load_router_state(self, router: str) -> dict[str, Any] | None:
        if self.closed:
            raise MemoryStoreError(f"memory {self.url} is closed")
        with self._lock, self.engine.connect() as conn:
            return queries.load_router_state(conn, router)

    # -- export ---------------------------------------------------------------------------------
    def export_jsonl(
        self,
        path: str | Path,
        *,
        graph: str | None = None,
        status: Sequence[str] | None = None,
        since: datetime | None = None,
        with_score: bool = False,
        limit: int | None = None,
    ) -> int:
        """Write one trajectory per line (``Trajectory`` JSON); returns the number of lines.

        The filters are those of :meth:`trajectories` (default: every finished task).
        """
        where = _where(graph=graph, status=status, since=since, with_score=with_score, limit=limit)
        with self._read() as conn:
            return export.write_jsonl(queries.iter_trajectories(conn, where, limit=limit), Path(path))

    def export_parquet(
        self,
        path: str | Path,
        *,
        graph: str | None = None,
        status: Sequence[str] | None = None,
        since: datetime | None = None,
        with_score: bool = False,
        limit: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Write a flat table, one row per step joined with its task's columns; returns the rows.

        A task without steps gets one row with empty step columns. The filters are those of
        :meth:`trajectories`; ``progress(n)`` is called after each ``n`` rows written. Needs
        pyarrow (extra ``eval``).
        """
        where = _where(graph=graph, status=status, since=since, with_score=with_score, limit=limit)
        with self._read() as conn:
            return export.write_parquet(conn, where, Path(path), limit=limit, progress=progress)

    def count_tasks(
        self,
        *,
        graph: str | None = None,
        status: Sequence[str] | None = None,
        since: datetime | None = None,
        with_score: bool = False,
        limit: int | None = None,
    ) -> int:
        """How many tasks :meth:`trajectories` with these filters returns (one count query)."""
        where = _where(graph=graph, status=status, since=since, with_score=with_score, limit=limit)
        with self._read() as conn:
            n = int(conn.execute(sa.select(sa.func.count()).select_from(TASKS).where(*where)).scalar_one())
        return n if limit is None else min(n, limit)


def open_memory(url: str | None = None, **options: Any) -> SQLMemory:
    """Open the memory at ``url`` (default ``$AGENTROUTE_MEMORY`` or the local SQLite file)."""
    return SQLMemory(url, **options)

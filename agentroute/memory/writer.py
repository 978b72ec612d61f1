"""The memory's background writer: record calls enqueue, one thread commits batches.

A record call is one ``SimpleQueue.put`` (well under a microsecond); the objects are turned into
rows on the writer thread. A batch closes when it holds ``batch_size`` writes, when
``flush_interval_s`` has passed since its first write, or when someone flushes — or at once, with
whatever is queued, while the memory is not under load (fewer than :data:`LOAD_WRITES` writes committed
in the last :data:`LOAD_WINDOW_S`: a crash then loses no recorded step); it is committed in
one transaction, applied in dependency order: task upserts (on PostgreSQL a task's score is its newest
feedback's already), steps, audit events, feedback, then the scores of the tasks scored (SQLite: and
written): their newest feedback's (:data:`KEEP_FEEDBACK`). Steps, the bulk, go straight to the driver: PostgreSQL ``COPY``, SQLite
multi-row ``INSERT … VALUES (…), (…)`` statements (task upserts too on SQLite); the rest are
SQLAlchemy Core ``executemany`` statements. Never ORM objects. The writer sleeps until a batch is
due rather than waking on every write; a full batch, a flush and the stop sentinel wake it.

Failures: a lost connection or a locked database is retried with backoff for up to ``retry_s``
(30 s by default: a PostgreSQL restart or failover, while new writes wait in the queue; ``math.inf``:
until the database returns, as ``agentroute serve`` keeps the rows of the calls it answered). Two
things end the retries sooner, loudly (the batch's writes are lost, logged, and the next ``flush()``
raises them): more than ``max_pending`` writes waiting behind the batch (the bound on the memory an
outage may hold), and :meth:`BatchWriter.stop` (at most :data:`RETRY_S` more once asked, or its
``retry_s``). :meth:`BatchWriter.give_up` fails what is not yet committed at once, for a stop that
cannot wait (a SQLite lock another process keeps: a try waits the file's busy timeout, which nothing
cuts short); a try in flight that gets the lock later is rolled back, so no write is both stored and
reported lost. A batch
that fails on its data (a duplicate id, a malformed object) is split in halves recursively — the
writes of one task (its row, steps, audit events, feedback, batch item) stay together — until only
the bad writes are left out. A step never goes in without its task: when a task's first write
(``start_task``) is lost, its steps and audit events are held back with it, in that batch and in
every later one. Nor is a batch item written after its task's end (``finish_task``) was lost: the
item stays claimed, its ``on_commit`` (an ``--out`` line) is not run, and a resume's reconcile
closes the task ``interrupted`` and hands the query over, as after a crash (before: a full disk
that refused a task's end and then took its smaller item wrote a ``done`` line that the rerun wrote
again). Every lost write is logged and kept, and the next ``flush()`` raises
:class:`~agentroute.memory.errors.MemoryWriteError` with them.

Attempts (:data:`ATTEMPT`, the write-ahead record of a provider attempt) are committed at once
with whatever is queued before them (:meth:`BatchWriter.commit_soon`): the dispatcher awaits the
commit before it sends the attempt.

A batch worker (:attr:`BatchWriter.watching`, from its first claim: another worker's reconcile may
retire it while it lives) looks up, with each batch of steps and by primary key, the settling steps
that reconcile may have stored for their tasks and indexes
(:func:`~agentroute.memory.settle.settled_tasks`: one statement; any other process runs none); found
(its process was taken for dead while it lived), they are replaced in the same transaction
(:func:`~agentroute.memory.settle.replace_settled`): the call is charged once, at what it cost, from
the commit of its step on — not only from its task's finish (a multi-step task, a worker killed before
it). From then on — and once its process knows by other means that it may have been taken for dead
(:attr:`BatchWriter.replacing`, set by ``SQLMemory.taken_for_dead`` and by a lease taken back), each
batch of steps replaces its tasks' settling steps without the lookup. A task write that lands on a task a reconcile
elsewhere closed (``interrupted``: :data:`TAKEN_BACK_SQL`) tells the writer so by its upsert's
rowcount: the process's row is written all the same (the process owns its task: its status and
cost are the truth; a batch item refused after it sets the task back to ``interrupted``), and the
task's steps replace its settling ones in that transaction; only when there were some (a reconcile
elsewhere did take it for dead, not its own process stopping it earlier) is
:attr:`BatchWriter.replacing` set and a warning logged.

Batch items (:data:`BATCH_ITEM`, from :mod:`agentroute.memory.batches`) are written in the same
transaction as the task writes recorded before them, so a query is never marked finished before
its task and steps are stored; their ``on_commit`` callback runs after the commit, given the row as
stored (an item whose task lost a step is stored ``failed``, whatever outcome it was recorded with).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import UTC, datetime
from queue import Empty, SimpleQueue
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from agentroute.memory import engine as memory_engine
from agentroute.memory.codec import (
    ATTEMPT,
    AUDIT_EVENT,
    BATCH_ITEM,
    FEEDBACK_SCORE,
    FINISH,
    START,
    STEP,
    attempt_row,
    audit_row,
    json_text,
    step_row,
    task_row,
    write_task_id,
)
from agentroute.memory.errors import MemoryStoreError, MemoryWriteError, refuses_writes
from agentroute.memory.queries import latest_feedback
from agentroute.memory.settle import replace_settled, settled_tasks
from agentroute.memory.tables import ATTEMPTS, AUDIT, BATCH_ITEMS, FEEDBACK, STEPS, TASKS, UTCDateTime

__all__ = [
    "BatchWriter",
    "BatchItemWrite",
    "Op",
    "START",
    "FINISH",
    "STEP",
    "AUDIT_EVENT",
    "FEEDBACK_SCORE",
    "BATCH_ITEM",
    "ATTEMPT",
]

log = logging.getLogger("agentroute.memory")

Op = tuple[str, Any]


class _Withdrawn(Exception):
    """Rolls back a transaction holding an attempt withdrawn while its statements ran."""


class _GivenUp(BaseException):
    """Rolls back the try in flight of a writer whose writes were given up (:meth:`BatchWriter.give_up`)
    and ends its thread (a ``BaseException``: no retry nor split of the batch catches it)."""


class BatchItemWrite:
    """The outcome of one batch item: ``row`` (batch_id, query_id, worker, status, task_id,
    cost_usd, error) and an optional ``on_commit`` callback, run on the writer thread once stored,
    with the row as stored (its status and error may differ from those recorded)."""

    __slots__ = ("row", "on_commit", "refused")

    def __init__(self, row: dict[str, Any], on_commit: Callable[[dict[str, Any]], None] | None = None):
        self.row, self.on_commit = row, on_commit
        self.refused = False
        """Whether its last write found the item no longer its worker's running claim (see :func:`set_items`)."""


FINISHED_WHOLE = ("done", "budget_exhausted")
"""Task statuses a task with a step that was not stored is never written with (``failed`` instead)."""


def _missing_text(lost: int) -> str:
    return f"{lost} step(s) of this task were not stored (the memory refused them): its record is incomplete"


def _incomplete(row: dict[str, Any], lost: int) -> None:
    """A task row whose ``lost`` steps were not stored: ``failed`` rather than finished, saying why."""
    row["meta"] = {**row["meta"], "agentroute_missing_steps": lost}
    if row["status"] in FINISHED_WHOLE:
        row["status"] = "failed"
        row["meta"]["error"] = _missing_text(lost)


def _held_back(ops: list[Op], unfinished: Collection[str] = ()) -> list[tuple[str, Any, BaseException]]:
    """The failures of writes held back: of a task never stored, or the batch item of a task whose
    end was not stored (in ``unfinished``)."""
    return [(kind, payload, MemoryStoreError(_held_text(kind, payload, unfinished))) for kind, payload in ops]


def _held_text(kind: str, payload: Any, unfinished: Collection[str]) -> str:
    task_id = write_task_id(kind, payload)
    if kind == BATCH_ITEM and task_id in unfinished:
        return f"the end of task {task_id} was not stored; its {kind} is held back (the query stays to do)"
    return f"task {task_id} was never stored; its {kind} is held back"


RETRY_S = 30.0
"""How long a batch that failed on its connection (or a locked database) is retried before its
writes are given up as lost: long enough for a PostgreSQL server to restart."""


STUCK_S = 30.0
"""How long :meth:`BatchWriter.stop` waits, past its retries, for a try the database never answers (a
connection that hangs, a server process stopped) before it gives up the writes it holds, loudly."""


def retry_delays(retry_s: float) -> Iterator[float]:
    """The waits before each retry: 0.05 s, doubling up to 2 s, while less than ``retry_s`` passed."""
    end = time.monotonic() + retry_s
    delay = 0.05
    while (left := end - time.monotonic()) > 0:
        yield min(delay, left)
        delay = min(delay * 2, 2.0)


LOAD_WINDOW_S = 0.05
LOAD_WRITES = 16
"""Under load, writes are batched: when fewer than :data:`LOAD_WRITES` writes were committed in
the last :data:`LOAD_WINDOW_S` (under ~300 writes a second: any real provider's pace), the writer
commits what is queued at once instead of at its batch's ``flush_interval_s`` deadline, so a process
killed right after recording a step (``kill -9``, the OOM killer, a lost host) has stored it; above
that pace a commit per write would cost more than the writes, and a batch waits for its deadline."""


class _Flush:
    __slots__ = ("done", "then")

    def __init__(self, then: Callable[[], None] | None = None) -> None:
        self.done = threading.Event()
        self.then = then  # called on the writer thread once the writes before it are committed (or failed)


_STOP = object()


#: What a task upsert overwrites: everything but its id and creation time.
TASK_UPDATES = tuple(c.name for c in TASKS.columns if c.name not in ("id", "created_at"))

KEPT_SCORE_SQL = "COALESCE(excluded.score, tasks.score)"
"""The score a task upsert leaves on a stored row: the upsert's, else the one stored (a task's end
or resume that brings none keeps it). Feedback wins over it: on PostgreSQL the upsert's own score is
its task's newest feedback's when it has one (:data:`NEWEST_FEEDBACK_SCORE`); on SQLite
:data:`KEEP_FEEDBACK` applies it after, in the same transaction."""

NEWEST_FEEDBACK_SCORE = sa.func.coalesce(
    latest_feedback(FEEDBACK.c.score, sa.bindparam("b_id", type_=TASKS.c.id.type)),
    sa.bindparam("b_score", type_=TASKS.c.score.type),
)
"""A PostgreSQL task upsert's score: its task's newest feedback's, else its own. Run behind the
gate (:data:`FEEDBACK_GATE`), the statement sees every feedback given (none is in flight), so a
transaction that writes only tasks needs no :data:`KEEP_FEEDBACK` statement (a round trip)."""

KEEP_FEEDBACK = (
    sa.update(TASKS)
    .where(
        TASKS.c.id.in_(
            sa.select(FEEDBACK.c.task_id).where(FEEDBACK.c.task_id.in_(sa.bindparam("ids", expanding=True)))
        ),
        TASKS.c.score.is_distinct_from(latest_feedback(FEEDBACK.c.score)),
    )
    .values(score=latest_feedback(FEEDBACK.c.score))
)
"""The one rule of a task's score: its newest feedback's (by the time it was given, whichever
process commits last), over the score its process gives (a human's or a metric's judgement wins,
whichever lands first). Run on every transaction that writes feedback, for its tasks, and on SQLite
on every one that writes task rows too (``ids``; on PostgreSQL their upsert applies the rule itself:
:data:`NEWEST_FEEDBACK_SCORE`): a feedback stored before its task's row (the task still running, or
ended and not yet flushed, in another process) scores it when the row arrives.

On PostgreSQL (read committed) the statement sees what was committed before it started, not what
transactions in flight will commit, so those that write tasks or feedback pass a gate first
(:data:`FEEDBACK_GATE`): shared for task rows (they run side by side), exclusive for feedback. A
feedback's transaction thus starts once every task write in flight has committed, and a task write
once every feedback in flight has, and this statement (or the upsert), run after the gate, sees them. Without it a
task's end that waited for a feedback's row lock wrote its own score over the feedback (64 of 1,000
concurrent ends), an older feedback committed last won, and a feedback committed while its task's
first row was in flight scored nothing. SQLite runs one writer at a time, which reads the latest commit."""

FEEDBACK_GATE = (0x61677274, 0x66656564)
"""The gate's advisory lock ("agrt", "feed"): PostgreSQL's two-key space, apart from the claims' one-key locks."""
_GATE_SHARED = sa.text("SELECT pg_advisory_xact_lock_shared({}, {})".format(*FEEDBACK_GATE))
_GATE_EXCLUSIVE = sa.text("SELECT pg_advisory_xact_lock({}, {})".format(*FEEDBACK_GATE))

TAKEN_BACK_SQL = "tasks.status = 'interrupted' AND excluded.status <> 'running'"
"""When a task upsert may find its row closed by another process: a finish landing on an
``interrupted`` row (a reconcile elsewhere that took its process for dead while it lived — or its
own process that stopped it before; a resume, which writes ``running``, is neither). The writer's
upsert leaves such rows alone, and its rowcount tells: the common path needs no query to know; the
rare one tells the two apart by the reconcile's settling steps (:meth:`BatchWriter._take_back`)."""


def task_upsert(dialect: str, *, guarded: bool = False) -> sa.Insert:
    """``INSERT … ON CONFLICT (id) DO UPDATE`` for ``tasks`` (keeps ``created_at``); ``guarded``:
    not over a row closed by another process (:data:`TAKEN_BACK_SQL`), its result's ``rowcount``
    the rows written, summed over an ``executemany`` (SQLAlchemy keeps no INSERT's rowcount unless
    told: it read -1, so every write of tasks on PostgreSQL ran the rare path's query)."""
    stmt: postgresql.Insert | sqlite.Insert = (
        postgresql.insert(TASKS).values(score=NEWEST_FEEDBACK_SCORE)
        if dialect == "postgresql"
        else sqlite.insert(TASKS)
    )
    upsert = stmt.on_conflict_do_update(
        index_elements=[TASKS.c.id],
        set_={
            name: sa.literal_column(KEPT_SCORE_SQL) if name == "score" else stmt.excluded[name]
            for name in TASK_UPDATES
        },
        where=sa.text(f"NOT ({TAKEN_BACK_SQL})") if guarded else None,
    )
    return upsert.execution_options(preserve_rowcount=True) if guarded else upsert


def _sqlite_time(value: datetime) -> str:
    """A datetime as SQLAlchemy's SQLite ``DATETIME`` stores it (naive UTC, always microseconds)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")


#: Most values bound in one SQLite statement (SQLite's own limit is 32,766 since 3.32).
SQLITE_MAX_VALUES = 30_000


def bulk_insert(
    conn: Connection,
    table: sa.Table,
    rows: list[dict[str, Any]],
    *,
    update: tuple[str, ...] = (),
    where: str = "",
) -> int:
    """Insert many rows on the driver directly, inside the connection's transaction.

    PostgreSQL: ``COPY … FROM STDIN`` (about 2.5× ``executemany``). SQLite: multi-row ``INSERT …
    VALUES (…), (…)`` statements of up to :data:`SQLITE_MAX_VALUES` values, with rows already in
    storage form. One statement per chunk rather than ``executemany``'s one step per row matters
    beyond SQLite's own speed: the driver releases the GIL around every step, and each hand-off
    to and from the event-loop thread costs that thread more CPU than the row itself.
    ``update`` (SQLite only) names the columns an ``ON CONFLICT (id)`` upsert overwrites (``tasks.score``
    by :data:`KEPT_SCORE_SQL`), ``where`` (SQL) the rows it overwrites. Returns the rows inserted or overwritten (SQLite; ``COPY``: all).
    Driver errors are raised as SQLAlchemy's (``IntegrityError``, ``OperationalError``…).
    """
    dialect = conn.dialect
    quote = dialect.identifier_preparer.quote
    names = [c.name for c in table.columns]
    times = [i for i, c in enumerate(table.columns) if isinstance(c.type, UTCDateTime)]
    jsons = [i for i, c in enumerate(table.columns) if isinstance(c.type, sa.JSON)]
    postgres = dialect.name == "postgresql"
    to_time: Callable[[datetime], Any] = (
        (lambda v: v if v.tzinfo else v.replace(tzinfo=UTC)) if postgres else _sqlite_time
    )
    if postgres and update:
        raise ValueError("bulk_insert upserts on SQLite only; use an INSERT … ON CONFLICT statement")
    values = []
    for row in rows:
        record = [row[name] for name in names]
        for i in times:
            if record[i] is not None:
                record[i] = to_time(record[i])
        for i in jsons:
            if record[i] is not None and not isinstance(record[i], str):  # str: JSON text already
                record[i] = json_text(record[i])
        values.append(record)
    dbapi = dialect.loaded_dbapi
    raw: Any = conn.connection.driver_connection
    head = f"{quote(table.name)} ({', '.join(quote(n) for n in names)})"
    sql = f"COPY {head} FROM STDIN"
    try:
        if postgres:
            with raw.cursor() as cur, cur.copy(sql) as copy:
                for record in values:
                    copy.write_row(record)
            return len(values)
        marks = f"({', '.join('?' * len(names))})"
        conflict = ""
        if update:
            kept = {"score": KEPT_SCORE_SQL} if table is TASKS else {}
            sets = ", ".join(f"{quote(n)} = {kept.get(n, f'excluded.{quote(n)}')}" for n in update)
            conflict = f" ON CONFLICT ({quote('id')}) DO UPDATE SET {sets}" + (
                f" WHERE {where}" if where else ""
            )
        most = min(
            SQLITE_MAX_VALUES, raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        )  # older builds allow 999
        per_statement = max(1, most // len(names))
        written = 0
        for first in range(0, len(values), per_statement):
            chunk = values[first : first + per_statement]
            sql = f"INSERT INTO {head} VALUES {', '.join([marks] * len(chunk))}{conflict}"
            written += raw.execute(sql, [value for record in chunk for value in record]).rowcount
        return written
    except dbapi.Error as exc:
        shown = sql if len(sql) <= 300 else f"{sql[:300]} … ({len(values)} rows)"
        raise sa.exc.DBAPIError.instance(shown, None, exc, dbapi.Error) from exc


def set_items(conn: Connection, items: list[BatchItemWrite]) -> None:
    """Write batch items' outcomes, each only while the item is still its worker's running claim.

    An outcome refused (its worker was retired while alive: a reconcile elsewhere took it for dead
    and handed the item over, to be claimed again) is the late end of a task that the reconcile
    closed: the task stays ``interrupted`` (its steps and cost as its process stored them), so
    the query's rerun continues it under the budget it left; an item still waiting for its rerun
    gets the outcome's cost; ``on_commit`` is not run (no ``--out`` line for it)."""
    now = datetime.now(UTC)
    params = [{f"b_{k}": v for k, v in (item.row | {"updated_at": now}).items()} for item in items]
    if conn.execute(_SET_ITEM, params).rowcount == len(items):  # one statement: none refused, the common case
        return
    refused = []
    for item, one in zip(items, params, strict=True):  # again one by one (those written find themselves)
        item.refused = conn.execute(_SET_ITEM, one).rowcount == 0
        if item.refused:
            refused.append(item.row)
    for row in refused:
        if isinstance(row.get("task_id"), str):
            conn.execute(
                sa.update(TASKS)
                .where(TASKS.c.id == row["task_id"], TASKS.c.status != "running")
                .values(status="interrupted")
            )
        conn.execute(
            sa.update(BATCH_ITEMS)
            .where(BATCH_ITEMS.c.batch_id == row["batch_id"], BATCH_ITEMS.c.query_id == row["query_id"],
                   BATCH_ITEMS.c.worker == row["worker"], BATCH_ITEMS.c.status == "interrupted")
            .values(cost_usd=row["cost_usd"], updated_at=now)
        )  # fmt: skip


_SET_ITEM = (
    sa.update(BATCH_ITEMS)
    .where(
        BATCH_ITEMS.c.batch_id == sa.bindparam("b_batch_id"),
        BATCH_ITEMS.c.query_id == sa.bindparam("b_query_id"),
        BATCH_ITEMS.c.worker == sa.bindparam("b_worker"),  # a claim taken over by another worker wins
        # and one a reconcile handed over (interrupted) is no longer its own; the same outcome again
        # (a batch whose COMMIT reply was lost, committed again) finds it written
        sa.or_(BATCH_ITEMS.c.status == "running", BATCH_ITEMS.c.task_id == sa.bindparam("b_task_id")),
    )
    .values(
        status=sa.bindparam("b_status"),
        task_id=sa.bindparam("b_task_id"),
        cost_usd=sa.bindparam("b_cost_usd"),
        error=sa.bindparam("b_error"),
        updated_at=sa.bindparam("b_updated_at"),
    )
)


class BatchWriter:
    """One daemon thread committing queued writes in batches (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        *,
        batch_size: int,
        flush_interval_s: float,
        lock: contextlib.AbstractContextManager[Any] | None = None,
        name: str = "agentroute-memory-writer",
        retry_s: float = RETRY_S,
        prompt: bool = True,
        lease: Callable[[], bool] | None = None,
        max_pending: int | None = None,
    ) -> None:
        self.engine, self.batch_size, self.flush_interval_s = engine, batch_size, flush_interval_s
        self.prompt = prompt
        self.retry_s = retry_s
        self.max_pending = max_pending
        """While a batch is retried: the most writes that may wait behind it before it is given up."""
        self._stop_asked: float | None = None  # time.monotonic() of stop(): the retries end _stop_grace later
        self._stop_grace = RETRY_S
        self.committed = 0
        self.batches = 0
        self._lease = lease  # called before task rows are built: whether the process holds its lease here
        self.replacing = (
            False  # what it learnt: it was taken for dead (_replace, taken_for_dead, a lease taken back)
        )
        """Whether each batch of steps replaces every settling step of its tasks, without a lookup: its process was
        taken for dead while it lived. Wins over :attr:`watching`."""
        self.watching = False  # what it is: a batch worker, retirable while alive (set by its first claim)
        """Whether each batch of steps looks up the settling steps of its own indexes (:func:`~agentroute.memory.settle.settled_tasks`)
        and replaces those found. Apart from :attr:`replacing`: each is only ever set ``True``, by the thread that
        learns it; one three-state attribute would need a lock never to move back."""
        self.stepped: set[str] | None = set() if lease is not None else None
        """With a lease (PostgreSQL): the tasks of the steps committed since it was last found held
        (emptied then): those whose calls a reconcile elsewhere may have settled while it was lost."""
        self.refusing = False
        """Whether the database refuses writes now (a batch is being retried)."""
        self.refusing_since: float | None = None
        """``time.monotonic()`` of the first failure of the batch being retried (``None``: not refusing)."""
        self.retry_error: BaseException | None = None
        """The last error of the batch being retried (``None``: not refusing)."""
        self.refused = 0
        """Writes lost because the database refused them (not for their data); ``refusal``: the last error."""
        self.refusal: BaseException | None = None
        self._lock = lock or contextlib.nullcontext()
        self._queue: SimpleQueue[Any] = SimpleQueue()
        self._wake = threading.Event()  # set after a flush marker or the stop sentinel is queued
        self.put: Callable[[Op], None] = self._queue.put
        """Enqueue one ``(kind, payload)`` write; the hot path."""
        self.qsize: Callable[[], int] = self._queue.qsize
        self._upsert = task_upsert(engine.dialect.name, guarded=True)
        self._upsert_all = task_upsert(engine.dialect.name)
        self._errors: list[tuple[str, Any, BaseException]] = []
        self._errors_lock = threading.Lock()
        self._lost_tasks: set[str] = set()  # tasks whose first write was lost: their steps are held back
        self._unfinished: set[str] = set()  # tasks whose last end was lost: their batch items are held back
        self._missing: dict[str, int] = {}  # task id → its steps lost: never stored as finished whole
        self._committing = False  # the batch being committed has sent its COMMIT
        self._attempt_ids: dict[int, str] = {}  # id(attempt) → its row's id, the same in every try of a batch
        self._writing: list[Op] = []  # the batch being written (given up by stop() if its try hangs)
        self._withdrawn: dict[int, Any] = {}  # id(payload) → payload: writes to leave out (withdraw())
        self._markers: list[_Flush] = []  # the flushes waiting on the batch being written
        self._stored_ids: set[int] = set()  # id(payload) of its writes committed (a batch split on its data)
        self._given_up: BaseException | None = None  # give_up()'s error: nothing more is committed
        self._ending = (
            threading.Lock()
        )  # a commit and give_up(), one at a time: no write both stored and failed
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- waiting --------------------------------------------------------------------------------
    def wake(self) -> None:
        """Commit what is queued now instead of at the batch deadline (a full batch)."""
        self._wake.set()

    def drain(self) -> None:
        """Block until every write enqueued before this call is committed (or has failed)."""
        if self._given_up is not None:  # nothing is committed any more: what was not is failed
            self.give_up(self._given_up, logged=False, wait_s=0)  # raised by the flush, as the first were
            return
        marker = _Flush()
        self._queue.put(marker)
        self._wake.set()
        while not marker.done.wait(0.5):
            if self._given_up is not None:
                return
            if not self._thread.is_alive():
                raise MemoryStoreError("the memory writer thread has stopped; writes cannot be committed")

    def commit_soon(self, op: Op, then: Callable[[], None]) -> None:
        """Enqueue ``op`` and commit it now, without waiting for its batch; ``then()`` runs on the
        writer thread once it is committed (or has failed: the next :meth:`raise_errors` says so)."""
        if not self._thread.is_alive():
            raise MemoryStoreError("the memory writer thread has stopped; writes cannot be committed")
        self._queue.put(op)
        self._queue.put(_Flush(then))
        self._wake.set()

    def withdraw(self, payload: Any) -> None:
        """Leave ``payload``'s write out of the batch that holds it, unless already committed (an
        attempt given up before it was sent: its write-ahead record would charge its worst case)."""
        self._withdrawn[id(payload)] = payload

    def raise_errors(self) -> None:
        """Raise :class:`MemoryWriteError` for writes lost since the last call, if any."""
        with self._errors_lock:
            errors, self._errors = self._errors, []
        if errors:
            raise MemoryWriteError(errors)

    def stop(self, retry_s: float | None = None) -> None:
        """Commit everything enqueued, then end the thread; a batch the database refuses is retried
        ``retry_s`` more at most (default :data:`RETRY_S`)."""
        if self._thread.is_alive():
            if self._stop_asked is None:
                self._stop_asked, self._stop_grace = time.monotonic(), RETRY_S if retry_s is None else retry_s
            self._queue.put(_STOP)
            self._wake.set()
            if (
                threading.current_thread() is not self._thread and self._given_up is None
            ):  # a finalizer may run on it
                self._thread.join(max(self._stop_grace, 0.0) + STUCK_S)
                if self._thread.is_alive():  # the try hangs: the database never answers (was: waited forever)
                    self.give_up(MemoryStoreError(
                        f"not stored: the database did not answer the memory's writer within {STUCK_S:g}s of its stop"
                    ), wait_s=0)  # fmt: skip
        if self._given_up is not None:
            self.give_up(
                self._given_up, logged=False, wait_s=0
            )  # the writes recorded since: raised by close()

    def give_up(self, error: BaseException, *, logged: bool = True, wait_s: float | None = None) -> int:
        """Stop committing now: the writes not yet committed — the batch being written and those
        queued — are failed with ``error`` (raised by the next :meth:`raise_errors`; ``logged``: and
        logged as an error), flushes waiting on them are let go, and the try in flight, if its
        database answers after all, is rolled back. A commit under way is waited for ``wait_s`` at
        most (``None``: until it ends): past that (a ``COMMIT`` the database never answers) its
        batch is failed too, stored or not. Returns how many writes were given up."""
        ended = self._ending.acquire(timeout=-1 if wait_s is None else wait_s)
        try:
            self._given_up = error
            markers, self._markers = self._markers, []
            held = [
                op for op in self._writing if id(op[1]) not in self._stored_ids
            ]  # a split batch's parts stored
            self._writing = []
        finally:
            if ended:
                self._ending.release()
        held = [
            op for op in [*held, *self._take_rest(markers)] if self._withdrawn.get(id(op[1])) is not op[1]
        ]
        self._queue.put(_STOP)
        self._wake.set()
        self._fail([(kind, payload, error) for kind, payload in held], logged=logged)
        self._release(markers)
        return len(held)

    # -- the thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        queue, stop = self._queue, False
        recent: deque[tuple[float, int]] = deque()  # (commit time, writes) of the last LOAD_WINDOW_S
        load = 0
        while not stop:
            item = queue.get()
            now = time.monotonic()
            while recent and recent[0][0] < now - LOAD_WINDOW_S:
                load -= recent.popleft()[1]
            batch: list[Op] = []
            markers: list[_Flush] = []
            batching = load >= LOAD_WRITES or not self.prompt
            deadline = now + (self.flush_interval_s if batching else 0.0)  # 0: commit what is queued now
            while True:
                if item is _STOP:
                    stop = True
                    batch.extend(self._take_rest(markers))
                    break
                if isinstance(item, _Flush):
                    markers.append(item)
                    deadline = 0.0  # a marker asks for a commit now: what follows it waits for no batch
                    try:  # what is queued behind it shares the commit (concurrent attempts' write-aheads)
                        item = queue.get_nowait()
                    except Empty:
                        break
                    continue
                batch.append(item)
                if len(batch) >= self.batch_size:
                    break
                try:
                    item = queue.get_nowait()
                except Empty:
                    # Sleep until the batch is due rather than waking on every write (a wake-up per
                    # write costs both threads more CPU than the write itself); flush and stop wake it.
                    wait = deadline - time.monotonic()
                    if wait > 0 and self._wake.wait(wait):
                        self._wake.clear()
                    try:
                        item = queue.get_nowait()
                    except Empty:
                        break
            with self._ending:
                given_up = self._given_up
                if given_up is None:
                    self._writing, self._markers, self._stored_ids = batch, markers, set()
            if given_up is not None:  # taken from the queue as give_up() emptied it: failed the same way
                self._fail([(kind, payload, given_up) for kind, payload in batch], logged=False)
                self._release(markers)
                return
            try:
                if batch:
                    self._write(batch)
                    recent.append((time.monotonic(), len(batch)))
                    load += len(batch)
            except _GivenUp:
                return  # its writes and flushes were given up by give_up()
            except Exception as exc:  # a bug here must not kill the thread nor drop the batch silently
                log.exception("memory: writer failed")
                self._fail([(kind, payload, exc) for kind, payload in batch])
            finally:
                with self._ending:
                    markers = markers if self._given_up is None else []  # else give_up() let them go
                    self._writing, self._markers = [], []
                if self._withdrawn:
                    for _, payload in batch:
                        self._withdrawn.pop(id(payload), None)
                self._release(markers)

    @staticmethod
    def _release(markers: list[_Flush]) -> None:
        """Let go who waits on these flushes (their writes are committed or failed)."""
        for marker in markers:
            marker.done.set()
            if marker.then is not None:
                marker.then()

    def _take_rest(self, markers: list[_Flush]) -> list[Op]:
        rest: list[Op] = []
        with contextlib.suppress(Empty):
            while True:
                item = self._queue.get_nowait()
                if isinstance(item, _Flush):
                    markers.append(item)
                elif item is not _STOP:
                    rest.append(item)
        return rest

    def _write(self, batch: list[Op]) -> None:
        if self._lost_tasks or self._unfinished:
            batch = self._hold_back(batch)
            if not batch:
                return
        error: BaseException | None = None
        first = 0.0  # time.monotonic() of the first failure
        delay = 0.05
        unsure = False  # a try lost its connection while committing: the batch may be stored
        while True:
            try:
                if unsure and self._stored(batch):
                    self._committed(batch)
                else:
                    unsure = False
                    self._commit(batch)
                if error is not None:
                    log.warning("memory: writes committed again after %s", type(error).__name__)
                self._refusing(None)
                self._attempt_ids.clear()
                return
            except (OperationalError, InterfaceError) as exc:  # connection lost, database locked
                if self._given_up is not None:
                    raise _GivenUp from exc
                unsure = unsure or self._committing
                if error is None:
                    first = time.monotonic()
                    log.warning("memory: %s; retrying %s", exc,
                                "until it answers" if self.retry_s == math.inf else f"for up to {self.retry_s:g}s")  # fmt: skip
                error = exc
                self._refusing(exc, first)
                left = self._retry_left(first, len(batch))
                if left <= 0:
                    break
                time.sleep(min(delay, left))
                delay = min(delay * 2, 2.0)
            except Exception:
                self._refusing(None)
                self._bisect(self._groups(batch))
                self._attempt_ids.clear()
                return
        self._fail([(kind, payload, error) for kind, payload in batch])
        self._refusing(None)
        self._attempt_ids.clear()

    def _stored(self, batch: list[Op]) -> bool:
        """Whether a batch whose commit lost its connection was stored all the same (the reply to
        ``COMMIT`` lost, not the commit): one of its rows tells, a transaction being whole. ``False``
        for a batch of task upserts and batch item updates alone (committed again harmlessly)."""
        for kind, payload in batch:
            if (where := self._row_of(kind, payload)) is not None:
                table, clause = where
                with self._lock, self.engine.connect() as conn:
                    return (
                        conn.execute(
                            sa.select(sa.literal(1)).select_from(table).where(clause).limit(1)
                        ).first()
                        is not None
                    )
        return False

    def _row_of(self, kind: str, payload: Any) -> tuple[sa.Table, sa.ColumnElement[bool]] | None:
        """The table and clause that find the row a write inserts (``None``: an upsert or update,
        or a malformed payload): by its id, or a feedback row by its task, source and time."""
        if kind == STEP or kind == AUDIT_EVENT:
            table, key = (STEPS if kind == STEP else AUDIT), getattr(payload, "id", None)
        elif kind == ATTEMPT:
            table, key = ATTEMPTS, self._attempt_ids.get(id(payload))
        elif (
            kind == FEEDBACK_SCORE
            and isinstance(payload, dict)
            and {"task_id", "source", "created_at"} <= payload.keys()
        ):
            columns = FEEDBACK.c
            return FEEDBACK, sa.and_(
                columns.task_id == payload["task_id"],
                columns.source == payload["source"],
                columns.created_at == payload["created_at"],
            )
        else:
            return None
        return None if key is None else (table, table.c.id == key)

    def _refusing(self, error: BaseException | None, since: float = 0.0) -> None:
        self.refusing, self.retry_error = error is not None, error
        self.refusing_since = since if error is not None else None

    def _retry_left(self, first: float, size: int) -> float:
        """Seconds a failing batch is still retried (≤ 0: give it up): ``retry_s`` since its first
        failure, :data:`RETRY_S` after :meth:`stop`, none once over ``max_pending`` writes wait."""
        left = first + self.retry_s - time.monotonic()
        if (stopping := self._stop_left()) is not None:
            left = min(left, stopping)
        if self.max_pending is not None and (waiting := self.qsize()) > self.max_pending:
            log.error(
                "memory: %d writes wait behind a batch the database refuses (more than max_pending=%d): "
                "its %d write(s) are given up", waiting, self.max_pending, size,
            )  # fmt: skip
            return 0.0
        return left

    def _stop_left(self) -> float | None:
        """Seconds a stopping writer still retries refused writes (``None``: not stopping)."""
        return None if self._stop_asked is None else self._stop_asked + self._stop_grace - time.monotonic()

    def _bound_lock_wait(self, conn: Connection) -> None:
        """While stopping, a SQLite try waits for a locked file only what is left of the stop's
        retries (at least 0.1 s), not the busy timeout's 30 s: each batch queued behind a lock held
        by another process made Ctrl-C wait 30 s more (87 s for three)."""
        if conn.dialect.name == "sqlite" and (left := self._stop_left()) is not None:
            wait_ms = min(memory_engine.SQLITE_BUSY_TIMEOUT_MS, max(100, int(left * 1000)))
            conn.exec_driver_sql(f"PRAGMA busy_timeout={wait_ms}")

    def _hold_back(self, batch: list[Op]) -> list[Op]:
        """Leave out the writes of tasks whose first write was lost (a step without its task), and the
        batch items of tasks whose last end was lost and is not written again before them: a query is
        never marked ended (nor its ``--out`` line written) while its task's stored row says ``running``;
        the item stays claimed, and a resume's reconcile hands it over as after a crash."""
        kept, held = [], []
        ended: set[str | None] = set()  # tasks this batch ends again, before their items
        for kind, payload in batch:
            task_id = write_task_id(kind, payload)
            if kind == FINISH:
                ended.add(task_id)
            if (kind != START and task_id in self._lost_tasks) or (
                kind == BATCH_ITEM and task_id in self._unfinished and task_id not in ended
            ):
                held.append((kind, payload))
            else:
                kept.append((kind, payload))
        self._fail(_held_back(held, self._unfinished))
        return kept

    @staticmethod
    def _groups(batch: list[Op]) -> list[list[Op]]:
        """The batch's writes grouped by task, in first-seen order (a task's writes stay in order)."""
        groups: dict[Any, list[Op]] = {}
        for i, (kind, payload) in enumerate(batch):
            task_id = write_task_id(kind, payload)
            groups.setdefault(task_id if task_id is not None else ("op", i), []).append((kind, payload))
        return list(groups.values())

    def _bisect(self, groups: list[list[Op]]) -> None:
        """Commit the good tasks of a batch that failed on its data; record the bad writes."""
        if len(groups) == 1:
            self._commit_group(groups[0])
            return
        half = len(groups) // 2
        for part in (groups[:half], groups[half:]):
            try:
                self._commit([op for group in part for op in group])
            except Exception:
                self._bisect(part)

    def _commit_group(self, group: list[Op]) -> None:
        """One task's writes failed together: store its row first, then what of the rest goes in."""
        try:
            self._commit(group)
            return
        except Exception:
            pass
        rows = [op for op in group if op[0] in (START, FINISH)]
        rest = [op for op in group if op[0] not in (START, FINISH)]
        task_id = write_task_id(*group[0])
        missing = self._missing.get(task_id, 0) if task_id is not None else 0
        if rows:
            try:
                self._commit(rows)
            except Exception as exc:
                self._fail([(kind, payload, exc) for kind, payload in rows])
                if any(kind == START for kind, _ in rows):  # the task row may not exist: hold its steps back
                    self._fail(_held_back(rest))
                    return
                rest = self._hold_back(rest)  # its end lost: its batch item too
        self._split(rest)
        if (
            task_id is not None and rows and self._missing.get(task_id, 0) > missing
        ):  # stored whole before the loss
            try:
                self._commit(rows)  # again: not finished whole now
            except Exception as exc:  # noqa: BLE001 - recorded like any lost write
                self._fail([(kind, payload, exc) for kind, payload in rows])

    def _split(self, ops: list[Op]) -> None:
        if not ops:
            return
        try:
            self._commit(ops)
            return
        except Exception as exc:
            if len(ops) == 1:
                self._fail([(ops[0][0], ops[0][1], exc)])
                return
        half = len(ops) // 2
        self._split(ops[:half])
        self._split(ops[half:])

    def _fail(self, failures: list[tuple[str, Any, BaseException]], *, logged: bool = True) -> None:
        if not failures:
            return
        if logged:  # the error's own line: counts, kinds, the tasks and the first cause
            log.error("%s; the next flush() raises", MemoryWriteError(failures))
        refused = [exc for _, _, exc in failures if refuses_writes(exc)]
        if refused:
            self.refusal = refused[-1]
            self.refused += len(refused)
        with self._errors_lock:
            self._errors.extend(failures)
            self._lost_tasks.update(
                task_id
                for kind, payload, _ in failures
                if kind == START and (task_id := write_task_id(kind, payload))
            )
            self._unfinished.update(
                task_id
                for kind, payload, _ in failures
                if kind == FINISH and (task_id := write_task_id(kind, payload))
            )
        for kind, payload, _ in failures:
            if kind == STEP and (task_id := write_task_id(kind, payload)) is not None:
                self._missing[task_id] = self._missing.get(task_id, 0) + 1

    def _commit(self, batch: list[Op]) -> None:
        latest: dict[str, tuple[Any, bool]] = {}  # task id → (task, finished): one row per task
        steps: list[dict[str, Any]] = []
        audits: list[dict[str, Any]] = []
        feedback: list[dict[str, Any]] = []
        items: list[BatchItemWrite] = []
        attempts: list[dict[str, Any]] = []
        decisions: dict[int, tuple[Any, str]] = {}  # interned decisions are encoded once a batch

        def decision_json(decision: Any) -> str:
            hit = decisions.get(id(decision))
            if hit is None or hit[0] is not decision:
                hit = decisions[id(decision)] = (decision, json_text(decision))
            return hit[1]

        for kind, payload in batch:
            if kind == STEP:
                steps.append(step_row(payload, decision_json))
            elif kind == START or kind == FINISH:
                latest[payload.id] = (payload, kind == FINISH)  # the last write of a task wins
            elif kind == AUDIT_EVENT:
                audits.append(audit_row(payload))
            elif kind == FEEDBACK_SCORE:
                feedback.append(payload)
            elif kind == BATCH_ITEM:
                items.append(payload)
            elif kind == ATTEMPT:
                if self._withdrawn.get(id(payload)) is payload:
                    continue
                row = attempt_row(payload)
                row["id"] = self._attempt_ids.setdefault(id(payload), row["id"])  # a retry finds it by it
                attempts.append(row)
            else:
                raise ValueError(f"unknown memory write kind {kind!r}")
        lease = bool(latest) and self._lease is not None and self._lease()
        tasks = {
            task_id: task_row(task, finished=finished, lease=lease)
            for task_id, (task, finished) in latest.items()
        }
        if self._missing:
            for task_id, row in tasks.items():
                if task_id in self._missing:
                    _incomplete(row, self._missing[task_id])
            for item in items:
                if (lost := self._missing.get(str(item.row.get("task_id")))) and item.row.get(
                    "status"
                ) in FINISHED_WHOLE:
                    item.row = {**item.row, "status": "failed", "error": _missing_text(lost)}
        self._committing = False
        try:
            with self._lock, self.engine.connect() as conn, conn.begin():
                self._bound_lock_wait(conn)
                self._execute(conn, tasks, steps, audits, feedback)
                if attempts:
                    conn.execute(ATTEMPTS.insert(), attempts)
                    if any(kind == ATTEMPT and self._withdrawn.get(id(p)) is p for kind, p in batch):
                        raise _Withdrawn  # while its statements waited (a lock): rolled back
                if items:
                    set_items(conn, items)
                with self._ending:  # stored, or given up: never both
                    if self._given_up is not None:
                        raise _GivenUp
                    self._committing = True  # a connection lost from here on may have committed it
                    conn.commit()
                    if batch is self._writing:
                        self._writing = []
                    else:  # a part of it (split on its data, held back)
                        self._stored_ids.update(id(payload) for _, payload in batch)
        except _Withdrawn:
            self._commit(batch)  # again, without it
            return
        self._committing = False
        self._committed(batch)

    def _write_tasks(self, conn: Connection, rows: list[dict[str, Any]], *, guarded: bool) -> int:
        """Upsert task rows; ``guarded``: not over rows closed by another process (:data:`TAKEN_BACK_SQL`).
        Returns the rows written."""
        if conn.dialect.name == "sqlite":
            return bulk_insert(
                conn,
                TASKS,
                rows,
                update=TASK_UPDATES,
                where=TAKEN_BACK_SQL.join(("NOT (", ")")) if guarded else "",
            )
        rows = [
            {**row, "b_id": row["id"], "b_score": row["score"]} for row in rows
        ]  # NEWEST_FEEDBACK_SCORE's
        return int(conn.execute(self._upsert if guarded else self._upsert_all, rows).rowcount)

    def _take_back(self, conn: Connection, tasks: dict[str, dict[str, Any]]) -> None:
        """Write the rows of ``tasks`` the guarded upsert left (stored ``interrupted``: by a reconcile
        elsewhere, or by this process stopping the task earlier), their steps replacing the calls a
        reconcile settled for them. Settling steps replaced tell that a reconcile took this process
        for dead while it lived: from then on its steps replace settled calls as they are stored."""
        left = list(
            conn.execute(
                sa.select(TASKS.c.id).where(TASKS.c.id.in_(list(tasks)), TASKS.c.status == "interrupted")
            ).scalars()
        )
        if not left:
            return
        self._replace(conn, left)
        self._write_tasks(
            conn, [tasks[task_id] for task_id in left], guarded=False
        )  # its process owns the task

    def _replace(self, conn: Connection, task_ids: Iterable[str]) -> None:
        """Replace the settling steps of ``task_ids`` by this process's steps of their index: some
        replaced tell that a reconcile elsewhere took it for dead while it lived, and from then on
        each batch of steps replaces them (:attr:`replacing`)."""
        if replaced := replace_settled(conn, task_ids):
            self.replacing = True
            log.warning("memory: %d call(s) of this process's tasks were settled by a reconcile elsewhere that took it "
                        "for dead while it ran them: its steps replace them", replaced)  # fmt: skip

    def _committed(self, batch: list[Op]) -> None:
        """Count a stored batch and run its batch items' ``on_commit`` callbacks."""
        self.committed += len(batch)
        self.batches += 1
        if self._unfinished:  # ended after all: its later batch items go in
            with self._errors_lock:
                self._unfinished.difference_update(
                    write_task_id(kind, task) for kind, task in batch if kind == FINISH
                )
        for kind, item in batch:
            if (
                kind == BATCH_ITEM
                and isinstance(item, BatchItemWrite)
                and item.on_commit is not None
                and not item.refused
            ):
                try:
                    item.on_commit(item.row)
                except Exception:  # a callback's bug must not stop the writer
                    log.exception("memory: batch item callback failed")

    def _execute(
        self,
        conn: Connection,
        tasks: dict[str, dict[str, Any]],
        steps: list[dict[str, Any]],
        audits: list[dict[str, Any]],
        feedback: list[dict[str, Any]],
    ) -> None:
        if conn.dialect.name == "postgresql" and (tasks or feedback):  # see KEEP_FEEDBACK
            conn.execute(_GATE_EXCLUSIVE if feedback else _GATE_SHARED)
        written = self._write_tasks(conn, list(tasks.values()), guarded=True) if tasks else 0
        if steps:
            bulk_insert(conn, STEPS, steps)
            stepped = {row["task_id"] for row in steps}
            if self.stepped is not None:
                self.stepped.update(stepped)
            if self.replacing:
                replace_settled(conn, stepped)
            elif self.watching and (
                settled := settled_tasks(conn, steps)
            ):  # a reconcile elsewhere settled calls they store
                self._replace(conn, settled)
        if written < len(tasks):  # rows the guard left: their steps are stored above
            self._take_back(conn, tasks)
        if audits:
            conn.execute(AUDIT.insert(), audits)
        if feedback:
            conn.execute(FEEDBACK.insert(), feedback)
        scored = {f["task_id"] for f in feedback}
        if conn.dialect.name == "sqlite":  # PostgreSQL's task upsert keeps the feedback itself
            scored.update(tasks)
        if scored:
            conn.execute(KEEP_FEEDBACK, {"ids": sorted(scored)})

"""Durable batches in the memory: a work queue of queries that survives crashes and scales out.

A batch is a set of items (one query each, keyed by ``query_id``) under a ``batch_id``, stored in
``batch_items``; the processes working on it register in ``batch_workers``. Work is claimed in
the database, so any number of processes (on one machine or many, sharing one PostgreSQL
memory) finish a batch with every item run once:

- :meth:`BatchQueue.add` inserts the items (``INSERT … ON CONFLICT DO NOTHING``: adding the same
  input twice, from two processes at once, is harmless);
- :meth:`BatchQueue.claim` takes the next ``n`` claimable items in one transaction —
  ``SELECT … FOR UPDATE SKIP LOCKED`` then ``UPDATE`` on PostgreSQL (concurrent claimers skip each
  other's rows instead of waiting), ``BEGIN IMMEDIATE`` on SQLite (one writer at a time);
- an item's outcome is written by the memory's writer in the same transaction as its task's
  rows (:meth:`BatchQueue.finish`), so an item is never ``done`` before its task and steps are
  stored, and never stored twice;
- :meth:`BatchQueue.reconcile` finds workers that died without leaving (``kill -9``, a lost
  machine): on the same host by their pid, elsewhere by a heartbeat older than ``lease_s`` and, on
  PostgreSQL, a process lease (:mod:`agentroute.memory.claims`) not held: a worker whose tasks'
  process holds its lease is alive, however late its heartbeat. Their
  ``running`` tasks become ``interrupted`` with the cost of their recorded steps — a provider call
  in flight when the worker died is first stored as a failed step at its worst case and audited
  (:mod:`agentroute.memory.settle`) — and their claimed items ``interrupted`` (claimable again),
  each with the cost its tasks were charged, the settled calls included.

Heartbeats are written and judged by the database server's clock (:func:`_clock`), never a worker's:
workers on hosts whose clocks differ by minutes neither retire a live worker nor keep a dead one.

Claimable: ``pending`` and ``interrupted`` items; with ``retry_failed``, also ``failed`` items
whose worker is gone (a resumed batch reruns its failures once per resume, not once per worker).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from agentroute.memory.claims import lease_key, leases_held
from agentroute.memory.codec import storable
from agentroute.memory.errors import MemoryStoreError, MemoryWriteError, refuses_writes
from agentroute.memory.processes import PROCESS_KEY, host_key, pid_alive
from agentroute.memory.settle import settle_unsettled
from agentroute.memory.sql import SQLMemory, write_transaction
from agentroute.memory.tables import BATCH_ITEMS, BATCH_WORKERS, STEPS, TASKS, UTCDateTime
from agentroute.memory.writer import retry_delays
from agentroute.types import new_id

T = TypeVar("T")

__all__ = ["BatchQueue", "Claimed", "Reconciled", "EDITABLE", "FINISHED", "continued", "item_text"]

log = logging.getLogger("agentroute.batch")

FINISHED = ("done", "budget_exhausted")
"""Item statuses a resumed batch skips."""

EDITABLE = ("pending", "failed", "interrupted")
"""Item statuses whose query has yet to run to its end: :meth:`BatchQueue.add` gives them an edited line's content."""


def item_text(item: dict[str, Any]) -> str:
    """An item as ``batch_items.item`` stores it (compact JSON): two lines are the same query when these agree."""
    return json.dumps(item, ensure_ascii=True, separators=(",", ":"))


WORKER_OF = {
    "postgresql": "((meta -> 'agentroute_batch') ->> 'worker')",
    "sqlite": "json_extract(meta, '$.agentroute_batch.worker')",
}
"""The batch worker that ran a task, in SQL over ``tasks`` by dialect: the expression the index
``ix_tasks_batch_worker`` holds (migration 0004), so that a worker's tasks are found without a scan."""


def worker_of(dialect: str) -> sa.ColumnElement[str]:
    """:data:`WORKER_OF` for ``dialect``, as a column of ``tasks``."""
    return sa.literal_column(WORKER_OF[dialect], sa.String)


#: Key of a task's metadata naming its batch: ``{"id": batch_id, "worker": worker_id}``, and for the rerun of
#: an interrupted query ``"continues"``: the ids of its interrupted tasks.
META_KEY = "agentroute_batch"


@dataclass(frozen=True, slots=True)
class Claimed:
    """A claimed item: its query id, the item as given (a dict) and the attempt number."""

    query_id: str
    item: dict[str, Any]
    attempt: int


@dataclass(frozen=True, slots=True)
class Reconciled:
    """What :meth:`BatchQueue.reconcile` repaired."""

    workers: tuple[str, ...] = ()
    tasks: int = 0
    items: int = 0


def _now() -> datetime:
    return datetime.now(UTC)


def _clock(dialect: str) -> sa.ColumnElement[datetime]:
    """The database server's time, in SQL (PostgreSQL's ``now()``; SQLite's ``'now'`` to the
    millisecond): the one clock heartbeats are written and judged by, whatever the workers' clocks."""
    if dialect == "sqlite":
        return sa.func.strftime("%Y-%m-%d %H:%M:%f", "now", type_=UTCDateTime)
    return sa.func.now(type_=UTCDateTime)


def _insert(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


class BatchQueue:
    """The work queue of batch ``batch_id`` in ``memory``, seen by one worker (this process).

    Args:
        memory: an open :class:`SQLMemory` (SQLite or PostgreSQL).
        batch_id: the batch's name; processes using the same name share its items.
        worker_id: this worker's id (default: a fresh one).
        lease_s: a worker on another host whose heartbeat is older than this is taken as dead.
    """

    def __init__(
        self, memory: SQLMemory, batch_id: str, *, worker_id: str | None = None, lease_s: float = 60.0
    ):
        self.memory, self.batch_id = memory, batch_id
        self.worker_id = worker_id or new_id()
        self.lease_s = lease_s
        self.host, self.pid = host_key(), os.getpid()
        self.retired = False
        """Whether a claim found this worker retired by another worker's reconcile (it claims nothing more)."""

    def __repr__(self) -> str:
        return f"BatchQueue({self.batch_id!r}, worker={self.worker_id!r})"

    # -- connections ----------------------------------------------------------------------------
    def _transact(self, body: Callable[[sa.Connection], T]) -> T:
        """``body(conn)`` in one write transaction (:meth:`_tx`), run again when the connection is
        lost (a server restart) for up to the memory's ``retry_s``; then the error is raised."""
        delays = retry_delays(self.memory.retry_s)
        while True:
            try:
                with self._tx() as conn:
                    return body(conn)
            except (OperationalError, InterfaceError) as exc:
                delay = next(delays, None)
                if delay is None:
                    raise self._failed(exc) from exc
                log.warning("batch %s: %s; trying again", self.batch_id, exc.orig or exc)
                time.sleep(delay)
            except DBAPIError as exc:  # refused for good (read-only, no privilege): not retried
                if refuses_writes(exc):
                    raise self._failed(exc) from exc
                raise

    def _failed(self, exc: BaseException) -> MemoryStoreError:
        """The error a batch ends with when the memory refuses its writes (a full disk, a read-only
        file, a server that stays down): what it could not record stays to do in the batch."""
        return MemoryStoreError(
            f"batch {self.batch_id}: cannot write to the memory at {self.memory.url}: {getattr(exc, 'orig', None) or exc}; "
            "its unfinished queries stay in the batch: resume it once the database accepts writes"
        )

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        """A write transaction of the memory's (``BEGIN IMMEDIATE`` on SQLite)."""
        with write_transaction(self.memory.engine, self.memory._lock) as conn:  # noqa: SLF001 - same package
            yield conn

    def _where(self, *clauses: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
        return sa.and_(BATCH_ITEMS.c.batch_id == self.batch_id, *clauses)

    # -- items ----------------------------------------------------------------------------------
    def add(self, items: Iterable[tuple[str, dict[str, Any]]], *, chunk: int = 1000) -> int:
        """Insert ``(query_id, item)`` pairs not in the batch yet (in input order); returns how many.
        An item already in the batch and not run to its end yet (:data:`EDITABLE`) takes the content
        given, when it differs: a query line fixed after its task failed runs as fixed, not as stored."""
        now = _now()
        count = sa.select(sa.func.count()).select_from(BATCH_ITEMS).where(self._where())
        items = list(items)

        def body(conn: sa.Connection) -> int:
            before = conn.execute(count).scalar_one()
            seq = conn.execute(
                sa.select(sa.func.coalesce(sa.func.max(BATCH_ITEMS.c.seq), -1)).where(self._where())
            ).scalar_one()
            stmt = _insert(conn.dialect.name)(BATCH_ITEMS).on_conflict_do_nothing(
                index_elements=[BATCH_ITEMS.c.batch_id, BATCH_ITEMS.c.query_id]
            )
            rows: list[dict[str, Any]] = []
            for query_id, item in items:
                seq += 1
                rows.append({
                    "batch_id": self.batch_id, "query_id": query_id, "seq": seq,
                    "item": item_text(item),
                    "status": "pending", "attempts": 0, "cost_usd": 0.0, "updated_at": now,
                })  # fmt: skip
                if len(rows) >= chunk:
                    conn.execute(stmt, rows)
                    rows.clear()
            if rows:
                conn.execute(stmt, rows)
            added = int(conn.execute(count).scalar_one() - before)
            if added < len(items):
                self._edit(conn, items)
            return added

        return self._transact(body)

    def _edit(self, conn: sa.Connection, items: list[tuple[str, dict[str, Any]]]) -> None:
        """Give the batch's :data:`EDITABLE` items whose stored content differs from ``items``' theirs."""
        given = {query_id: item_text(item) for query_id, item in items}
        stored = conn.execute(
            sa.select(BATCH_ITEMS.c.query_id, BATCH_ITEMS.c.item).where(
                self._where(), BATCH_ITEMS.c.status.in_(EDITABLE)
            )
        )
        edited = [{"b_id": q, "b_item": given[q]} for q, item in stored if q in given and given[q] != item]
        if not edited:
            return
        conn.execute(
            sa.update(BATCH_ITEMS)
            .where(self._where(), BATCH_ITEMS.c.query_id == sa.bindparam("b_id"))
            .where(
                sa.or_(*(BATCH_ITEMS.c.status == status for status in EDITABLE))
            )  # no expanding IN in executemany
            .values(item=sa.bindparam("b_item")),
            edited,
        )
        log.warning(
            "batch %s: %d unfinished %s take their edited input line",
            self.batch_id,
            len(edited),
            "query" if len(edited) == 1 else "queries",
        )

    def own_tasks(self) -> list[str]:
        """The ids of the tasks this worker ran (by the index of tasks by worker)."""
        with self.memory._read() as conn:  # noqa: SLF001 - same package
            ran = worker_of(conn.dialect.name) == self.worker_id
            return list(conn.execute(sa.select(TASKS.c.id).where(ran)).scalars())

    def claim(self, n: int, *, retry_failed: bool = False) -> list[Claimed]:
        """Claim up to ``n`` claimable items for this worker, oldest first (see the module docstring);
        none once the worker was retired (another's reconcile took it for dead: :attr:`retired`)."""
        claimable: sa.ColumnElement[bool] = BATCH_ITEMS.c.status.in_(("pending", "interrupted"))
        if retry_failed:
            gone = sa.select(BATCH_WORKERS.c.id).where(
                BATCH_WORKERS.c.batch_id == self.batch_id, BATCH_WORKERS.c.status != "running"
            )
            claimable = sa.or_(
                claimable, sa.and_(BATCH_ITEMS.c.status == "failed", BATCH_ITEMS.c.worker.in_(gone))
            )
        retired = sa.exists().where(BATCH_WORKERS.c.id == self.worker_id, BATCH_WORKERS.c.status != "running")
        query = (
            sa.select(BATCH_ITEMS.c.query_id, BATCH_ITEMS.c.item, BATCH_ITEMS.c.attempts)
            .where(self._where(claimable), ~retired)  # taken for dead: its queries are others' now
            .order_by(BATCH_ITEMS.c.seq)
            .limit(n)
            .with_for_update(skip_locked=True)  # PostgreSQL; ignored on SQLite (BEGIN IMMEDIATE instead)
        )

        def body(conn: sa.Connection) -> list[Any]:
            rows = conn.execute(query).all()
            if not rows:  # no work, or retired: told apart only then (the claim's own statement checked)
                self.retired = self.retired or bool(conn.execute(sa.select(retired)).scalar_one())
                return []
            conn.execute(
                sa.update(BATCH_ITEMS)
                .where(self._where(BATCH_ITEMS.c.query_id.in_([r.query_id for r in rows])))
                .values(
                    status="running",
                    worker=self.worker_id,
                    attempts=BATCH_ITEMS.c.attempts + 1,
                    updated_at=_now(),
                )
            )
            return list(rows)

        claimed = [Claimed(r.query_id, json.loads(r.item), r.attempts + 1) for r in self._transact(body)]
        if claimed:  # its steps from now on look for a call another worker's reconcile settled
            self.memory._writer.watching = True  # noqa: SLF001 - same package
        return claimed

    def release(self, query_ids: Sequence[str]) -> None:
        """Give claimed items that were never started back to the queue."""
        if not query_ids:
            return
        self._transact(lambda conn: conn.execute(
            sa.update(BATCH_ITEMS)
            .where(self._where(BATCH_ITEMS.c.query_id.in_(list(query_ids)), BATCH_ITEMS.c.worker == self.worker_id,
                               BATCH_ITEMS.c.status == "running"))
            .values(status="pending", attempts=BATCH_ITEMS.c.attempts - 1, updated_at=_now())
        ))  # fmt: skip

    def finish(
        self,
        query_id: str,
        *,
        status: str,
        task_id: str | None,
        cost_usd: float,
        error: str | None = None,
        on_commit: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """Record an item's outcome through the memory's writer, after its task's writes; ``on_commit(row)``
        runs once it is stored, with the row as stored (``failed`` when its task lost a step)."""
        self.memory.record_batch_item(
            {
                "batch_id": self.batch_id, "query_id": query_id, "worker": self.worker_id, "status": status,
                "task_id": task_id, "cost_usd": cost_usd, "error": storable(error),
            },
            on_commit,
        )  # fmt: skip

    # -- workers --------------------------------------------------------------------------------
    def join(self) -> None:
        """Register this worker (status ``running``)."""
        now = _clock(self.memory.engine.dialect.name)
        insert = (
            _insert(self.memory.engine.dialect.name)(BATCH_WORKERS)
            .values(
                id=self.worker_id,
                batch_id=self.batch_id,
                host=self.host,
                pid=self.pid,
                status="running",
                started_at=now,
                heartbeat_at=now,
            )
            .on_conflict_do_nothing(index_elements=[BATCH_WORKERS.c.id])
        )  # a retry after a lost commit
        self._transact(lambda conn: conn.execute(insert))  # fmt: skip

    def heartbeat(self) -> bool:
        """Store that this worker is alive; ``False`` when it was retired meanwhile (another worker's
        :meth:`reconcile` took it for dead and handed its items over): it must stop paying for them."""
        return self._transact(lambda conn: conn.execute(
            sa.update(BATCH_WORKERS).where(BATCH_WORKERS.c.id == self.worker_id, BATCH_WORKERS.c.status == "running")
            .values(heartbeat_at=_clock(conn.dialect.name))
        ).rowcount) != 0  # fmt: skip

    def leave(self) -> Reconciled:
        """Mark this worker stopped; its still-``running`` tasks and items become ``interrupted``."""
        return self._retire([self.worker_id], "stopped")

    def _alive(self, host: str, pid: int, heartbeat: datetime, now: datetime) -> bool:
        """Whether a worker is alive: by its pid on this host, else by a heartbeat younger than
        ``lease_s`` at ``now``, the database server's time (both written by that clock)."""
        if host == self.host:
            return pid == self.pid or pid_alive(pid)
        if heartbeat.tzinfo is None:
            heartbeat = heartbeat.replace(tzinfo=UTC)
        return now - heartbeat < timedelta(seconds=self.lease_s)

    def reconcile(self) -> Reconciled:
        """Retire the batch's dead workers (see the module docstring); returns what was repaired."""
        with self.memory._read() as conn:  # noqa: SLF001 - same package
            rows = conn.execute(
                sa.select(BATCH_WORKERS.c.id, BATCH_WORKERS.c.host, BATCH_WORKERS.c.pid, BATCH_WORKERS.c.heartbeat_at)
                .where(BATCH_WORKERS.c.batch_id == self.batch_id, BATCH_WORKERS.c.status == "running",
                       BATCH_WORKERS.c.id != self.worker_id)
            ).all()  # fmt: skip
            now = conn.execute(sa.select(_clock(conn.dialect.name))).scalar_one()
            late = [r.id for r in rows if not self._alive(r.host, r.pid, r.heartbeat_at, now)]
            dead = [w for w in late if w not in self._leased(conn, late)]
        return self._retire(dead, "dead") if dead else Reconciled()

    def _leased(self, conn: sa.Connection, workers: list[str]) -> set[str]:
        """Those of ``workers`` whose process holds its lease now (PostgreSQL; known from the tasks it
        wrote): alive, however late its heartbeat (a stalled thread, a clock that jumped)."""
        if not workers or conn.dialect.name != "postgresql":
            return set()
        keys: dict[int, str] = {}
        for worker in workers:  # a worker is one process: its latest task names it
            latest = (
                sa.select(TASKS.c.meta)
                .where(worker_of(conn.dialect.name) == worker)
                .order_by(TASKS.c.created_at.desc())
                .limit(1)
            )
            meta = conn.execute(latest).scalar()
            info = meta.get(PROCESS_KEY) if isinstance(meta, dict) else None
            if isinstance(info, dict) and info.get("lease") is True and info.get("host") != self.host:
                keys[lease_key(info)] = worker
        return {keys[k] for k in leases_held(conn, keys)}

    def _retire(self, workers: list[str], status: str) -> Reconciled:
        try:
            self.memory.flush()  # this process's own task writes first
        except MemoryWriteError as exc:  # already logged by the writer; a batch goes on without them
            log.error("batch %s: %s", self.batch_id, exc)
        now = _now()
        steps_cost = (
            sa.select(sa.func.coalesce(sa.func.sum(STEPS.c.cost_usd), 0.0))
            .where(STEPS.c.task_id == TASKS.c.id)
            .scalar_subquery()
        )

        def body(conn: sa.Connection) -> Reconciled:
            ran = worker_of(conn.dialect.name).in_(workers)
            # an item whose task finished but whose own write was not committed yet (killed between the
            # two): it is finished, not to be run again
            running = self._where(BATCH_ITEMS.c.status == "running", BATCH_ITEMS.c.worker.in_(workers))
            claimed = [r.query_id for r in conn.execute(sa.select(BATCH_ITEMS.c.query_id).where(running))]
            ended: dict[str, Any] = {}
            if claimed:
                query = (
                    sa.select(TASKS.c.id, TASKS.c.status, TASKS.c.cost_usd, TASKS.c.meta,
                              TASKS.c.meta["query_id"].as_string().label("qid"))
                    .where(ran, TASKS.c.status.in_((*FINISHED, "failed")),
                           TASKS.c.meta["query_id"].as_string().in_(claimed))
                    .order_by(TASKS.c.created_at)
                )  # fmt: skip
                ended = {r.qid: r for r in conn.execute(query)}
            for qid, task in ended.items():
                cost = task.cost_usd + sum(
                    _costs(conn, continued(task.meta)).values()
                )  # the query's, across its tasks
                conn.execute(
                    sa.update(BATCH_ITEMS)
                    .where(running, BATCH_ITEMS.c.query_id == qid)
                    .values(status=task.status, task_id=task.id, cost_usd=cost, updated_at=now)
                )
            stopped = sa.and_(TASKS.c.status == "running", ran)
            closing = conn.execute(
                sa.select(TASKS.c.id, TASKS.c.meta, TASKS.c.meta["query_id"].as_string().label("qid"))
                .where(stopped).order_by(TASKS.c.created_at)
            ).all()  # fmt: skip
            # calls in flight when the workers stopped: stored as failed steps at their worst case
            settle_unsettled(conn, [t.id for t in closing], when="by reconcile")
            tasks = conn.execute(
                sa.update(TASKS)
                .where(stopped)
                .values(status="interrupted", cost_usd=steps_cost, finished_at=now)
            ).rowcount
            # an interrupted item costs what its tasks were charged now, the settled calls included
            for task in {t.qid: t for t in closing if t.qid in claimed}.values():
                cost = sum(_costs(conn, [task.id, *continued(task.meta)]).values())
                conn.execute(
                    sa.update(BATCH_ITEMS)
                    .where(running, BATCH_ITEMS.c.query_id == task.qid)
                    .values(cost_usd=cost)
                )
            items = conn.execute(
                sa.update(BATCH_ITEMS).where(running).values(status="interrupted", updated_at=now)
            ).rowcount
            conn.execute(
                sa.update(BATCH_WORKERS).where(BATCH_WORKERS.c.id.in_(workers)).values(status=status)
            )
            return Reconciled(tuple(workers), max(tasks, 0), max(items, 0))

        return self._transact(body)

    # -- reads ----------------------------------------------------------------------------------
    def interrupted_tasks(self, query_id: str) -> dict[str, float]:
        """The batch's ``interrupted`` tasks of ``query_id`` (all workers, all runs) since its latest task
        that ended (done, budget_exhausted, failed: the earlier ones are that task's, counted in its
        ``--out`` line), oldest first: id → cost. What a rerun of the query continues."""
        query = (
            sa.select(TASKS.c.id, TASKS.c.status, TASKS.c.cost_usd)
            .where(TASKS.c.meta[(META_KEY, "id")].as_string() == self.batch_id,
                   TASKS.c.meta["query_id"].as_string() == query_id, TASKS.c.status != "running")
            .order_by(TASKS.c.created_at, TASKS.c.id)
        )  # fmt: skip
        found: dict[str, float] = {}
        with self.memory._read() as conn:  # noqa: SLF001 - same package
            for task_id, status, cost in conn.execute(query):
                if status != "interrupted":
                    found.clear()
                else:
                    found[task_id] = float(cost or 0.0)
        return found

    def task_costs(self, task_ids: Sequence[str]) -> dict[str, float]:
        """The stored cost of those of ``task_ids`` found, in their order: id → cost."""
        with self.memory._read() as conn:  # noqa: SLF001 - same package
            return _costs(conn, task_ids)

    def counts(self) -> dict[str, int]:
        """Items by status."""
        with self.memory._read() as conn:  # noqa: SLF001 - same package
            rows = conn.execute(
                sa.select(BATCH_ITEMS.c.status, sa.func.count())
                .where(self._where())
                .group_by(BATCH_ITEMS.c.status)
            ).all()
        return {status: int(n) for status, n in rows}

    def items(
        self, statuses: Sequence[str] | None = None, *, gone_workers: bool = False
    ) -> list[dict[str, Any]]:
        """The batch's item rows (``query_id``, ``status``, ``task_id``, ``attempts``, ``cost_usd``,
        ``error``, ``worker``), in input order; ``gone_workers``: only those last run by a worker that
        is no longer running (earlier runs, not a concurrent process)."""
        cols = [
            BATCH_ITEMS.c[name]
            for name in ("query_id", "status", "task_id", "attempts", "cost_usd", "error", "worker")
        ]
        clauses = [BATCH_ITEMS.c.status.in_(list(statuses))] if statuses else []
        if gone_workers:
            running = sa.select(BATCH_WORKERS.c.id).where(
                BATCH_WORKERS.c.batch_id == self.batch_id, BATCH_WORKERS.c.status == "running"
            )
            clauses.append(BATCH_ITEMS.c.worker.not_in(running))
        with self.memory._read() as conn:  # noqa: SLF001 - same package
            query = sa.select(*cols).where(self._where(*clauses)).order_by(BATCH_ITEMS.c.seq)
            return [dict(r) for r in conn.execute(query).mappings()]


def continued(meta: Any) -> list[str]:
    """The ids of the interrupted tasks a batch task reran, from its metadata (``agentroute_batch.continues``)."""
    tag = meta.get(META_KEY) if isinstance(meta, dict) else None
    ids = tag.get("continues") if isinstance(tag, dict) else None
    return [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []


def _costs(conn: sa.Connection, task_ids: Sequence[str]) -> dict[str, float]:
    if not task_ids:
        return {}
    found = dict(
        conn.execute(sa.select(TASKS.c.id, TASKS.c.cost_usd).where(TASKS.c.id.in_(list(task_ids))))
        .tuples()
        .all()
    )
    return {i: float(found[i] or 0.0) for i in task_ids if i in found}

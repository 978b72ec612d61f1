"""Claims on tasks across processes: one worker at a time runs a task (PostgreSQL advisory locks).

Stateless workers share one PostgreSQL memory and one LangGraph checkpointer, so two of them can be
asked to resume the same thread at once; both would rebuild the task from the same checkpoint and
pay for the same steps. A worker therefore claims a task while it runs it: a session-level advisory
lock keyed by the task id, held on one dedicated connection per memory. A second worker's claim is
refused at once (no waiting); a worker that dies (``kill -9``, a lost host) releases its claims with
its connection. Claims are counted within a process, so nested or concurrent uses in one process
share one lock.

A forked child inherits none of it: its copy of the connection is cut off from the socket it
shares with the parent (closing it, at the child's exit, would end the parent's session and drop
the parent's lease and claims), and it holds no claim and no lease until it takes its own.

The same connection holds this process's *lease* (:meth:`TaskClaims.hold_lease`): a shared advisory
lock keyed by the process (:func:`lease_key`), taken before its first task row is written. The
server drops it when the process's session ends, so another host tells a live process from a dead
one by whether the lock is still held (:func:`leases_held`, read from ``pg_locks``). The connection
asks the server for TCP keepalives (a lost host's session ends in about 30 s, not the kernel's two
hours) and is checked every :func:`lease_check_s` seconds, reopened (lease and claims taken again)
when the server dropped it. It is bounded from this side too: libpq keepalives and
``tcp_user_timeout`` (a half-open socket fails in about 3 checks) and a ``statement_timeout`` of
one check (at least 1 s: a lock statement that waits, a stalled server), so no check or claim
holds the connection's lock for long.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError

from agentroute.errors import ConfigurationError
from agentroute.memory.engine import create_memory_engine

__all__ = [
    "DEFAULT_LEASE_CHECK_S",
    "TaskClaims",
    "claim_key",
    "lease_check_s",
    "lease_grace_s",
    "lease_key",
    "leases_held",
]

log = logging.getLogger("agentroute.memory")

DEFAULT_LEASE_CHECK_S = 5.0
"""How often the connection holding a lease is checked (and reopened when the server dropped it),
unless ``$AGENTROUTE_LEASE_CHECK_S`` says otherwise (:func:`lease_check_s`)."""

#: Bounds of ``$AGENTROUTE_LEASE_CHECK_S``, in seconds.
LEASE_CHECK_RANGE = (0.1, 600.0)


def lease_check_s() -> float:
    """Seconds between two checks of the connection holding a lease: ``$AGENTROUTE_LEASE_CHECK_S``
    (read at each use, in [0.1, 600]) or :data:`DEFAULT_LEASE_CHECK_S`. Every host sharing a memory
    should use the same value: a reconcile waits 3 × its own before closing another host's tasks."""
    raw = os.environ.get("AGENTROUTE_LEASE_CHECK_S", "").strip()
    if not raw:
        return DEFAULT_LEASE_CHECK_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    low, high = LEASE_CHECK_RANGE
    if not low <= value <= high:  # NaN fails too
        raise ConfigurationError(
            f"$AGENTROUTE_LEASE_CHECK_S must be a number of seconds in [{low:g}, {high:g}] (got {raw!r})"
        )
    return value


def lease_grace_s() -> float:
    """How long another host's lease must stay released before its tasks are closed (3 ×
    :func:`lease_check_s`): a lease whose connection the server dropped (a restart, an idle-session
    killer) while its process lives is taken again within one check (plus the time to reconnect),
    so one look is not enough."""
    return 3 * lease_check_s()


def __getattr__(name: str) -> float:
    """``LEASE_CHECK_S`` and ``LEASE_GRACE_S``: the current :func:`lease_check_s` and :func:`lease_grace_s`."""
    if name == "LEASE_CHECK_S":
        return lease_check_s()
    if name == "LEASE_GRACE_S":
        return lease_grace_s()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Per-session TCP keepalives: the server ends the session of a lost host after about 10 + 4 × 5 s.
_KEEPALIVES = (
    "SET tcp_keepalives_idle = 10",
    "SET tcp_keepalives_interval = 5",
    "SET tcp_keepalives_count = 4",
)


def _step_s(check_s: float) -> int:
    """Whole seconds (at least 1) that one statement or one TCP probe of the lease's connection may take."""
    return max(1, math.ceil(check_s))


def _bounded(check_s: float) -> dict[str, int]:
    """libpq parameters that bound a stalled lease connection (a half-open socket, a lost host): TCP
    keepalives from this side and a limit on unacknowledged data, both about 3 × the check, so a
    check never holds the claims' lock much longer than a reconcile's grace."""
    step = _step_s(check_s)
    return {"keepalives": 1, "keepalives_idle": step, "keepalives_interval": step, "keepalives_count": 3,
            "tcp_user_timeout": 3 * step * 1000}  # fmt: skip


def claim_key(task_id: str) -> int:
    """The advisory lock key of a task: 64 bits of its id's BLAKE2b hash, signed (PostgreSQL's bigint)."""
    return int.from_bytes(hashlib.blake2b(task_id.encode(), digest_size=8).digest(), "big", signed=True)


def lease_key(process: Mapping[str, Any]) -> int:
    """The advisory lock key of a process's lease, from its ``{"host", "pid", "start"}``."""
    return claim_key(f"agentroute-process {process.get('host')} {process.get('pid')} {process.get('start')}")


def leases_held(conn: Connection, keys: Iterable[int]) -> set[int]:
    """Which of ``keys`` some session of this database holds as an advisory lock now (``pg_locks``
    shows a bigint key as its high half in ``classid``, its low half in ``objid``, ``objsubid`` 1)."""
    wanted = {((k >> 32) & 0xFFFFFFFF, k & 0xFFFFFFFF): k for k in set(keys)}
    if not wanted:
        return set()
    rows = conn.execute(sa.text(
        "SELECT DISTINCT classid::bigint, objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 "
        "AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ))  # fmt: skip
    return {wanted[(hi, lo)] for hi, lo in rows if (hi, lo) in wanted}


def _cut_off(conn: Connection) -> None:
    """In a forked child: point this process's copy of ``conn``'s socket at ``/dev/null``, so that
    closing it (or the garbage collector) sends nothing to the server on the parent's session."""
    if conn.closed or conn.invalidated:  # no socket to protect (and .connection would reconnect)
        return
    try:
        fileno = conn.connection.dbapi_connection.fileno()  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - a driver without a socket to protect
        return
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        os.dup2(devnull, fileno)
    finally:
        os.close(devnull)


_ALL: weakref.WeakSet[TaskClaims] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for claims in list(_ALL):
        claims._forget_parent()  # noqa: SLF001 - same module


class TaskClaims:
    """Claims on tasks (and this process's lease) held by this process on one connection to ``url``
    (PostgreSQL only), opened on first use outside any pool: closing it ends the server session, and
    its locks with it."""

    def __init__(self, url: URL) -> None:
        self.check_s: float = lease_check_s()  # read here: a wrong value is refused on the caller's thread
        self.engine: Engine = create_memory_engine(url, pooled=False, libpq=_bounded(self.check_s))
        self._conn: Connection | None = None
        self._held: dict[str, int] = {}  # task id → uses in this process
        self._since: dict[str, int] = {}  # task id → the session (epoch) that took its claim
        self._epoch = 0  # sessions opened so far: a claim holds only on the one that took it
        self._lease: int | None = None
        self.on_alive: Callable[[], None] | None = None
        """Called, with the claims' lock held (so: quickly), when a check found the lease held."""
        self.on_retaken: Callable[[], None] | None = None
        """Called, with the claims' lock held (so: quickly), once a lost lease was taken again: a
        reconcile elsewhere may have taken this process for dead meanwhile."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None
        _ALL.add(self)

    def _forget_parent(self) -> None:
        """In a forked child: the parent's connection, claims, lease and thread are not this process's."""
        if self._conn is not None:
            _cut_off(self._conn)
        self._conn, self._held, self._since, self._lease, self._keeper = None, {}, {}, None, None
        self._lock, self._stop = threading.Lock(), threading.Event()

    def _open(self) -> Connection:
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        for setting in (*_KEEPALIVES, f"SET statement_timeout = {_step_s(self.check_s) * 1000}"):
            conn.exec_driver_sql(setting)
        return conn

    def _execute(self, sql: str, key: int) -> bool:
        """Run one advisory-lock function; a lost connection is opened again once (its locks are
        gone with it: the lease and the claims this process still holds are taken again first)."""
        for attempt in (0, 1):
            try:
                if self._conn is None:
                    self._conn = self._open()
                    self._epoch += 1
                    self._retake()
                return bool(self._conn.execute(sa.text(sql), {"key": key}).scalar_one())
            except DBAPIError as exc:
                if not exc.connection_invalidated or attempt:
                    raise
                log.warning("memory: the connection holding task claims was lost; opening it again")
                self._conn = None
        raise AssertionError("unreachable")  # pragma: no cover

    def _discard(self) -> None:
        """Close a connection that failed a statement (its session, if it lives on, ends with its
        locks): the next statement opens a new one."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - already broken
                pass

    def _retake(self) -> None:
        """Take again, on a new connection, the lease and the claims held on the lost one."""
        assert self._conn is not None
        if self._lease is not None:
            self._conn.execute(sa.text("SELECT pg_advisory_lock_shared(:key)"), {"key": self._lease})
            if self.on_retaken is not None:
                self.on_retaken()
        for task_id in self._held:
            got = self._conn.execute(
                sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": claim_key(task_id)}
            )
            if not got.scalar_one():
                log.error(
                    "memory: task %s was claimed by another worker while the connection was down", task_id
                )

    def claim(self, task_id: str) -> bool:
        """Claim ``task_id`` for this process; ``False`` when another process holds it."""
        with self._lock:
            uses = self._held.get(task_id, 0)
            if uses == 0:
                if not self._execute("SELECT pg_try_advisory_lock(:key)", claim_key(task_id)):
                    return False
                self._since[task_id] = self._epoch
            self._held[task_id] = uses + 1
            return True

    def release(self, task_id: str) -> None:
        """Give back one use of a claim; the last one unlocks the task for other workers."""
        with self._lock:
            uses = self._held.get(task_id, 0)
            if uses > 1:
                self._held[task_id] = uses - 1
                return
            if uses == 0:
                return
            del self._held[task_id]
            self._since.pop(task_id, None)
            try:
                self._execute("SELECT pg_advisory_unlock(:key)", claim_key(task_id))
            except DBAPIError as exc:  # the connection died: the lock went with it
                log.warning("memory: releasing the claim on task %s: %s", task_id, exc)

    def confirm(self, task_id: str) -> bool:
        """Whether this process still holds its claim on ``task_id`` without a break, asked of the
        server (one round trip): ``False`` once the session that took it ended (the server dropped
        it, the network cut it) — even if the claim was taken again since, as another worker may
        have run the task meanwhile — or when the server cannot be reached. A worker checks it
        before each paid call, so one that lost its claim stops paying for a task another runs."""
        with self._lock:
            if task_id not in self._held:
                return False
            try:
                self._execute("SELECT CAST(:key AS bigint) IS NOT NULL", 0)
            except DBAPIError as exc:
                log.warning("memory: cannot confirm the claim on task %s: %s", task_id, exc)
                self._discard()
                return False
            return self._since.get(task_id) == self._epoch

    def unbroken(self, task_id: str) -> bool:
        """:meth:`confirm` without the round trip, as far as this process knows: ``False`` once the
        lease's check (every :attr:`check_s`) or any statement found the session that took the claim
        ended. Cheap enough to ask before each paid call; :meth:`confirm` asks the server."""
        return self._conn is not None and task_id in self._held and self._since.get(task_id) == self._epoch

    def held(self) -> list[str]:
        """The tasks this process claims now."""
        with self._lock:
            return list(self._held)

    # -- the lease ------------------------------------------------------------------------------
    @property
    def leased(self) -> bool:
        """Whether this process holds its lease here."""
        return self._lease is not None

    def hold_lease(self, key: int) -> None:
        """Hold the lease ``key`` (shared: every memory of this process on this database holds the
        same one) until :meth:`close`, checked every :attr:`check_s` by a daemon thread."""
        with self._lock:
            if self._lease is not None:
                return
            self._execute("SELECT pg_advisory_lock_shared(:key) IS NULL", key)
            self._lease = key
            self._stop.clear()
            self._keeper = threading.Thread(target=self._keep, name="agentroute-memory-lease", daemon=True)
            self._keeper.start()

    def _keep(self) -> None:
        """Check the connection now and then: one the server dropped is reopened, the lease retaken."""
        while not self._stop.wait(self.check_s):
            with self._lock:
                if self._stop.is_set():
                    return
                try:
                    self._execute("SELECT CAST(:key AS bigint) IS NOT NULL", 0)
                except DBAPIError as exc:  # the server is down: try again at the next check
                    log.warning("memory: the connection holding this process's lease: %s", exc)
                    self._discard()
                else:
                    if self.on_alive is not None:
                        self.on_alive()

    def close(self) -> None:
        """Release every claim and the lease (closing the connection does)."""
        self._stop.set()
        with self._lock:
            self._held.clear()
            self._since.clear()
            self._lease = None
            if self._conn is not None:
                try:
                    self._conn.close()
                except DBAPIError:  # pragma: no cover - already gone
                    pass
                self._conn = None
            self.engine.dispose()
        keeper, self._keeper = self._keeper, None
        if keeper is not None and keeper is not threading.current_thread():
            keeper.join(timeout=self.check_s)


os.register_at_fork(after_in_child=_after_fork_in_child)

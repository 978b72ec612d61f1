"""Claims on tasks across processes: one worker at a time runs a task (PostgreSQL advisory locks).

Stateless workers share one PostgreSQL memory and one LangGraph checkpointer, so two of them can be
asked to resume the same thread at once; both would rebuild the task from the same checkpoint and
pay for the same steps. A worker therefore claims a task while it runs it: a session-level advisory
lock keyed by the task id, held on one dedicated connection per memory. A second worker's claim is
refused at once (no waiting); a worker that dies (``kill -9``, a lost host) releases its claims with
its connection. Claims are counted within a process, so nested or concurrent uses in one process
share one lock.
"""

from __future__ import annotations

import hashlib
import logging
import threading

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError

from agentroute.memory.engine import create_memory_engine

__all__ = ["TaskClaims", "claim_key"]

log = logging.getLogger("agentroute.memory")


def claim_key(task_id: str) -> int:
    """The advisory lock key of a task: 64 bits of its id's BLAKE2b hash, signed (PostgreSQL's bigint)."""
    return int.from_bytes(hashlib.blake2b(task_id.encode(), digest_size=8).digest(), "big", signed=True)


class TaskClaims:
    """Claims on tasks held by this process on one connection to ``url`` (PostgreSQL only), opened
    on first use outside any pool: closing it ends the server session, and its locks with it."""

    def __init__(self, url: URL) -> None:
        self.engine: Engine = create_memory_engine(url, pooled=False)
        self._conn: Connection | None = None
        self._held: dict[str, int] = {}  # task id → uses in this process
        self._lock = threading.Lock()

    def _execute(self, sql: str, key: int) -> bool:
        """Run one advisory-lock function; a lost connection is opened again once (its claims are
        gone with it: the ones this process still holds are taken again first)."""
        for attempt in (0, 1):
            try:
                if self._conn is None:
                    self._conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                    if attempt:
                        self._retake()
                return bool(self._conn.execute(sa.text(sql), {"key": key}).scalar_one())
            except DBAPIError as exc:
                if not exc.connection_invalidated or attempt:
                    raise
                log.warning("memory: the connection holding task claims was lost; opening it again")
                self._conn = None
        raise AssertionError("unreachable")  # pragma: no cover

    def _retake(self) -> None:
        assert self._conn is not None
        for task_id in self._held:
            got = self._conn.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": claim_key(task_id)})
            if not got.scalar_one():
                log.error("memory: task %s was claimed by another worker while the connection was down", task_id)

    def claim(self, task_id: str) -> bool:
        """Claim ``task_id`` for this process; ``False`` when another process holds it."""
        with self._lock:
            uses = self._held.get(task_id, 0)
            if uses == 0 and not self._execute("SELECT pg_try_advisory_lock(:key)", claim_key(task_id)):
                return False
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
            try:
                self._execute("SELECT pg_advisory_unlock(:key)", claim_key(task_id))
            except DBAPIError as exc:  # the connection died: the lock went with it
                log.warning("memory: releasing the claim on task %s: %s", task_id, exc)

    def held(self) -> list[str]:
        """The tasks this process claims now."""
        with self._lock:
            return list(self._held)

    def close(self) -> None:
        """Release every claim (closing the connection does)."""
        with self._lock:
            self._held.clear()
            if self._conn is not None:
                try:
                    self._conn.close()
                except DBAPIError:  # pragma: no cover - already gone
                    pass
                self._conn = None
            self.engine.dispose()

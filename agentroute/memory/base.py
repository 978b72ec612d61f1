"""The storage contract of the interaction memory.

A few abstract methods that any store (SQLite, PostgreSQL, …) implements; the conformance test
suite in ``tests/test_memory.py`` runs against every store. Writes may be batched by the store, but
``flush()`` returns only when everything recorded before it is committed.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from agentroute.budget import Attempt
from agentroute.types import AuditEvent, Step, Task, Trajectory


class MemoryStore(abc.ABC):
    """Where tasks, steps, feedback, audit events and router state are kept."""

    # -- writes (may be batched; durable after flush) ----------------------------------------
    @abc.abstractmethod
    def start_task(self, task: Task) -> None:
        """Record a new task (status ``running``)."""

    @abc.abstractmethod
    def record_step(self, step: Step) -> None:
        """Record one finished step with its decision, tokens, cost, latency and status."""

    @abc.abstractmethod
    def finish_task(self, task: Task) -> None:
        """Record the task's final status, answer, cost and score."""

    @abc.abstractmethod
    def record_audit(self, event: AuditEvent) -> None:
        """Record a blocked operation, retry or fallback."""

    @abc.abstractmethod
    def add_feedback(self, task_id: str, score: float, *, source: str = "user", comment: str = "") -> None:
        """Attach an outcome score to a finished task (also updates the task's score)."""

    @abc.abstractmethod
    def flush(self) -> None:
        """Block until every write recorded so far is committed."""

    @abc.abstractmethod
    def close(self) -> None:
        """Flush and release connections."""

    # -- reads ------------------------------------------------------------------------------
    @abc.abstractmethod
    def get_task(self, task_id: str) -> Trajectory | None:
        """A task with its steps, or ``None``."""

    @abc.abstractmethod
    def trajectories(
        self,
        *,
        graph: str | None = None,
        status: Sequence[str] | None = None,
        since: datetime | None = None,
        with_score: bool = False,
        limit: int | None = None,
    ) -> list[Trajectory]:
        """Finished tasks with their steps, oldest first: the training data of routers."""

    @abc.abstractmethod
    def audit_events(self, task_id: str | None = None) -> list[AuditEvent]:
        """Audit events, oldest first."""

    @abc.abstractmethod
    def stats(self) -> dict[str, Any]:
        """Counts and totals: tasks by status, steps, cost, tokens, per-model usage."""

    # -- router state -----------------------------------------------------------------------
    @abc.abstractmethod
    def save_router_state(self, router: str, state: dict[str, Any]) -> None:
        """Keep a router's JSON state (e.g. pheromone matrices) under its name."""

    @abc.abstractmethod
    def load_router_state(self, router: str) -> dict[str, Any] | None:
        """The latest state saved for ``router``, or ``None``."""

    # -- write-ahead records of provider attempts ---------------------------------------------
    @abc.abstractmethod
    async def reserve_attempt(self, attempt: Attempt) -> None:
        """Make ``attempt``'s reservation durable before it is sent (:class:`~agentroute.budget.Attempt`),
        so that a task resumed after a crash with the call in flight can charge it."""

    @abc.abstractmethod
    def attempts(self, task_id: str) -> list[Attempt]:
        """The write-ahead records of ``task_id``'s provider attempts, oldest first."""

    # -- conveniences -----------------------------------------------------------------------
    def record_steps(self, steps: Iterable[Step]) -> None:
        for step in steps:
            self.record_step(step)

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

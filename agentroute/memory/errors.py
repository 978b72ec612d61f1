"""Errors of the SQL memory (all are :class:`~agentroute.errors.AgentrouteError`)."""

from __future__ import annotations

from typing import Any

from agentroute.errors import AgentrouteError

__all__ = ["MemoryStoreError", "MemoryWriteError", "TaskBusyError"]


class MemoryStoreError(AgentrouteError):
    """The memory cannot be opened or used (unreachable database, closed store, dead writer)."""


class MemoryWriteError(MemoryStoreError):
    """Recorded writes could not be committed; raised by the next ``flush()`` or ``close()``.

    ``failures`` holds ``(kind, payload, exception)`` for each lost write, so that the caller can
    inspect, re-record or dump them: nothing vanishes silently.
    """

    def __init__(self, failures: list[tuple[str, Any, BaseException]]):
        self.failures = failures
        kind, _, exc = failures[0]
        super().__init__(
            f"{len(failures)} memory write(s) failed and were not committed; "
            f"first ({kind}): {type(exc).__name__}: {exc}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle by ``failures`` (a worker process's error reaches its parent; was a ValueError)."""
        return (type(self), (self.failures,))

    @property
    def payloads(self) -> list[Any]:
        """The objects whose writes failed (tasks, steps, audit events, feedback tuples)."""
        return [payload for _, payload, _ in self.failures]


class TaskBusyError(MemoryStoreError):
    """Another worker runs this task now (it holds the task's claim in the shared memory): nothing
    was run or spent here. Resume the thread again once that worker is done or dead."""

    def __init__(self, task_id: str, url: str = ""):
        self.task_id = task_id
        where = f" in the memory at {url}" if url else ""
        super().__init__(
            f"task {task_id} is being run by another worker (it holds the task's claim{where}); "
            "nothing was run here: resume the thread once that worker is done, or has died"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.task_id,))

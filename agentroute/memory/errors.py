"""Errors of the SQL memory (all are :class:`~agentroute.errors.AgentrouteError`)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from agentroute.errors import AgentrouteError
from agentroute.memory.codec import write_task_id

__all__ = [
    "MemoryStoreError",
    "MemoryWriteError",
    "TaskBusyError",
    "WRITES_REFUSED",
    "first_line",
    "refuses_writes",
]

WRITES_REFUSED = ("25006", "42501")
"""SQLSTATEs of a PostgreSQL database that refuses writes for good: a read-only transaction (a
standby, ``default_transaction_read_only``) and a missing privilege."""


def refuses_writes(exc: BaseException) -> bool:
    """Whether a failed write is the database refusing writes (a lost connection, a full disk, a
    read-only file or database, a missing privilege), not a fault of the data written."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in WRITES_REFUSED


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
        lines = str(exc).strip().splitlines()  # a driver's error goes on with hints and a link
        kinds = Counter(kind for kind, _, _ in failures)
        super().__init__(
            f"{len(failures)} memory write(s) failed and were not committed "
            f"({', '.join(f'{n} {name}' for name, n in kinds.items())}){_of_tasks(self.task_ids)}; "
            f"first ({kind}): {type(exc).__name__}: {lines[0] if lines else ''}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle by ``failures`` (a worker process's error reaches its parent; was a ValueError)."""
        return (type(self), (self.failures,))

    @property
    def payloads(self) -> list[Any]:
        """The objects whose writes failed (tasks, steps, audit events, feedback tuples)."""
        return [payload for _, payload, _ in self.failures]

    @property
    def task_ids(self) -> list[str]:
        """The ids of the tasks whose writes failed, each once, in the order of their first failure."""
        return list(
            dict.fromkeys(
                t for kind, payload, _ in self.failures if (t := write_task_id(kind, payload)) is not None
            )
        )


TASK_IDS_SHOWN = 5
"""How many task ids a :class:`MemoryWriteError`'s line names before ``+N more`` (all are in ``task_ids``)."""


def _of_tasks(task_ids: list[str]) -> str:
    """`` of task(s) a, b +N more``: a few ids of the lost writes' tasks, each one short line, for
    ``agentroute memory reconcile`` or a look for a request; empty when none is known."""
    if not task_ids:
        return ""
    shown = [t if len(t) <= 40 and t.isprintable() else repr(t[:40]) for t in task_ids[:TASK_IDS_SHOWN]]
    more = len(task_ids) - len(shown)
    return f" of task(s) {', '.join(shown)}" + (f" +{more} more" if more else "")


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


def first_line(error: object) -> str:
    """The first line of ``error``'s text (a driver's error goes on with hints and a link), else its type's name."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

"""The interaction memory: tasks, steps, feedback, audit events and router state in SQL.

``SQLMemory`` (SQLite by default, PostgreSQL by URL) implements the :class:`MemoryStore`
contract with batched background writes; ``open_memory(url)`` opens one. ``BatchQueue`` is the
durable work queue of a batch of tasks (claims, crash recovery), kept in the same database.
"""

from __future__ import annotations

from agentroute.memory.base import MemoryStore
from agentroute.memory.batches import BatchQueue
from agentroute.memory.engine import default_url
from agentroute.memory.errors import MemoryStoreError, MemoryWriteError, TaskBusyError
from agentroute.memory.sql import SQLMemory, open_memory, watch_tasks

__all__ = [
    "BatchQueue",
    "MemoryStore",
    "MemoryStoreError",
    "MemoryWriteError",
    "SQLMemory",
    "TaskBusyError",
    "default_url",
    "open_memory",
    "watch_tasks",
]

"""The interaction memory: tasks, steps, feedback, audit events and router state in SQL.

``SQLMemory`` (SQLite by default, PostgreSQL by URL) implements the :class:`MemoryStore`
contract with batched background writes; ``open_memory(url)`` opens one.
"""

from __future__ import annotations

from agentroute.memory.base import MemoryStore
from agentroute.memory.engine import default_url
from agentroute.memory.errors import MemoryStoreError, MemoryWriteError
from agentroute.memory.sql import SQLMemory, open_memory

__all__ = ["MemoryStore", "MemoryStoreError", "MemoryWriteError", "SQLMemory", "default_url", "open_memory"]

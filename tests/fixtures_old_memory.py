"""A memory as an older agentroute release left it: migrated only to a past revision, in one
transaction in which a test writes its rows as that release wrote them (no git history at test time)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa
from alembic import command

from agentroute.memory.migrate import alembic_config


@contextlib.contextmanager
def memory_at(url: str, revision: str) -> Iterator[sa.Connection]:
    """The database at ``url`` migrated to ``revision`` (e.g. ``"0001"``); the connection's transaction
    commits when the block ends."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            yield conn
    finally:
        engine.dispose()


def json_param(conn: sa.Connection, name: str) -> str:
    """The SQL of bind parameter ``name`` holding JSON text, for a JSON column (PostgreSQL: jsonb)."""
    return f"CAST(:{name} AS JSONB)" if conn.dialect.name == "postgresql" else f":{name}"

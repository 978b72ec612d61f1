"""Bring a memory database to the newest schema with Alembic (programmatically, on open).

The migrations ship inside the package (``agentroute/memory/migrations``), so ``pip install``
users get them; ``memory/alembic.ini`` at the repository root runs the same scripts by hand.
Opening a database that is already at head costs one small query.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from agentroute.memory.errors import MemoryStoreError

__all__ = ["MIGRATIONS", "VERSION_TABLE", "alembic_config", "head_revision", "current_revision", "upgrade"]

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "agentroute_alembic_version"
"""Our own version table, so that an application's Alembic in the same database is unaffected."""

_LOCK_KEY = 0x61676E74  # PostgreSQL advisory lock taken while migrating ("agnt")


def alembic_config() -> Config:
    """An Alembic config pointing at the packaged migrations (no ini file needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


@cache
def head_revision() -> str:
    """The newest revision shipped with this version of agentroute."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"memory migrations must have one head (got {heads})")
    return heads[0]


@cache
def known_revisions() -> frozenset[str]:
    """Every revision shipped with this version of agentroute."""
    return frozenset(
        script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()
    )


def _check_known(revision: str | None) -> None:
    """A database at a revision this agentroute does not ship was written by a newer one."""
    if revision is not None and revision not in known_revisions():
        raise MemoryStoreError(
            f"its schema is at revision {revision!r}, which this agentroute does not know (newest: "
            f"{head_revision()!r}): it was written by a newer agentroute; upgrade agentroute to open it"
        )


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or ``None`` for an empty database."""
    with engine.connect() as conn:
        return _current(conn)


def upgrade(engine: Engine) -> bool:
    """Migrate to head unless already there; returns whether migrations ran.

    Concurrent openers are serialised: an advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite.
    """
    head = head_revision()
    current = current_revision(engine)
    if current == head:
        return False
    _check_known(current)
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        current = _current(conn)
        if current == head:
            conn.rollback()
            return False
        _check_known(current)
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        conn.commit()
    return True

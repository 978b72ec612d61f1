"""Memory fixtures: a fresh memory's URL on each backend, and the statements an engine runs.

``memory_url`` is a SQLite file of the test's own, then (marked ``postgres``) a database of its own
on the session's PostgreSQL server (:mod:`tests.fixtures_postgres`); :func:`fresh_url` builds it
for fixtures that add to it. :func:`statements` records what SQLAlchemy sends meanwhile
(``before_cursor_execute``: a driver's own ``INSERT``/``COPY`` is not seen)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from agentroute.memory.pgserver import create_database

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new memory's URL for the backend ``request.param`` (``sqlite`` or ``postgres``)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'memory.db'}"
    return create_database(request.getfixturevalue("postgres_url"), f"memory_{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=BACKENDS)
def memory_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new memory's URL: SQLite, then PostgreSQL."""
    return fresh_url(request, tmp_path)


@contextmanager
def statements(engine: sa.Engine) -> Iterator[list[str]]:
    """The statements ``engine`` runs meanwhile, white space folded and upper-cased."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        seen.append(" ".join(statement.split()).upper())

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)

"""PostgreSQL server fixture: a throwaway server on loopback for the whole test session.

``postgres_url`` starts Debian's server binaries (``initdb`` + ``pg_ctl``, as the ``postgres`` OS
user when run as root) on a free port and yields the SQLAlchemy URL of its ``postgres`` database;
the server is stopped at the end, also when tests fail. ``$AGENTROUTE_TEST_POSTGRES`` names an
already running server instead. Without server binaries, the tests that use it skip (CI installs
Debian's ``postgresql``, so there they run). ``checkpoint_db`` gives one test a database of its own
on that server, for a memory and LangGraph's checkpoints.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from agentroute.memory.pgserver import PostgresServer, find_bindir


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL (``postgresql+psycopg://…/postgres``) of a session-wide PostgreSQL server."""
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'agentroute[postgres]'")
    if url := os.environ.get("AGENTROUTE_TEST_POSTGRES"):
        yield url
        return
    if find_bindir() is None:
        pytest.skip(
            "PostgreSQL server binaries not found (`pg_config --bindir`, /usr/lib/postgresql/*/bin): "
            "apt-get install postgresql, or set AGENTROUTE_TEST_POSTGRES to a server URL"
        )
    server = PostgresServer(durable=False).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def checkpoint_db(postgres_url: str) -> str:
    """SQLAlchemy URL of a database of this test alone on the session's server, for a memory and
    LangGraph's PostgreSQL checkpoints (see :func:`saver_url`); skips without that saver installed."""
    from agentroute.memory.pgserver import create_database

    pytest.importorskip("langgraph.checkpoint.postgres", reason="pip install 'agentroute[checkpoint]'")
    return create_database(postgres_url, f"graph_{os.getpid()}_{time.monotonic_ns()}")


def saver_url(url: str) -> str:
    """The libpq URL (``postgresql://…``) that LangGraph's ``PostgresSaver`` takes for the same
    database as a SQLAlchemy ``postgresql+psycopg://…`` URL."""
    return url.replace("postgresql+psycopg://", "postgresql://")

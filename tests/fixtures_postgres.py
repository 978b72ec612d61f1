"""PostgreSQL server fixture: a throwaway server on loopback for the whole test session.

``postgres_url`` starts Debian's server binaries (``initdb`` + ``pg_ctl``, as the ``postgres`` OS
user when run as root) on a free port and yields the SQLAlchemy URL of its ``postgres`` database;
the server is stopped at the end, also when tests fail. ``$AGENTROUTE_TEST_POSTGRES`` names an
already running server instead. Without server binaries, the tests that use it skip (CI installs
Debian's ``postgresql``, so there they run).
"""

from __future__ import annotations

import os
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

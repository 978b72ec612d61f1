"""PostgreSQL server fixture: a throwaway server on loopback for the whole test session.

``postgres_url`` starts Debian's server binaries (``initdb`` + ``pg_ctl``, as the ``postgres`` OS
user when run as root) on a free port and yields the SQLAlchemy URL of its ``postgres`` database;
the server is stopped at the end, also when tests fail. ``$AGENTROUTE_TEST_POSTGRES`` names an
already running server instead. Without server binaries, the tests that use it skip (CI installs
Debian's ``postgresql``, so there they run). ``checkpoint_db`` gives one test a database of its own
on that server, for a memory and LangGraph's checkpoints.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def wait_for_checkpoint(url: str, thread: str, step: int, timeout_s: float = 30.0) -> None:
    """Wait until the ``PostgresSaver`` at ``url`` holds thread ``thread``'s checkpoint of superstep
    ``step`` (``-1`` the input, ``0`` before the first node, ``1`` after it): a worker's graph saves
    it in the background while its next node already runs."""
    from langgraph.checkpoint.postgres import PostgresSaver

    deadline = time.monotonic() + timeout_s
    with PostgresSaver.from_conn_string(saver_url(url)) as saver:
        while (got := saver.get_tuple({"configurable": {"thread_id": thread}})) is None or got.metadata["step"] < step:
            assert time.monotonic() < deadline, f"no checkpoint of step {step} of thread {thread} after {timeout_s} s"
            time.sleep(0.02)


@contextlib.contextmanager
def sync_saver(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A LangGraph saver with sync methods only, as users pass one: ``memory`` (``InMemorySaver``,
    which also has async ones), ``sqlite`` (``SqliteSaver`` on a file in ``tmp_path``) or
    ``postgres`` (``PostgresSaver`` on this session's server; mark such a case ``postgres``)."""
    if kind == "memory":
        from langgraph.checkpoint.memory import InMemorySaver

        yield InMemorySaver()
    elif kind == "sqlite":
        pytest.importorskip("langgraph.checkpoint.sqlite", reason="pip install 'agentroute[checkpoint]'")
        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(tmp_path / "checkpoints.db", check_same_thread=False)
        try:
            yield SqliteSaver(conn)
        finally:
            conn.close()
    else:
        pytest.importorskip("langgraph.checkpoint.postgres", reason="pip install 'agentroute[checkpoint]'")
        from langgraph.checkpoint.postgres import PostgresSaver

        with PostgresSaver.from_conn_string(saver_url(request.getfixturevalue("postgres_url"))) as saver:
            saver.setup()
            yield saver

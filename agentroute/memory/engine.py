"""Memory URLs and engines: SQLite (WAL) by default, PostgreSQL (psycopg 3) by URL."""

from __future__ import annotations

import os
import random
import re
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import NullPool, StaticPool

from agentroute._optional import require
from agentroute.errors import ConfigurationError

__all__ = [
    "DEFAULT_PATH",
    "default_url",
    "resolve_url",
    "safe_url",
    "is_memory_sqlite",
    "create_memory_engine",
    "tcp_settings",
    "connect_failure",
    "held_throughout",
    "write_locked",
]

DEFAULT_PATH = Path(".agentroute") / "memory.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT_S = 5
"""How long opening a PostgreSQL connection may take (libpq's ``connect_timeout``) unless the URL
(``?connect_timeout=N``) or ``$PGCONNECT_TIMEOUT`` says otherwise: a host that never answers fails
then instead of hanging forever."""
TCP_KEEPALIVES: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 4,
    "tcp_user_timeout": 12_000,
}
"""libpq's TCP settings of a PostgreSQL connection unless the URL sets them (``?keepalives_idle=60``):
a connection whose peer vanished (a network partition, a cloud failover) fails in about 12–13 s —
unacknowledged data after ``tcp_user_timeout`` ms, a silent idle or waiting connection after
``keepalives_idle`` + ``keepalives_count`` × ``keepalives_interval`` s — instead of stalling a write
until the writer gives it up, or a read forever (the operating system's default: about 2 hours).
``tcp_user_timeout`` only where libpq knows it (:func:`tcp_settings`)."""

TCP_USER_TIMEOUT_LIBPQ = 120_000
"""The first libpq version with ``tcp_user_timeout`` (12): an older one refuses every connection given it."""


def tcp_settings(libpq_version: int) -> dict[str, int]:
    """:data:`TCP_KEEPALIVES` as libpq ``libpq_version`` (``psycopg.pq.version()``, e.g. 160002)
    takes them: without ``tcp_user_timeout`` before libpq 12 ("invalid connection option")."""
    if libpq_version >= TCP_USER_TIMEOUT_LIBPQ:
        return dict(TCP_KEEPALIVES)
    return {k: v for k, v in TCP_KEEPALIVES.items() if k != "tcp_user_timeout"}


_PASSWORD = re.compile(r"(://[^:/@?#]*:)[^@/?#]*@")
_OPEN: dict[str, dict[int, sqlite3.Connection]] = {}
"""This process's memory connections to each SQLite file (by its real path), by ``id``: whether the
file's write lock is held here (:func:`write_locked`)."""
_OPEN_LOCK = threading.Lock()


def default_url() -> str:
    """``$AGENTROUTE_MEMORY``, else ``sqlite:///.agentroute/memory.db`` (relative to the cwd)."""
    return os.environ.get("AGENTROUTE_MEMORY") or f"sqlite:///{DEFAULT_PATH.as_posix()}"


def safe_url(url: str | URL) -> str:
    """The URL as text with any password hidden, for messages and logs."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return _PASSWORD.sub(r"\1***@", str(url))


def resolve_url(url: str | None) -> URL:
    """Parse ``url`` (default: :func:`default_url`) and check that it names a supported backend.

    A bare ``postgresql://`` (or ``postgres://``) URL is given the psycopg 3 driver; blanks around
    the URL are ignored; a SQLite path starting with ``~`` is expanded to the home folder
    (``sqlite:///~/runs/memory.db``).
    """
    text = (url.strip() if isinstance(url, str) else url) or default_url()
    try:
        parsed = sa.make_url(text)
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number (host:/db)
        raise ConfigurationError(
            f"invalid memory URL {safe_url(text)!r}: expected sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB"
        ) from exc
    if parsed.drivername == "postgres":  # the scheme of many hosted DATABASE_URLs
        parsed = parsed.set(drivername="postgresql")
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        elif parsed.get_driver_name() != "psycopg":
            raise ConfigurationError(
                f"memory URL {safe_url(parsed)!r}: use the psycopg 3 driver (postgresql+psycopg://...)"
            )
    elif backend != "sqlite":
        raise ConfigurationError(
            f"unsupported memory URL {safe_url(parsed)!r}: the memory runs on sqlite:/// or postgresql+psycopg://"
        )
    elif parsed.database and parsed.database.startswith("~"):  # sqlite:///~/x.db: the home folder, not ./~
        parsed = parsed.set(database=os.path.expanduser(parsed.database))
    return parsed


def is_memory_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def create_memory_engine(
    url: str | URL | None, *, pooled: bool = True, libpq: Mapping[str, Any] | None = None
) -> Engine:
    """An engine for the memory: SQLite in WAL mode with a busy timeout (a write transaction taking
    the write lock as it begins: ``BEGIN IMMEDIATE``), or PostgreSQL via psycopg
    (connections checked before use, opening one bounded by :data:`CONNECT_TIMEOUT_S`, a half-open
    one failing within :data:`TCP_KEEPALIVES`' bound; with
    ``pooled=False`` a closed connection is closed on the server too; ``libpq``: more connection
    parameters, those the URL sets winning).

    The parent folder of a SQLite file is created (one that cannot be is a :class:`ConfigurationError`
    naming it). An in-memory SQLite URL (``sqlite://``) shares
    one connection between threads, so that the writer thread and readers see the same database.
    """
    parsed = url if isinstance(url, URL) else resolve_url(url)
    if parsed.get_backend_name() == "postgresql":
        psycopg = require("psycopg")
        connect_args: dict[str, Any] = tcp_settings(psycopg.pq.version())
        if not os.environ.get("PGCONNECT_TIMEOUT"):
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
        connect_args = {k: v for k, v in (connect_args | dict(libpq or {})).items() if k not in parsed.query}
        if not pooled:
            return sa.create_engine(parsed, poolclass=NullPool, connect_args=connect_args)
        return sa.create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
    # IMMEDIATE: a write transaction begins by taking the write lock, so a connection is in one
    # (``in_transaction``) exactly while it holds the lock, not while it waits for it
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "isolation_level": "IMMEDIATE"}}
    if is_memory_sqlite(parsed):
        kwargs["poolclass"] = StaticPool
    else:
        path = Path(parsed.database or "")
        if path.is_dir():
            raise ConfigurationError(
                f"memory URL {safe_url(parsed)!r} names a folder: name a file in it, e.g. sqlite:///{path.as_posix()}/memory.db"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a parent that is a file, a read-only or missing mount: not a traceback
            above = next((p for p in path.absolute().parents if p.exists()), None)
            why = (
                f"{above} is a file, not a folder"
                if above is not None and not above.is_dir()
                else exc.strerror or exc
            )
            raise ConfigurationError(
                f"memory URL {safe_url(parsed)!r}: cannot create its folder {path.parent} ({why})"
            ) from None
    engine = sa.create_engine(parsed, **kwargs)
    file = None if is_memory_sqlite(parsed) else _file_key(parsed)

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        if file is not None:
            cur.execute("PRAGMA journal_mode=WAL")
            with _OPEN_LOCK:
                _OPEN.setdefault(file, {})[id(dbapi_conn)] = dbapi_conn
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.close()

    if file is not None:

        @sa.event.listens_for(engine, "close")
        @sa.event.listens_for(engine, "close_detached")
        def _closed(dbapi_conn: Any, *_: Any) -> None:
            with _OPEN_LOCK:
                _OPEN.get(file, {}).pop(id(dbapi_conn), None)

    return engine


def _file_key(url: URL) -> str:
    return os.path.realpath(url.database or "")


def _held_here(file: str) -> bool:
    """Whether a memory connection of this process holds ``file``'s write lock (is in a transaction)."""
    with _OPEN_LOCK:
        connections = list(_OPEN.get(file, {}).values())
    for conn in connections:
        try:
            if conn.in_transaction:
                return True
        except sqlite3.ProgrammingError:  # closed without the pool's close event (a collected engine)
            with _OPEN_LOCK:
                _OPEN.get(file, {}).pop(id(conn), None)
    return False


STOP_LOCKED_S = 0.5
"""At :meth:`~agentroute.memory.sql.SQLMemory.close`, with writes not yet stored: how long another process must hold the
SQLite file's write lock for them to be given up at once (a Ctrl-C of ``agentroute serve`` beside
a ``sqlite3`` shell in a transaction waited 31 s: a try's busy timeout, then ``--drain-s``)."""


LOCK_TRY_S = (0.002, 0.01)
"""The bounds of the random pause between two tries of the lock while it is watched for a break
(random: tries at a fixed pace could keep landing in another process's periodic transactions)."""


def held_throughout(engine: Engine, seconds: float, stop: threading.Event | None = None) -> bool:
    """Whether another process holds the write lock of ``engine``'s SQLite file for all of
    ``seconds``: tried without waiting every few milliseconds, ``False`` at the first try that
    finds it free (:func:`write_locked`) or once ``stop`` is set."""
    end = time.monotonic() + seconds
    stop = stop or threading.Event()
    while write_locked(engine):
        if time.monotonic() >= end:
            return True
        if stop.wait(random.uniform(*LOCK_TRY_S)):
            return False
    return False


def write_locked(engine: Engine, wait_s: float = 0.0) -> bool:
    """Whether another process holds the write lock of ``engine``'s SQLite file and keeps it
    ``wait_s`` more: a ``BEGIN IMMEDIATE`` on a connection of its own, rolled back at once, busy while
    no memory connection of this process is in a write transaction (the memory's own writer, another
    memory on the file: their lock goes with their transaction). ``False`` for PostgreSQL, an
    in-memory database, or a file that cannot be opened (other checks say that)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or is_memory_sqlite(url):
        return False
    file = _file_key(url)
    return not _held_here(file) and _busy(url, wait_s) and not _held_here(file)


def _busy(url: URL, wait_s: float) -> bool:
    """Whether a ``BEGIN IMMEDIATE`` on ``url``'s file is refused as busy after ``wait_s``."""
    try:  # mode=rw: a missing file is not created
        conn = sqlite3.connect(
            f"{Path(url.database or '').absolute().as_uri()}?mode=rw", uri=True, timeout=wait_s
        )
    except sqlite3.Error:
        return False
    try:
        conn.isolation_level = None
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        code = getattr(exc, "sqlite_errorcode", sqlite3.SQLITE_BUSY) & 0xFF  # the primary code
        return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    finally:
        conn.close()
    return False


def connect_failure(exc: BaseException | None) -> str | None:
    """Why connecting to the memory's database failed, as one line; ``None`` when ``exc`` is not a
    failure to connect (a DBAPI error raised with no statement: a refused, unreachable or unknown
    host, a wrong password, a missing role or database, a SQLite file that cannot be opened).

    The driver's message loses its ``connection failed:`` prefix and its line breaks (libpq adds a
    hint on a second line, and lines for each address it tried): its lines joined by ``;``, each once.

    >>> import sqlalchemy as sa
    >>> class Refused(Exception): pass
    >>> error = sa.exc.OperationalError(None, None, Refused(
    ...     'connection failed: connection to server at "127.0.0.1", port 1 failed: Connection refused\\n'
    ...     '\\tIs the server running on that host and accepting TCP/IP connections?'))
    >>> connect_failure(error)
    'connection to server at "127.0.0.1", port 1 failed: Connection refused; Is the server running on that host and accepting TCP/IP connections?'
    >>> connect_failure(RuntimeError("no")) is None
    True
    """
    if not isinstance(exc, sa.exc.DBAPIError) or exc.statement is not None:
        return None
    lines: list[str] = []
    for line in str(exc.orig).splitlines():
        line = " ".join(line.split()).removeprefix("connection failed: ")
        if line and line not in lines:
            lines.append(line)
    return "; ".join(lines) or type(exc.orig).__name__

"""A PostgreSQL memory's connections carry TCP keepalives and a ``tcp_user_timeout`` (libpq's
defaults have none: a connection whose peer vanished stalled a write until the writer gave it up,
a read forever), the URL's own parameters winning; checked on real connections, down to the socket.

Not tested here: a blackholed connection failing within the bound. Dropping loopback packets needs
root (iptables, a network namespace); a proxy that stops forwarding still acknowledges keepalive
probes at the TCP level, so it cannot stand for a vanished peer."""

from __future__ import annotations

import os
import socket

import pytest
import sqlalchemy as sa

from agentroute.memory import SQLMemory
from agentroute.memory.engine import create_memory_engine

pytestmark = pytest.mark.postgres


def libpq_options(engine) -> tuple[dict[str, str], dict[str, int]]:
    """The connection's libpq options and its socket's TCP options (Linux names, where they exist)."""
    with engine.connect() as conn:
        pgconn = conn.connection.driver_connection.pgconn
        options = {o.keyword.decode(): (o.val or b"").decode() for o in pgconn.info}
        sock = socket.socket(fileno=os.dup(pgconn.socket))
        try:
            if sock.family == socket.AF_UNIX:  # no TCP options
                return options, {}
            tcp = {name: sock.getsockopt(socket.IPPROTO_TCP, getattr(socket, name))
                   for name in ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "TCP_USER_TIMEOUT")
                   if hasattr(socket, name)}  # fmt: skip
            tcp["SO_KEEPALIVE"] = sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        finally:
            sock.close()
    return options, tcp


def test_a_memory_connection_carries_tcp_keepalives_and_a_user_timeout(postgres_url: str) -> None:
    memory = SQLMemory(postgres_url)
    try:
        options, tcp = libpq_options(memory.engine)
    finally:
        memory.close()
    libpq = {"keepalives": "1", "keepalives_idle": "5", "keepalives_interval": "2", "keepalives_count": "4",
             "tcp_user_timeout": "12000"}  # fmt: skip
    assert {k: options[k] for k in libpq} == libpq  # a silent peer: dead in 5 + 4 × 2 = 13 s; unacked data: 12 s
    assert tcp["SO_KEEPALIVE"] == 1
    expected = {"TCP_KEEPIDLE": 5, "TCP_KEEPINTVL": 2, "TCP_KEEPCNT": 4, "TCP_USER_TIMEOUT": 12_000}
    assert {k: v for k, v in tcp.items() if k in expected} == {k: v for k, v in expected.items() if k in tcp}


def test_the_urls_own_tcp_parameters_win(postgres_url: str) -> None:
    engine = create_memory_engine(f"{postgres_url}?keepalives_idle=60&tcp_user_timeout=0", libpq={"keepalives_count": 9})
    try:
        options, tcp = libpq_options(engine)
    finally:
        engine.dispose()
    assert (options["keepalives_idle"], options["tcp_user_timeout"]) == ("60", "0")
    assert (options["keepalives_interval"], options["keepalives_count"]) == ("2", "9")  # default; the caller's
    if "TCP_KEEPIDLE" in tcp:
        assert (tcp["TCP_KEEPIDLE"], tcp["TCP_KEEPCNT"]) == (60, 9)


def test_a_unix_socket_connection_opens_with_them(postgres_url: str) -> None:
    """libpq ignores TCP settings on a Unix-domain socket (``?host=/run/postgresql``): it connects."""
    url = sa.make_url(postgres_url)
    with SQLMemory(postgres_url) as memory, memory.engine.connect() as conn:
        folder = str(conn.exec_driver_sql("SHOW unix_socket_directories").scalar()).split(",")[0].strip()
    engine = create_memory_engine(url.set(host=None, port=None, query={"host": folder, "port": str(url.port)}))
    try:
        options, tcp = libpq_options(engine)
    finally:
        engine.dispose()
    assert options["host"] == folder and options["keepalives_idle"] == "5" and tcp == {}

"""``agentroute serve`` on a SQLite memory whose write lock is held by *this* process past
``LOCKED_AFTER_S``: the memory's own writer committing a batch on a slow disk, or another memory of
the process on the same file (a ``reconcile`` in the same notebook). That lock goes as soon as its
transaction ends, so the request waits for it and is answered; it was refused at once with a 503
saying the file ``is locked by another process``, the next requests with it, and ``/health`` said
``locked`` (the same ``BEGIN IMMEDIATE`` probe is busy whoever holds the lock)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
import sqlalchemy as sa

import agentroute.serve.routed as routed
from agentroute.memory import SQLMemory
from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool
from tests.fixtures_reply_server import ReplyServer

pytest.importorskip("fastapi")
from agentroute.serve import ServerThread  # noqa: E402

HOLD_S = 0.6  # how long this process holds the write lock: past LOCKED_AFTER_S, within memory_wait_s
ASK = {"model": "router", "messages": [{"role": "user", "content": "hi"}]}


def call(url: str, body: dict | None = None) -> tuple[int, dict[str, Any]]:
    """``(status, JSON body)`` of a GET (or a POST of ``body``)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A routed server on ``tmp_path/m.db``, warmed up (its memory's connections open)."""
    monkeypatch.setattr(routed, "LOCKED_AFTER_S", 0.15)
    monkeypatch.setattr(routed, "LOCK_POLL_S", 0.05)
    with ReplyServer() as provider:
        card = ModelCard(id="small", backend="openai", model="plain", base_url=provider.url,
                         input_price=0.1, output_price=0.2, max_tokens=8, timeout_s=10)  # fmt: skip
        server = ServerThread(ModelPool([card]), router="cheapest", memory=f"sqlite:///{tmp_path / 'm.db'}",
                              memory_wait_s=5.0).start()  # fmt: skip
        try:
            assert call(f"{server.url}/chat/completions", ASK)[0] == 200
            yield server
        finally:
            server.stop(timeout=10)


def answered_while_held(server: ServerThread, held: threading.Event) -> None:
    """A request sent while this process holds the lock is answered once it is free; ``/health``
    meanwhile is not ``locked``."""
    code, body = call(f"{server.url}/chat/completions", ASK)
    assert held.is_set()  # the lock was held while the request waited
    assert code == 200, body  # was: 503 '... is locked by another process'
    code, body = call(server.url.removesuffix("/v1") + "/health")
    assert (code, body["memory"]["state"]) == (200, "ok"), body


def test_the_memorys_own_slow_commit_is_waited_for_not_called_another_process(served) -> None:
    memory = served.routing.memory
    held = threading.Event()

    def slow_disk(conn, cursor, statement, *_: Any) -> None:  # the writer's batch, holding the lock
        if statement.startswith(("INSERT", "UPDATE")) and threading.current_thread().name.endswith("writer") \
                and not held.is_set():  # fmt: skip
            held.set()
            time.sleep(HOLD_S)

    memory.flush()  # the warm-up's writes stored: the request's own batch is the slow one
    sa.event.listen(memory.engine, "after_cursor_execute", slow_disk)
    try:
        answered_while_held(served, held)
    finally:
        sa.event.remove(memory.engine, "after_cursor_execute", slow_disk)


def test_another_memory_of_this_process_holding_the_lock_is_waited_for(served, tmp_path) -> None:
    held = threading.Event()

    def reconcile_like() -> None:  # another memory of the process, in a write transaction
        with SQLMemory(f"sqlite:///{tmp_path / 'm.db'}") as other, other.engine.begin() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            held.set()
            time.sleep(HOLD_S)

    holder = threading.Thread(target=reconcile_like)
    holder.start()
    try:
        assert held.wait(5)
        answered_while_held(served, held)
    finally:
        holder.join(10)

"""A server stopped while another process holds its SQLite memory's write lock leaves no thread of
its own behind: the watch that tells a held lock from a busy file (``routed.FileLock``) ends with
the server (was: it went on trying the file every few milliseconds for the rest of
``LOCKED_AFTER_S``, after ``stop()`` had returned). The memory here is the user's own (a notebook's
``SQLMemory``): the server flushes it for ``memory_wait_s`` at most, then leaves it to its owner."""

from __future__ import annotations

import threading

import pytest

import agentroute.serve.routed as routed
from agentroute.memory import SQLMemory
from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool
from tests.fixtures_reply_server import ReplyServer
from tests.test_serve_sqlite_locked_fast import Holder, call

pytest.importorskip("fastapi")
from agentroute.serve import ServerThread  # noqa: E402


def test_stopping_the_server_ends_its_lock_watch(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(routed, "LOCKED_AFTER_S", 30.0)  # a watch still running at stop (1 s by default)
    monkeypatch.setattr(routed, "LOCK_POLL_S", 0.02)
    path = tmp_path / "m.db"
    with ReplyServer() as provider, SQLMemory(f"sqlite:///{path}") as memory:
        card = ModelCard(id="small", backend="openai", model="plain", base_url=provider.url,
                         input_price=0.1, output_price=0.2, max_tokens=8, timeout_s=10)  # fmt: skip
        before = set(threading.enumerate())
        server = ServerThread(ModelPool([card]), router="cheapest", memory=memory, memory_wait_s=0.3).start()
        ask = {"model": "router", "messages": [{"role": "user", "content": "hi"}]}
        holder = Holder(path)
        try:
            assert call(f"{server.url}/chat/completions", ask)[0] == 200
            holder.lock()
            assert call(f"{server.url}/chat/completions", ask)[0] == 503  # after memory_wait_s, watched meanwhile
            server.stop(timeout=10)
            # the flush of the user's memory waits for the lock, by design (its owner closes it)
            left = [t.name for t in threading.enumerate() if t not in before and t.name != "agentroute-serve-flush"]
            assert left == [], left  # was: ['Thread-… (held_over)']
        finally:
            server.stop(timeout=10)
            holder.release()
            holder.close()

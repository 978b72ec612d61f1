"""``agentroute serve --memory sqlite:///m.db`` while another process holds ``m.db``'s write lock (a
``sqlite3`` shell in ``BEGIN EXCLUSIVE``, a ``VACUUM``): the memory is known ``locked`` once a
write has waited ``LOCKED_AFTER_S`` on that lock, or ``/health`` could not take it, so requests are
refused with the retryable 503 at once and ``/health`` is a 503 naming the lock (was: ``/health``
200 ``ok`` for the 30 s busy timeout, every request waiting its whole ``memory_wait_s``). Once the
lock goes the server answers again and everything recorded is stored."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

import agentroute.serve.routed as routed
from agentroute.memory import SQLMemory
from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool
from tests.fixtures_reply_server import ReplyServer

pytest.importorskip("fastapi")
from agentroute.serve import ServerThread  # noqa: E402

WAIT_S = 5.0  # the server's memory_wait_s (the default): what each request waited before
LOCKED_AFTER_S = 0.15
HOLD = """import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
for line in sys.stdin:
    c.execute("BEGIN EXCLUSIVE" if line == "lock\\n" else "ROLLBACK")
    print("done", flush=True)
"""


def call(url: str, body: dict | None = None) -> tuple[int, dict, Any, float]:
    """``(status, JSON body, headers, seconds)`` of a GET (or a POST of ``body``)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read()), response.headers, time.monotonic() - started
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers, time.monotonic() - started


class Holder:
    """Another process that holds the file's write lock from :meth:`lock` to :meth:`release`."""

    def __init__(self, path) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)  # fmt: skip

    def _say(self, line: str) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(line)
        self.process.stdin.flush()
        assert self.process.stdout.readline() == "done\n"

    def lock(self) -> None:
        self._say("lock\n")

    def release(self) -> None:
        self._say("free\n")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.communicate("", timeout=10)


def test_a_locked_sqlite_memory_is_refused_fast_and_named_locked(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(routed, "LOCKED_AFTER_S", LOCKED_AFTER_S, raising=False)  # 1 s by default
    monkeypatch.setattr(routed, "LOCK_POLL_S", 0.05, raising=False)
    path = tmp_path / "m.db"
    with ReplyServer() as provider:
        card = ModelCard(id="small", backend="openai", model="plain", base_url=provider.url,
                         input_price=0.1, output_price=0.2, max_tokens=8, timeout_s=10)  # fmt: skip
        server = ServerThread(ModelPool([card]), router="cheapest", memory=f"sqlite:///{path}", memory_wait_s=WAIT_S).start()
        chat, health = f"{server.url}/chat/completions", server.url.removesuffix("/v1") + "/health"
        ask = {"model": "router", "messages": [{"role": "user", "content": "hi"}]}
        holder = Holder(path)
        try:
            assert call(chat, ask)[0] == 200
            holder.lock()
            # the first request finds the lock by its write-ahead record's wait; the next at once
            for most_s in (LOCKED_AFTER_S + 2.0, 1.0, 1.0):  # slack for a loaded machine
                code, body, headers, took = call(chat, ask)
                assert (code, body["error"]["code"]) == (503, "memory_unavailable"), body
                assert headers["Retry-After"] == "2" and headers["x-should-retry"] == "true"
                assert "locked by another process" in body["error"]["message"], body
                assert took < most_s, (took, most_s)  # was: each waited WAIT_S
            code, body, _, _ = call(health)
            assert code == 503 and body["memory"]["state"] == "locked", body
            assert f"{path} is locked by another process" in body["memory"]["error"], body
            holder.release()
            for _ in range(40):  # back within a lock re-check and a writer retry
                if call(health)[0] == 200:
                    break
                time.sleep(0.05)
            assert call(chat, ask)[0] == 200
            holder.lock()  # an idle server: /health finds the lock itself
            code, body, _, took = call(health)
            assert code == 503 and body["memory"]["state"] == "locked" and took < WAIT_S, (body, took)
            assert call(chat, ask)[0] == 503
            holder.release()
        finally:
            holder.close()
            server.stop(timeout=10)
    with SQLMemory(f"sqlite:///{path}") as stored:
        statuses = sorted(t.task.status for t in stored.trajectories())
    assert statuses == ["done", "done", "interrupted"], statuses  # the refused-at-once made no task

"""``agentroute serve --memory sqlite:///m.db`` while another process keeps writing to ``m.db`` in
short transactions (busy, but its lock free between them): requests are answered (200), not refused
as ``locked`` whenever a lock probe lands inside one of those transactions. The memory is known
``locked`` only once the write lock was seen held throughout ``LOCKED_AFTER_S`` (was: a write-ahead
record that had waited ``LOCKED_AFTER_S`` plus one instant probe that found the lock held flipped
requests to 503 for the next ``LOCK_RECHECK_S``). A lock held without a break is still refused fast:
tests/test_serve_sqlite_locked_fast.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

import agentroute.serve.routed as routed
from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool
from tests.fixtures_reply_server import ReplyServer
from tests.test_serve_sqlite_locked_fast import call

pytest.importorskip("fastapi")
from agentroute.serve import ServerThread  # noqa: E402

LOCKED_AFTER_S = 0.15
# another process writing in transactions of 60 ms every 80 ms, for 30 s at most (stopped by the test)
BUSY = """import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
c.execute("CREATE TABLE IF NOT EXISTS other_steps (at REAL)")
print("ready", flush=True)
end = time.monotonic() + 30
while time.monotonic() < end:
    c.execute("BEGIN IMMEDIATE")
    c.execute("INSERT INTO other_steps VALUES (?)", (time.time(),))
    time.sleep(0.06)
    c.execute("COMMIT")
    time.sleep(0.02)
"""


def test_a_busy_but_progressing_sqlite_memory_is_not_reported_locked(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(routed, "LOCKED_AFTER_S", LOCKED_AFTER_S)  # 1 s by default
    monkeypatch.setattr(routed, "LOCK_POLL_S", 0.02)
    path = tmp_path / "m.db"
    with ReplyServer() as provider:
        card = ModelCard(id="small", backend="openai", model="plain", base_url=provider.url,
                         input_price=0.1, output_price=0.2, max_tokens=8, timeout_s=10)  # fmt: skip
        server = ServerThread(ModelPool([card]), router="cheapest", memory=f"sqlite:///{path}").start()
        chat = f"{server.url}/chat/completions"
        ask = {"model": "router", "messages": [{"role": "user", "content": "hi"}]}
        busy = None
        try:
            assert call(chat, ask)[0] == 200
            busy = subprocess.Popen([sys.executable, "-c", BUSY, str(path)], stdout=subprocess.PIPE, text=True)
            assert busy.stdout is not None and busy.stdout.readline() == "ready\n"
            answers = [call(chat, ask) for _ in range(6)]  # some wait 0.25 s and more on the writer
            codes = [code if code == 200 else body["error"]["message"] for code, body, _, _ in answers]
            assert codes == [200] * 6, codes  # was: 503 "locked by another process" among them
        finally:
            if busy is not None:
                busy.kill()
                busy.wait(10)
            server.stop(timeout=10)

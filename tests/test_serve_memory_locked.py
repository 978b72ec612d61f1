"""``agentroute serve`` over a SQLite memory whose file another process holds locked as the server
stops (a ``memory`` command, a second writer): the server exits instead of waiting for the lock,
forever for a memory opened as ``agentroute serve`` opens it (``retry_s=math.inf``)."""

from __future__ import annotations

import math
import sqlite3
import time

import openai
import pytest

import agentroute.memory.engine
from agentroute.memory import SQLMemory
from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool
from tests.fixtures_adversary import Adversary

pytest.importorskip("fastapi")
from agentroute.serve import ServerThread  # noqa: E402

WAIT_S = 0.3  # the server's memory_wait_s


def test_a_server_stopped_while_its_memory_file_is_locked_exits(tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(agentroute.memory.engine, "SQLITE_BUSY_TIMEOUT_MS", 1500)  # 30 s by default
    path = tmp_path / "m.db"
    memory = SQLMemory(f"sqlite:///{path}", retry_s=math.inf)  # the store the CLI opens and gives the server
    lock = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        with Adversary() as provider:
            card = ModelCard(id="small", backend="openai", model="honest-small", base_url=provider.url,
                             input_price=0.1, output_price=0.2, max_tokens=8, timeout_s=10)  # fmt: skip
            server = ServerThread(ModelPool([card]), router="cheapest", memory=memory, memory_wait_s=WAIT_S).start()
            client = openai.OpenAI(base_url=server.url, api_key="x", max_retries=0, timeout=20)
            try:
                ask = {"model": "router", "messages": [{"role": "user", "content": "hi"}]}
                assert client.chat.completions.create(**ask).choices[0].message.content
                lock.execute("BEGIN EXCLUSIVE")
                with pytest.raises(openai.APIStatusError) as refused:  # its write-ahead record waits on the lock
                    client.chat.completions.create(**ask)
                assert refused.value.status_code == 503
                started = time.monotonic()
            finally:
                server.stop(timeout=10)
            took = time.monotonic() - started
        assert took < WAIT_S + 1.0, took  # was: the 10 s join timed out, the server still flushing
        # the lock is known held: no flush is waited for (was: memory_wait_s), the writes are its owner's to close
        assert "agentroute serve: memory:" not in capfd.readouterr().err
        lock.rollback()  # the lock is released: the owner's close stores what was kept
        memory.close()
        with SQLMemory(f"sqlite:///{path}") as stored:
            statuses = sorted(t.task.status for t in stored.trajectories())
        assert statuses == ["done", "interrupted"], statuses
    finally:
        lock.close()
        memory.close()

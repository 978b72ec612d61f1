"""A routed request whose model call is already in flight when the server learns that another process
holds its SQLite memory's write lock is answered: its call was sent (and billed), only a request
whose write-ahead record still waits is given up. It was cancelled mid-call and told to retry (a
503, the call paid twice) as soon as any other request found the file locked."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

import agentroute.serve.routed as routed
from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool
from tests.fixtures_reply_server import JSONHandler, LoopbackServer

pytest.importorskip("fastapi")
from agentroute.serve import ServerThread  # noqa: E402

HOLD = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); c.execute('BEGIN EXCLUSIVE'); print('held', flush=True); sys.stdin.readline()"  # noqa: E501


class _Upstream(JSONHandler):
    """Streams ``ok``; a question containing ``slow`` once the test sets ``server.go``."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.chat_body()
        if body is None:
            return
        if "slow" in json.dumps(body["messages"]):
            self.server.arrived.set()  # type: ignore[attr-defined]
            self.server.go.wait(10)  # type: ignore[attr-defined]
        usage = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
        chunk = {"id": "u1", "created": 0, "model": body.get("model", "m"), "object": "chat.completion.chunk"}
        self.start_events()
        self.send_event({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "ok"}, "finish_reason": None}]})
        self.send_event({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage})
        self.send_event("[DONE]")


def ask(server: ServerThread, question: str) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"model": "router", "messages": [{"role": "user", "content": question}]}).encode()
    request = urllib.request.Request(f"{server.url}/chat/completions", data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_call_in_flight_is_answered_when_the_file_becomes_known_locked(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(routed, "LOCKED_AFTER_S", 0.15)
    monkeypatch.setattr(routed, "LOCK_POLL_S", 0.05)
    path = tmp_path / "m.db"
    with LoopbackServer(_Upstream) as upstream:
        upstream.arrived, upstream.go = threading.Event(), threading.Event()  # type: ignore[attr-defined]
        card = ModelCard(id="plain", backend="openai", model="plain", base_url=upstream.url,
                         input_price=1.0, output_price=2.0, max_tokens=8, timeout_s=10)  # fmt: skip
        server = ServerThread(ModelPool([card]), router="cheapest", memory=f"sqlite:///{path}").start()
        holder: subprocess.Popen[str] | None = None
        try:
            assert (warm := ask(server, "warm"))[0] == 200, warm
            answered: list[tuple[int, dict[str, Any]]] = []
            slow = threading.Thread(target=lambda: answered.append(ask(server, "slow")))
            slow.start()
            assert upstream.arrived.wait(10)  # its write-ahead record stored, its call sent
            holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True)  # fmt: skip
            assert holder.stdout is not None and holder.stdout.readline() == "held\n"
            code, body = ask(server, "fast")  # finds the lock: the memory is known locked now
            assert code == 503 and "locked by another process" in body["error"]["message"], body
            time.sleep(0.3)  # the waiting request looks at the lock every LOCK_POLL_S meanwhile
            upstream.go.set()
            slow.join(10)
            assert answered and answered[0][0] == 200, answered  # was: 503, its call cancelled mid-flight
            assert answered[0][1]["choices"][0]["message"]["content"] == "ok"
            assert sum("slow" in json.dumps(r["messages"]) for r in upstream.requests) == 1  # sent once
        finally:
            upstream.go.set()
            if holder is not None and holder.poll() is None:
                holder.communicate("\n", timeout=10)
            server.stop(timeout=10)

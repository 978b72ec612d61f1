"""``agentroute serve --router`` stopped (SIGTERM) while routed requests are in flight: after
``--drain-s`` their tasks are cancelled, and the memory must say so (``interrupted``, the cancelled
call's cost kept as a step), not hold them ``running`` at $0 for ever."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.fixtures_openai_server import SERVER_MODEL
from tests.test_serve_user_paths import free_port, start_cli, wait_up

pytest.importorskip("fastapi")


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
def test_sigterm_mid_request_ends_the_routed_task_interrupted(tmp_path: Path, stream: bool) -> None:
    port, db = free_port(), tmp_path / "served.db"
    process = start_cli(None, port, "--router", "cheapest", "--memory", f"sqlite:///{db}", "--drain-s", "1")
    body = {
        "model": "router",
        "messages": [{"role": "user", "content": "Write a long story about a dragon."}],
        "max_tokens": 1200,
        "stream": stream,
    }
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=120))
        except httpx.TransportError as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    try:
        wait_up(process, port)
        assert SERVER_MODEL in httpx.get(f"http://127.0.0.1:{port}/health").json()["models"]
        caller.start()
        time.sleep(3)  # the routed call generates (SmolLM2 writes 600 tokens: about half a minute)
        process.send_signal(signal.SIGTERM)
        out = process.communicate(timeout=60)[0]
        caller.join(30)
    finally:
        process.kill()
        caller.join(30) if caller.is_alive() else None
    assert process.returncode == -signal.SIGTERM and "Traceback" not in out, out
    if not stream:  # cut before its answer: a retryable 503 in OpenAI's shape, not a dropped connection
        [reply] = outcome
        assert isinstance(reply, httpx.Response) and reply.status_code == 503, reply
        assert reply.json()["error"]["code"] == "server_stopping", reply.text
    with sqlite3.connect(db) as con:
        tasks = con.execute("SELECT id, status, cost_usd FROM tasks").fetchall()
        steps = con.execute("SELECT task_id, status, cost_usd FROM steps").fetchall()
    con.close()
    assert [status for _, status, _ in tasks] == ["interrupted"], (tasks, out)
    [(task_id, _, cost)] = tasks
    assert [(s[0], s[1]) for s in steps] == [(task_id, "failed")] and steps[0][2] > 0, steps
    assert cost == pytest.approx(steps[0][2]), (tasks, steps)  # the bill is the step's

"""``agentroute serve`` with a PostgreSQL memory whose server goes down under it, as a user of the
OpenAI SDK sees it: a routed request is refused at once with a retryable 503 (its model call never
made) instead of hanging for the outage, ``/health`` says the memory is down, and the rows of a call
answered during the outage are stored when the database returns, however long it stayed down.

Real servers on loopback: a PostgreSQL server of this module (stopped and started under the
server), ``agentroute serve`` in a thread (:class:`ServerThread`), an OpenAI-compatible upstream
that counts its calls (and answers ``slow`` questions after :data:`SLOW_S`).
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import sqlalchemy as sa

import agentroute
from agentroute.memory import SQLMemory
from agentroute.memory.pgserver import PostgresServer, find_bindir
from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool
from tests.fixtures_reply_server import JSONHandler, LoopbackServer
from tests.test_serve_stop_during_outage import Proxy

pytest.importorskip("fastapi")
from agentroute.serve import ServerThread  # noqa: E402

pytestmark = pytest.mark.postgres
ROOT = Path(agentroute.__file__).resolve().parents[1]
SLOW_S = 0.8
WAIT_S = 0.5  # the servers' memory_wait_s


class _Upstream(JSONHandler):
    """Answers every chat request with ``ok``; a question containing ``slow`` after ``SLOW_S``."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.chat_body()
        if body is None:
            return
        if "slow" in json.dumps(body["messages"]):
            time.sleep(SLOW_S)
        usage = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
        base = {"id": "u1", "created": 0, "model": body.get("model", "m")}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "ok"}
            self.send_json(200, {**base, "object": "chat.completion", "usage": usage,
                                 "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})  # fmt: skip
            return
        self.start_events()
        chunk = {**base, "object": "chat.completion.chunk"}
        self.send_event({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "ok"}, "finish_reason": None}]})
        self.send_event({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        self.send_event({**chunk, "choices": [], "usage": usage})
        self.send_event("[DONE]")


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this module alone (it is stopped under the servers)."""
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'agentroute[postgres]'")
    if find_bindir() is None:
        pytest.skip("PostgreSQL server binaries not found: apt-get install postgresql")
    server = PostgresServer(durable=False).start()
    try:
        SQLMemory(server.url).close()  # the schema, once
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def upstream() -> Iterator[LoopbackServer]:
    with LoopbackServer(_Upstream) as server:
        yield server


def serving(pg: PostgresServer, upstream: LoopbackServer) -> ServerThread:
    card = ModelCard(id="plain", backend="openai", model="plain", base_url=upstream.url,
                     input_price=1.0, output_price=2.0, max_tokens=8, timeout_s=10)  # fmt: skip
    return ServerThread(ModelPool([card]), router="cheapest", memory=pg.url, memory_wait_s=WAIT_S)


class Outage:
    """``with Outage(pg, down_s):`` the server is down inside the block (fast shutdown: connections
    cut) and stays down ``down_s`` in all; leaving the block waits until it is up again."""

    def __init__(self, pg: PostgresServer, down_s: float) -> None:
        self.pg = pg
        self._thread = threading.Thread(target=pg.restart, kwargs={"down_s": down_s}, daemon=True)

    def __enter__(self) -> Outage:
        self._thread.start()
        for _ in range(200):  # until the port refuses connections (pg_ctl stop takes ~0.3 s)
            try:
                socket.create_connection(("127.0.0.1", self.pg.port), timeout=0.2).close()
            except OSError:
                return self
            time.sleep(0.02)
        raise AssertionError("the PostgreSQL server did not go down")

    def __exit__(self, *exc: object) -> None:
        self._thread.join(30)
        assert not self._thread.is_alive(), "the PostgreSQL server did not come back"


def sdk(server: ServerThread, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key="x", **{"max_retries": 0, "timeout": 20, **kwargs})


def ask(server: ServerThread, query: str, **extra: Any) -> tuple[int, dict[str, str], float]:
    """``(status, headers, seconds)`` of one routed request (no retries)."""
    started = time.monotonic()
    try:
        raw = sdk(server).chat.completions.with_raw_response.create(
            model="router", messages=[{"role": "user", "content": query}], extra_body=extra or None
        )
        return raw.status_code, dict(raw.headers), time.monotonic() - started
    except openai.APIStatusError as exc:
        return exc.status_code, dict(exc.response.headers), time.monotonic() - started


def warm(server: ServerThread, query: str) -> int:
    """The status of a server's first routed request, a 503 asked again (twice at most): the first
    write opens the memory's connections, which took more than ``WAIT_S`` on a loaded machine."""
    for _ in range(3):
        if (status := ask(server, query)[0]) != 503:
            break
    return status


def get_health(server: ServerThread) -> tuple[int, dict[str, Any]]:
    import urllib.error
    import urllib.request

    url = server.url.removesuffix("/v1") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_healthy(server: ServerThread) -> None:
    for _ in range(100):  # the writer retries every 2 s at most
        if get_health(server)[0] == 200:
            return
        time.sleep(0.05)
    raise AssertionError(f"/health did not come back: {get_health(server)}")


def tasks(pg: PostgresServer, prefix: str) -> dict[str, tuple[str, str]]:
    """query → (task id, status) of the stored tasks whose query starts with ``prefix``."""
    engine = sa.create_engine(pg.url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("select query, id, status from tasks where query like :p"), {"p": prefix + "%"})
            return {q: (i, s) for q, i, s in rows}
    finally:
        engine.dispose()


def calls(upstream: LoopbackServer, prefix: str) -> int:
    return sum(prefix in json.dumps(r.get("messages")) for r in upstream.requests)


def test_requests_during_an_outage_fail_fast_and_retryably_without_a_model_call(
    pg: PostgresServer, upstream: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agentroute.serve.routed

    monkeypatch.setattr(agentroute.serve.routed, "RETRY_AFTER_S", 1)  # the clients' retries, sooner
    with serving(pg, upstream) as first, serving(pg, upstream) as second:
        assert warm(first, "ff-warm-1") == 200 and warm(second, "ff-warm-2") == 200
        assert get_health(first)[0] == 200
        for server in (first, second):  # nothing left to write: the outage meets idle writers
            server.routing.memory.flush()  # type: ignore[union-attr]
        before = calls(upstream, "ff-")
        with Outage(pg, down_s=2.0):
            # the write-ahead record cannot be stored: a retryable 503 after memory_wait_s, not the outage
            status, headers, took = ask(first, "ff-held")
            assert (status, headers.get("x-should-retry")) == (503, "true"), (status, headers)
            assert headers.get("retry-after") == "1" and took < WAIT_S + 1.0, (headers, took)
            held = headers["x-agentroute-task-id"]
            # a deadline that comes while the memory holds the record: the outage, not the budget (was 402, no retry)
            status, headers, _ = ask(second, "ff-deadline", agentroute={"budget": {"seconds": 0.3}})
            assert (status, headers.get("x-should-retry")) == (503, "true"), (status, headers)
            # the memory is known down now: refused at once, and /health says why
            status, headers, took = ask(first, "ff-fast")
            assert (status, headers.get("x-should-retry")) == (503, "true") and took < 1.0, (status, took)
            with pytest.raises(openai.APIStatusError) as streamed:  # a stream too: a 503, not a 200 with an error event
                sdk(first).chat.completions.create(
                    model="router", messages=[{"role": "user", "content": "ff-stream"}], stream=True
                )
            assert streamed.value.status_code == 503 and streamed.value.response.headers["x-should-retry"] == "true"
            code, body = get_health(first)
            assert code == 503 and body["memory"]["state"] == "refusing_writes", body
            assert body["memory"]["error"], body
            # the OpenAI SDK's own retries (Retry-After: 1) carry a request over the outage
            retried = sdk(first, max_retries=8).chat.completions.create(
                model="router", messages=[{"role": "user", "content": "ff-retried"}]
            )
            assert retried.choices[0].message.content == "ok"
        assert calls(upstream, "ff-") == before + 1  # ff-retried's one call, made once the memory was back
        wait_healthy(first)
        assert ask(first, "ff-after")[0] == 200
        first.routing.memory.flush()  # type: ignore[union-attr]
        second.routing.memory.flush()  # type: ignore[union-attr]
    stored = tasks(pg, "ff-")
    assert stored["ff-held"] == (held, "interrupted"), stored
    assert stored["ff-deadline"][1] == "budget_exhausted" and stored["ff-retried"][1] == "done", stored
    assert "running" not in {status for _, status in stored.values()}, stored


def test_a_call_answered_during_a_long_outage_keeps_its_rows(
    pg: PostgresServer, upstream: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agentroute.memory.sql

    monkeypatch.setattr(agentroute.memory.sql, "RETRY_S", 0.5)  # the outage outlasts the memory's default retry_s
    with serving(pg, upstream) as server:
        done: dict[str, Any] = {}
        asking = threading.Thread(target=lambda: done.update(result=ask(server, "long-slow")))
        asking.start()
        for _ in range(200):  # its write-ahead record is stored, its call in flight
            if calls(upstream, "long-slow"):
                break
            time.sleep(0.01)
        with Outage(pg, down_s=2.0):
            asking.join(10)
            assert done["result"][0] == 200  # answered (and billed) while the database is down
        wait_healthy(server)
        server.routing.memory.flush()  # type: ignore[union-attr]
        memory = server.routing.memory
        (task_id, status), = tasks(pg, "long-").values()
        assert status == "done"  # was left running: its step and end were lost after retry_s
        assert memory is not None and len(memory.get_task(task_id).steps) == 1  # type: ignore[union-attr]


def test_memory_wait_s_is_checked_on_the_command_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "agentroute", "serve", "--router", "cheapest", "--memory-wait-s", "0"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "--memory-wait-s must be a number of seconds in (0, 3600]" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_outage_holds_writes_up_to_max_pending_then_gives_up_the_oldest_loudly(pg: PostgresServer) -> None:
    from agentroute.memory.errors import MemoryWriteError
    from agentroute.types import Task

    memory = SQLMemory(pg.url, retry_s=math.inf, batch_size=1, max_pending=2)
    try:
        ids = [f"bound-{k}-{time.monotonic_ns()}" for k in range(4)]
        with Outage(pg, down_s=1.5):
            for task_id in ids:  # the writer retries the first; the last one blocks until room is made
                memory.start_task(Task(id=task_id, query=task_id))
        memory._writer.drain()  # noqa: SLF001 - every write committed or given up
        with pytest.raises(MemoryWriteError) as lost:
            memory.flush()
        given_up = [t.id for t in lost.value.payloads]  # the oldest, while over max_pending waited
        assert given_up and given_up == ids[: len(given_up)] and len(given_up) < len(ids), given_up
        assert [memory.get_task(t) is None for t in ids] == [t in given_up for t in ids]
    finally:
        memory.close()


def test_a_server_stopped_during_an_outage_exits_and_says_what_it_lost(
    pg: PostgresServer, upstream: LoopbackServer, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    import agentroute.memory.writer

    monkeypatch.setattr(agentroute.memory.writer, "RETRY_S", 0.3)  # how long a stopping writer still retries
    server = serving(pg, upstream).start()
    try:
        assert warm(server, "stop-warm") == 200
        with Outage(pg, down_s=1.5):
            assert ask(server, "stop-held")[0] == 503
            started = time.monotonic()
            server.stop()
            assert time.monotonic() - started < 3.0  # not until the database returns
    finally:
        server.stop()
    err = capfd.readouterr().err
    assert "agentroute serve: memory: " in err and "memory write(s) failed" in err, err
    assert "Traceback" not in err, err


class CommitCutter(Proxy):
    """A :class:`Proxy` in front of PostgreSQL that, once :attr:`armed`, forwards the ``COMMIT`` of
    a connection that sent ``marker`` (armed), then cuts that connection before the server's reply
    comes back: the commit is stored, its acknowledgement lost (a network fault)."""

    def __init__(self, port: int, marker: bytes) -> None:
        self.marker, self.armed, self.cut = marker, False, 0
        super().__init__(port)

    def forward(self, data: bytes, sink: socket.socket, upstream: bool, state: dict[str, bool]) -> bool:
        # state: "seen", the connection sent the marker while armed; "mute", its replies are dropped
        if upstream:
            state["seen"] = state.get("seen", False) or (self.armed and self.marker in data)
            if state["seen"] and self.armed and b"COMMIT" in data:
                self.armed, self.cut, state["mute"] = False, self.cut + 1, True
                sink.sendall(data)
                time.sleep(0.2)  # the server commits; its reply is never passed on
                return False
        elif state.get("mute"):
            return False
        sink.sendall(data)
        return True


@pytest.mark.parametrize("marker", [b"COPY", b"INSERT INTO attempts"], ids=["steps", "write-ahead"])
def test_a_commit_whose_reply_is_lost_is_stored_once(pg: PostgresServer, marker: bytes) -> None:
    import asyncio

    from agentroute.budget import Attempt, Cost
    from agentroute.types import Agent, Step, Task

    proxy = CommitCutter(pg.port, marker)
    memory = SQLMemory(pg.url.replace(f":{pg.port}/", f":{proxy.port}/"), retry_s=5.0, prompt_commit=False)
    try:
        task = Task(id=f"cut-{time.monotonic_ns()}", query="cut")
        memory.start_task(task)
        memory.flush()
        proxy.armed = True
        attempt = Attempt(task.id, 0, 0, "executor:m:direct", "executor", Cost(0.01, 10, 1, 0))
        asyncio.run(memory.reserve_attempt(attempt))  # committed at once, alone
        memory.record_step(Step(task_id=task.id, index=0, stage="executor", agent=Agent(model="m"), output="ok"))
        task.status, task.answer = "done", "ok"
        memory.finish_task(task)
        memory.flush()  # steps were: MemoryWriteError (the step inserted again: a duplicate key)
        assert proxy.cut == 1
        stored = memory.get_task(task.id)
        assert stored is not None and stored.task.status == "done", stored  # was: failed, "1 step(s) … not stored"
        assert len(stored.steps) == 1 and len(memory.attempts(task.id)) == 1  # the write-ahead was stored twice
    finally:
        memory.close()
        proxy.close()


def test_lost_writes_are_reported_on_one_line(pg: PostgresServer) -> None:
    from agentroute.memory.errors import MemoryWriteError
    from agentroute.types import Task

    proxy = CommitCutter(pg.port, b"never")
    memory = SQLMemory(pg.url.replace(f":{pg.port}/", f":{proxy.port}/"), retry_s=0.0)
    proxy.close()  # nothing listens there now: a server gone
    memory.engine.dispose()
    try:
        memory.start_task(Task(query="gone"))
        with pytest.raises(MemoryWriteError) as lost:
            memory.flush()
        assert "\n" not in str(lost.value) and "Connection refused" in str(lost.value), str(lost.value)
    finally:
        memory.close()


def test_a_feedback_whose_commit_reply_is_lost_is_stored_once(pg: PostgresServer) -> None:
    """A batch of feedback alone (no row with an id of its own): the retry finds its row by its
    task, source and time; was stored twice, a grader's score counted twice."""
    from agentroute.types import Task

    proxy = CommitCutter(pg.port, b"INSERT INTO feedback")
    memory = SQLMemory(pg.url.replace(f":{pg.port}/", f":{proxy.port}/"), retry_s=5.0)
    try:
        task = Task(id=f"fb-{time.monotonic_ns()}", query="fb")
        memory.start_task(task)
        memory.flush()
        proxy.armed = True
        memory.add_feedback(task.id, 1.0, source="grader")
        memory.flush()
        assert proxy.cut == 1
        with memory.engine.connect() as conn:
            rows = conn.execute(sa.text("select score from feedback where task_id = :t"), {"t": task.id}).all()
        assert [r.score for r in rows] == [1.0], rows
    finally:
        memory.close()
        proxy.close()


def test_an_idle_servers_health_asks_the_database(pg: PostgresServer, upstream: LoopbackServer) -> None:
    """Nothing written since the database went down: ``/health`` was a 200 ``ok`` until a request
    had waited ``memory_wait_s`` for it; it asks the database now (a load balancer moves away)."""
    with serving(pg, upstream) as server:
        assert warm(server, "idle-warm") == 200
        server.routing.memory.flush()  # type: ignore[union-attr]
        assert get_health(server)[0] == 200
        with Outage(pg, down_s=1.0):
            code, body = get_health(server)
            assert code == 503 and body["memory"]["state"] == "unreachable", body
            assert "refused" in body["memory"]["error"], body
        wait_healthy(server)
        assert get_health(server)[1]["memory"]["state"] == "ok"

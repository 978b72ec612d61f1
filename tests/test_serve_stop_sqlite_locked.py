"""``agentroute serve --memory sqlite:///m.db`` stopped with Ctrl-C while another process holds the
file's write lock (a ``sqlite3`` shell in ``BEGIN IMMEDIATE``): it stops at once, naming on one line
the writes it could not store and what becomes of them — what it stored stays, as after a crash,
and ``agentroute memory reconcile`` closes the tasks it left running. Was: 31 s (the writer's try
waits the file's 30 s busy timeout, then ``--drain-s`` more), and four log lines with SQL in them.

One server, three requests: one stored; one whose call is under way as the lock is taken (its
write-ahead record stored, then answered: its step and finish wait for the lock); one refused 503
(its task's rows wait for the lock). After the stop, a reconcile closes the task left running,
its call charged its worst case."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from typing import Any

import httpx

from agentroute.memory import SQLMemory
from tests.fixtures_reply_server import LoopbackServer, _Handler
from tests.test_serve_user_paths import free_port, wait_up

# another process: opens the file, takes its write lock on the line "lock", holds it until stdin ends
HOLD = (
    "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\nsys.stdin.readline()\n"
    "c.execute('BEGIN IMMEDIATE')\nprint('locked', flush=True)\nsys.stdin.read()\n"
)
ASK = {"model": "router", "messages": [{"role": "user", "content": "hi"}]}


class Gated(LoopbackServer):
    """A reply server whose next chat request, once :attr:`armed`, waits for :attr:`gate`."""

    def __init__(self) -> None:
        self.armed, self.seen, self.gate = False, threading.Event(), threading.Event()
        gated = self

        class Handler(_Handler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                if gated.armed:
                    gated.armed = False
                    gated.seen.set()
                    gated.gate.wait(30)
                super().do_POST()

        super().__init__(Handler)


def test_ctrl_c_beside_a_foreign_sqlite_lock_stops_at_once_naming_what_was_not_stored(tmp_path) -> None:
    db = tmp_path / "m.db"
    with Gated() as provider:
        pool = tmp_path / "pool.yaml"
        pool.write_text(
            f"models:\n  - id: small\n    backend: openai\n    model: plain\n    base_url: {provider.url}\n"
            "    input_price: 0.1\n    output_price: 0.2\n    max_tokens: 8\n"
        )
        port = free_port()
        server = subprocess.Popen(  # `python -m`: the checkout's code, as the tests import it
            [sys.executable, "-m", "agentroute", "serve", "--port", str(port), "--pool", str(pool), "--router", "cheapest",
             "--memory", f"sqlite:///{db}", "--memory-wait-s", "0.3"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        holder = subprocess.Popen([sys.executable, "-c", HOLD, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        answered: dict[str, Any] = {}
        try:
            wait_up(server, port)
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            assert httpx.post(url, json=ASK, timeout=20).status_code == 200  # stored
            provider.armed = True
            under_way = threading.Thread(target=lambda: answered.update(reply=httpx.post(url, json=ASK, timeout=30)))
            under_way.start()
            assert provider.seen.wait(20)  # its write-ahead record stored, its call sent
            assert holder.stdin is not None and holder.stdout is not None
            holder.stdin.write("lock\n")
            holder.stdin.flush()
            assert holder.stdout.readline() == "locked\n"
            provider.gate.set()
            under_way.join(30)
            assert answered["reply"].status_code == 200  # answered: its step and finish wait for the lock
            assert httpx.post(url, json=ASK, timeout=20).status_code == 503  # its task's rows wait for the lock
            started = time.monotonic()
            server.send_signal(signal.SIGINT)
            out = server.communicate(timeout=15)[0]
            took = time.monotonic() - started
        finally:
            provider.gate.set()
            if server.poll() is None:
                server.kill()
                server.communicate()
            holder.communicate("", timeout=10)  # releases the lock
    assert took < 5.0, (took, out[-2000:])  # was 31 s; a stop with the file free takes about as long
    assert server.returncode == 130, (server.returncode, out[-2000:])  # a Ctrl-C's exit, as a plain stop's
    said = [line for line in out.splitlines() if "memory" in line]
    assert len(said) == 1 and "Traceback" not in out and "SQL:" not in out, out[-3000:]
    assert "memory write(s) failed and were not committed" in said[0], said
    for kind in ("1 step", "2 finish_task", "1 start_task"):
        assert kind in said[0], said
    assert f"closed while another process held the write lock of {db}" in said[0] and "agentroute memory reconcile" in said[0], said
    with sqlite3.connect(db) as conn:  # what was stored stays: the call under way left running
        assert sorted(conn.execute("SELECT status FROM tasks").fetchall()) == [("done",), ("running",)]
        (running,) = conn.execute("SELECT id FROM tasks WHERE status = 'running'").fetchone()
    named = said[0].split(" of task(s) ", 1)[1].split(";", 1)[0].split(", ")  # its task and the refused one's
    assert len(named) == 2 and running in named, said
    with SQLMemory(f"sqlite:///{db}") as memory:  # what `agentroute memory reconcile` runs
        closed = memory.reconcile()
    assert len(closed.tasks) == 1 and len(closed.settled) == 1, closed
    with sqlite3.connect(db) as conn:
        assert sorted(conn.execute("SELECT status FROM tasks").fetchall()) == [("done",), ("interrupted",)]
        (settling,) = conn.execute("SELECT cost_usd FROM steps WHERE id LIKE 'settled-%'").fetchall()
        assert settling[0] == closed.settled[0].worst_case.usd > 0  # the call charged its worst case

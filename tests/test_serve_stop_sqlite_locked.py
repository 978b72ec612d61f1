"""``agentroute serve --memory sqlite:///m.db`` stopped with Ctrl-C while another process holds the
file's write lock (a ``sqlite3`` shell in ``BEGIN IMMEDIATE``): it stops at once, naming on one line
the writes it could not store and what becomes of them — what it stored stays, as after a crash,
``agentroute memory reconcile`` closing the tasks it left running. Was: 31 s (the writer's try waits
the file's 30 s busy timeout, then ``--drain-s`` more), and four log lines with SQL in them."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

import httpx

from tests.fixtures_reply_server import ReplyServer
from tests.test_serve_user_paths import free_port, wait_up

HOLD = "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\nc.execute('BEGIN IMMEDIATE')\nprint('locked', flush=True)\nsys.stdin.read()\n"
ASK = {"model": "router", "messages": [{"role": "user", "content": "hi"}]}


def test_ctrl_c_beside_a_foreign_sqlite_lock_stops_at_once_naming_what_was_not_stored(tmp_path) -> None:
    db = tmp_path / "m.db"
    with ReplyServer() as provider:
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
        holder = None
        try:
            wait_up(server, port)
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            assert httpx.post(url, json=ASK, timeout=20).status_code == 200  # stored
            holder = subprocess.Popen([sys.executable, "-c", HOLD, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
            assert httpx.post(url, json=ASK, timeout=20).status_code == 503  # its task's rows wait for the lock
            started = time.monotonic()
            server.send_signal(signal.SIGINT)
            out = server.communicate(timeout=15)[0]
            took = time.monotonic() - started
        finally:
            if server.poll() is None:
                server.kill()
                server.communicate()
            if holder is not None:
                holder.communicate("", timeout=10)  # releases the lock
    assert took < 5.0, (took, out[-2000:])  # was 31 s; a stop with the file free takes about as long, less 0.25 s
    said = [line for line in out.splitlines() if "memory" in line]
    assert len(said) == 1 and "Traceback" not in out and "SQL:" not in out, out[-3000:]
    assert "2 memory write(s) failed and were not committed (1 start_task, 1 finish_task)" in said[0], said
    assert f"closed while another process held the write lock of {db}" in said[0] and "agentroute memory reconcile" in said[0], said
    with sqlite3.connect(db) as conn:  # what was stored stays
        assert conn.execute("SELECT status, count(*) FROM tasks GROUP BY status").fetchall() == [("done", 1)]

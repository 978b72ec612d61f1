"""A failed task's answer is never another role's intermediate output (helper-69, item 1).

`agentroute run qa --corpus …` against a loopback OpenAI-compatible server that answers the planner
and fails every executor call (HTTP 500): the task is ``failed`` and its ``answer`` in ``--out`` (and
in the memory) is empty, not the planner's sub-questions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.fixtures_reply_server import POLL_S

PLANNER_TEXT = "Which city is the capital of France?"
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        system = next((m.get("content", "") for m in body.get("messages", []) if m.get("role") == "system"), "")
        if "sub-question" in str(system) and "combine" not in str(system):  # the planner answers
            if body.get("stream"):
                return self._stream(body)
            reply: Any = {
                "id": "x", "object": "chat.completion", "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": PLANNER_TEXT}, "finish_reason": "stop"}],
                "usage": USAGE,
            }  # fmt: skip
            status = 200
        else:
            reply, status = {"error": {"message": "internal error", "type": "server_error"}}, 500
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


    def _stream(self, body: dict[str, Any]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        base = {"id": "x", "object": "chat.completion.chunk", "model": body.get("model")}
        events = [
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": PLANNER_TEXT}, "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {**base, "choices": [], "usage": USAGE},
        ]
        for event in events:
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "agentroute", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_run_qa_failed_executor_reports_no_planner_answer(tmp_path: Path) -> None:
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(POLL_S,), daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        (tmp_path / "pool.yaml").write_text(
            f"models:\n  - id: stub\n    backend: openai\n    model: stub\n    base_url: {url}\n"
            "    input_price: 1.0\n    output_price: 2.0\n    max_tokens: 16\n"
        )
        (tmp_path / "corpus.json").write_text(json.dumps([{"title": "France", "text": "Paris is the capital of France."}]))
        (tmp_path / "q.jsonl").write_text(json.dumps({"query": "What is the capital of France?", "query_id": "q1", "answer": "Paris"}) + "\n")
        memory = f"sqlite:///{tmp_path / 'mem.db'}"
        proc = _cli(
            "run", "qa", "--corpus", "corpus.json", "--input", "q.jsonl", "--out", "out.jsonl", "--pool", "pool.yaml",
            "--memory", memory, "--router", "cheapest", "--concurrency", "1", cwd=tmp_path,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [line] = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert line["status"] == "failed"
    assert not line["answer"], line  # was the planner's sub-question
    from agentroute.memory import open_memory

    store = open_memory(memory)
    try:
        stored = store.get_task(line["task_id"])
        assert stored is not None and stored.task.status == "failed"
        assert not stored.task.answer
    finally:
        store.close()

"""A tiny OpenAI-compatible chat-completions server on loopback, for batch crash tests and benchmarks.

Unlike ``fixtures_openai_server`` (the real local model, slow), it answers at once — or after
``delay_s`` — with fixed usage, and keeps a log of every answered request, so that a test can
compare what the provider billed with what the memory recorded. Run as a script it prints its
base URL and appends one JSON line per answered request to ``--log``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

PROMPT_TOKENS, COMPLETION_TOKENS = 20, 5


class StubOpenAIServer:
    """``with StubOpenAIServer(delay_s=0.05) as server: server.url`` → ``http://127.0.0.1:PORT/v1``.

    ``answered``: one ``{"t", "prompt"}`` dict per request answered, logged just before the reply is
    sent (what a provider bills: a client that dies while reading it has still been billed).
    ``hold_after=N``: requests after the first ``N`` wait (up to 60 s) until ``release.set()``;
    ``held`` counts those waiting, so a test acts while calls are surely in flight, at any load.
    """

    def __init__(self, *, delay_s: float = 0.0, log_path: str | None = None, port: int = 0, hold_after: int | None = None):
        self.delay_s, self.log_path, self.hold_after = delay_s, log_path, hold_after
        self.answered: list[dict[str, Any]] = []
        self.release = threading.Event()
        self.held = 0
        self._received = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if not self.path.rstrip("/").endswith("/chat/completions"):  # e.g. vLLM's /tokenize: not served
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                server._hold()
                if server.delay_s:
                    time.sleep(server.delay_s)
                prompt = body.get("messages", [{}])[-1].get("content", "")
                usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                         "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}  # fmt: skip
                head = {"id": "chatcmpl-stub", "created": int(time.time()), "model": body.get("model", "stub")}
                if body.get("stream"):  # server-sent events, usage in the last chunk
                    chunks = [
                        {**head, "object": "chat.completion.chunk",
                         "choices": [{"index": 0, "delta": {"role": "assistant", "content": "stub answer"}, "finish_reason": None}]},
                        {**head, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                        {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage},
                    ]  # fmt: skip
                    data = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks).encode() + b"data: [DONE]\n\n"
                    kind = "text/event-stream"
                else:
                    reply = {**head, "object": "chat.completion", "usage": usage, "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": "stub answer"}, "finish_reason": "stop"}]}  # fmt: skip
                    data, kind = json.dumps(reply).encode(), "application/json"
                server._answered({"t": time.time(), "prompt": prompt})  # billed: logged before the reply goes out
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()

        class Quiet(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:  # a killed client resets: fine
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self._httpd = Quiet(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        # polled every 10 ms (tests/fixtures_reply_server.py's POLL_S; a script here): stops at once, not in 0.5 s
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.01,), daemon=True)

    def _hold(self) -> None:
        with self._lock:
            self._received += 1
            held = self.hold_after is not None and self._received > self.hold_after
            self.held += held
        if held:
            self.release.wait(timeout=60)

    def _answered(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.answered.append(entry)
            if self.log_path:
                with open(self.log_path, "a") as fh:
                    fh.write(json.dumps(entry, ensure_ascii=True) + "\n")

    def start(self) -> StubOpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> StubOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def pool_yaml(url: str, *, model: str = "stub", input_price: float = 1.0, output_price: float = 2.0) -> str:
    """A pool of one priced ``backend: openai`` card served at ``url``."""
    return (
        f"models:\n  - id: {model}\n    backend: openai\n    model: {model}\n    base_url: {url}\n"
        f"    input_price: {input_price}\n    output_price: {output_price}\n    max_tokens: 16\n"
    )


#: Cost of one stub call at the prices of :func:`pool_yaml` (USD).
CALL_USD = (PROMPT_TOKENS * 1.0 + COMPLETION_TOKENS * 2.0) / 1e6

GRAPH_PY = 'from agentroute.graph import AgentGraph\n\ngraph = AgentGraph("one").add_role("executor", prompt="Answer.")\n'
"""A one-role graph file: one routed step (one provider call) per task."""


def test_stub_server_answers_chat_completions_with_usage():
    with StubOpenAIServer() as server:
        reply = httpx.post(f"{server.url}/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert reply.json()["usage"]["completion_tokens"] == COMPLETION_TOKENS
    assert [a["prompt"] for a in server.answered] == ["hi"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--delay-s", type=float, default=0.0)
    parser.add_argument("--log", default=None)
    args = parser.parse_args()
    stub = StubOpenAIServer(delay_s=args.delay_s, log_path=args.log).start()
    print(stub.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        sys.exit(0)

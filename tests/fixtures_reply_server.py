"""A small OpenAI-compatible server on 127.0.0.1 whose replies take the shapes real providers send.

What a request gets is chosen by its model name (the part after the last ``/``, from its first
``-``-separated word): ``reasoner`` (vLLM's reasoning parsers, DeepSeek: ``reasoning_content``
beside the answer, usage counting both), ``reasoner2`` (the same in ``reasoning``, as newer vLLM
and OpenRouter send it), ``nousage`` (a reasoner without usage), ``empty`` (an empty ``choices``
list), ``filtered`` (``finish_reason: "content_filter"``, no content), ``cutoff`` (the content
filter stopping an answer after its first two words), ``toolcall`` (a tool call,
no content), ``error200`` (HTTP 200 with an error body), ``overloaded`` (HTTP 200 with an error
body without code; streamed: an error event, then the end; ``overloaded2``: after two chunks of
text; ``overloaded1``: after the role chunk, before any text), ``echo`` (the model name it was asked
for, as its answer), ``thinker`` (a ``reasoner`` whose ``completion_tokens`` leaves the reasoning
out, ``total_tokens`` and ``reasoning_tokens`` keeping it, as gateways to Gemini report it). Plain and streamed (server-sent events, with ``stream_options.include_usage``).
Every request is kept in :attr:`ReplyServer.requests`.

:class:`LoopbackServer` and :class:`JSONHandler` are the parts every such test server shares: the
server on loopback in a thread, the request body read and kept, JSON replies and server-sent events.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

REASONING = ["Let", " me", " think", " about", " it", "."]
ANSWER = [" Paris", " is", " the", " capital", "."]
PROMPT_TOKENS = 7
#: How often a test server's ``serve_forever(POLL_S)`` loop checks for ``shutdown()``: the standard
#: library's 0.5 s made every server's stop wait up to half a second (most of a short test's time).
POLL_S = 0.01


def _usage(completion: int, *, thoughts_apart: bool = False) -> dict[str, Any]:
    usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": completion, "total_tokens": PROMPT_TOKENS + completion,
             "completion_tokens_details": {"reasoning_tokens": len(REASONING)}}
    if thoughts_apart:  # completion_tokens is the answer's alone (candidatesTokenCount)
        usage["completion_tokens"] = completion - len(REASONING)
    return usage


class JSONHandler(BaseHTTPRequestHandler):
    """A quiet handler of an OpenAI-compatible test server: reads and keeps each request's JSON
    body (:meth:`chat_body`), answers in JSON (:meth:`send_json`) or server-sent events
    (:meth:`start_events`, :meth:`send_event`)."""

    server: LoopbackServer

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def read_json(self) -> dict[str, Any]:
        """The request's JSON body (``{}`` when it has none)."""
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")

    def chat_body(self) -> dict[str, Any] | None:
        """The request's JSON body, kept in ``server.requests``; ``None`` for a ``/tokenize`` probe
        (a vLLM server's token counter, which agentroute may ask first), answered 404 here."""
        body = self.read_json()
        if self.path.rstrip("/").endswith("/tokenize"):
            self.send_json(404, {"error": "no tokenize"})
            return None
        self.server.requests.append(body)
        return body

    def send_json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_events(self) -> None:
        """A 200 ``text/event-stream`` reply's status line and headers."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()

    def send_event(self, event: Any) -> None:
        """One server-sent event, flushed: ``data: <event>`` (a ``str`` as it is, else as JSON)."""
        self.wfile.write(f"data: {event if isinstance(event, str) else json.dumps(event)}\n\n".encode())
        self.wfile.flush()


class LoopbackServer(ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 (a free port) that serves in a thread while in a ``with`` block:
    ``with Server(handler) as server: server.url`` (the ``/v1`` root); every chat request body its
    :class:`JSONHandler` reads is kept in :attr:`requests`."""

    daemon_threads = True
    request_queue_size = 128  # the standard library's backlog of 5 refuses connections under a burst

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.requests: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self.serve_forever, args=(POLL_S,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class _Handler(JSONHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.chat_body()
        if body is None:
            return
        model = str(body.get("model", ""))
        behaviour = model.rsplit("/", 1)[-1].split("-", 1)[0]
        thoughts_apart = behaviour == "thinker"
        if thoughts_apart:
            behaviour = "reasoner"
        if behaviour == "error200":
            return self.send_json(200, {"error": {"message": "upstream model crashed", "type": "server_error", "code": 500}})
        if behaviour.startswith("overloaded") and not body.get("stream"):
            return self.send_json(200, {"error": {"message": "model overloaded", "type": "server_error"}})
        base = {"id": "r1", "object": "chat.completion", "created": 0, "model": model}
        if body.get("stream"):
            return self._stream(base, behaviour, model, thoughts_apart=thoughts_apart)
        message: dict[str, Any] = {"role": "assistant", "content": "".join(ANSWER)}
        finish, usage = "stop", _usage(len(REASONING) + len(ANSWER), thoughts_apart=thoughts_apart)
        if behaviour in ("reasoner", "nousage"):
            message["reasoning_content"] = "".join(REASONING)
        elif behaviour == "reasoner2":
            message["reasoning"] = "".join(REASONING)
        elif behaviour == "filtered":
            message["content"], finish, usage = None, "content_filter", _usage(0)
        elif behaviour == "cutoff":
            message["content"], finish, usage = "".join(ANSWER[:2]), "content_filter", _usage(2)
        elif behaviour == "toolcall":
            message["content"], finish = None, "tool_calls"
            message["tool_calls"] = [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\": \"Paris\"}"}}]
            usage = _usage(9)
        elif behaviour == "echo":
            message["content"], usage = model, _usage(3)
        choices = [] if behaviour == "empty" else [{"index": 0, "message": message, "finish_reason": finish}]
        reply = {**base, "choices": choices}
        if behaviour != "nousage":
            reply["usage"] = usage
        return self.send_json(200, reply)

    def _stream(self, base: dict[str, Any], behaviour: str, model: str, *, thoughts_apart: bool = False) -> None:
        self.start_events()
        chunk = {**base, "object": "chat.completion.chunk"}

        def send(choices: list[Any], usage: Any = None) -> None:
            self.send_event({**chunk, "choices": choices, "usage": usage})

        def delta(d: dict[str, Any], finish: str | None = None) -> None:
            send([{"index": 0, "delta": d, "finish_reason": finish}])

        tokens = 0
        if behaviour.startswith("overloaded"):
            if behaviour == "overloaded2":
                delta({"role": "assistant", "content": ANSWER[0]})
                delta({"content": ANSWER[1]})
            elif behaviour == "overloaded1":  # the stream had begun (the role), no text yet
                delta({"role": "assistant", "content": ""})
            self.send_event({"error": {"message": "model overloaded", "type": "server_error"}})
            return
        if behaviour != "empty":
            delta({"role": "assistant", "content": ""})
        if behaviour in ("reasoner", "reasoner2", "nousage"):
            key = "reasoning" if behaviour == "reasoner2" else "reasoning_content"
            for piece in REASONING:
                delta({key: piece})
            tokens += len(REASONING)
        if behaviour == "toolcall":
            delta({"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "lookup", "arguments": ""}}]})
            delta({"tool_calls": [{"index": 0, "function": {"arguments": "{\"q\": \"Paris\"}"}}]}, None)
            delta({}, "tool_calls")
            tokens = 9
        elif behaviour == "filtered":
            delta({}, "content_filter")
        elif behaviour == "cutoff":
            for piece in ANSWER[:2]:
                delta({"content": piece})
            delta({}, "content_filter")
            tokens = 2
        elif behaviour == "echo":
            delta({"content": model})
            delta({}, "stop")
            tokens = 3
        elif behaviour != "empty":
            for piece in ANSWER:
                delta({"content": piece})
            delta({}, "stop")
            tokens += len(ANSWER)
        if behaviour != "nousage":
            send([], _usage(tokens, thoughts_apart=thoughts_apart))
        self.send_event("[DONE]")


class ReplyServer(LoopbackServer):
    """Serve on 127.0.0.1 in a thread: ``with ReplyServer() as server: server.url``."""

    def __init__(self) -> None:
        super().__init__(_Handler)

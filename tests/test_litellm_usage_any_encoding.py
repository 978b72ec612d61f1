"""The litellm backend reads a self-hosted server's usage off the wire whatever the reply's
``Content-Type`` or ``Content-Encoding`` says: a count sent as text (``"completion_tokens": "2"``)
is a protocol error (the step fails charged its worst case, audit ``protocol_error``) also when the
server labels its reply ``text/plain`` or compresses it (gzip, deflate), plain or streamed,
``openai/`` or ``hosted_vllm/``; the honest ``2.0`` is still 2. A stream compressed in an encoding
the backend did not accept (zstd) cannot be checked: a protocol error too.

Before: only a JSON body or an uncompressed ``text/event-stream`` was read off the wire; any other
reply's usage went through LiteLLM's ``Usage``, which turns ``"2"`` into 2, and the step was booked
as sound (text/plain plain and streamed, gzip streamed). Against a real server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import gzip
import importlib.util
import json
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from agentroute import Budget, Dispatcher
from agentroute.pool import ModelCard, ModelPool
from agentroute.routers import make_router
from tests.fixtures_reply_server import LoopbackServer
from tests.test_upstream_usage_text import _Counts

pytestmark = pytest.mark.skipif(importlib.util.find_spec("litellm") is None, reason="litellm is not installed")

#: How each encoding compresses a stream (zlib's wbits), as the server sends it.
_WBITS = {"gzip": 31, "deflate": 15}
#: The ``Accept-Encoding`` of each chat request the server got.
_ACCEPTED: list[str | None] = []


class _Relabelled(_Counts):
    """:class:`_Counts`'s replies, labelled or encoded as the model name's second word says
    (``text-plain``: ``text/plain``; ``text-gzip``, ``text-deflate``, ``text-zstd``: compressed)."""

    def chat_body(self) -> dict[str, Any] | None:
        body = super().chat_body()
        _ACCEPTED.append(self.headers.get("Accept-Encoding"))
        self.how = str((body or {}).get("model", "")).split("-")[1]
        return body

    def send_json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if self.how == "plain" else "application/json")
        if self.how == "gzip":
            data = gzip.compress(data)
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_events(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain" if self.how == "plain" else "text/event-stream")
        if self.how in (*_WBITS, "zstd"):
            self.send_header("Content-Encoding", self.how)
            self.squeeze: Any = None
            if self.how == "zstd":
                import zstandard

                self.squeeze = zstandard.ZstdCompressor().compressobj()
            else:
                self.squeeze = zlib.compressobj(wbits=_WBITS[self.how])
        self.end_headers()

    def send_event(self, event: Any) -> None:
        data = f"data: {event if isinstance(event, str) else json.dumps(event)}\n\n".encode()
        if self.how == "zstd":
            import zstandard

            data = self.squeeze.compress(data) + self.squeeze.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        elif self.how in _WBITS:
            data = self.squeeze.compress(data) + self.squeeze.flush(zlib.Z_SYNC_FLUSH)
        self.wfile.write(data)
        self.wfile.flush()


@pytest.fixture(scope="module")
def upstream() -> Iterator[LoopbackServer]:
    from agentroute.pool.backends.litellm import litellm_module

    litellm_module()  # its import (seconds under load) is no part of the first step's deadline
    with LoopbackServer(_Relabelled) as running:
        yield running


def _step(url: str, provider: str, model: str, stream: bool) -> tuple[Any, Any, ModelCard]:
    from agentroute.pool.backends.litellm import LiteLLMBackend

    card = ModelCard(id=model, backend="litellm", model=f"{provider}/{model}", base_url=url,
                     input_price=1.0, output_price=2.0, max_tokens=8, timeout_s=30)  # fmt: skip
    pool = ModelPool([card], {"litellm": LiteLLMBackend(stream=stream)})
    dispatcher = Dispatcher(pool, make_router("cheapest"))

    async def main() -> Any:
        run = dispatcher.start("q", budget=Budget(usd=100.0))
        return run, await dispatcher.step(run, role="executor", stage="execute", prompt="p", input="q")

    try:
        run, step = asyncio.run(main())
    finally:
        pool.close()
    return run, step, card


@pytest.mark.parametrize("provider", ["openai", "hosted_vllm"])
@pytest.mark.parametrize(("stream", "how"), [(False, "plain"), (True, "plain"), (True, "gzip"), (True, "deflate")])
@pytest.mark.parametrize("count", ["text", "float"])
def test_a_relabelled_or_compressed_reply_gets_the_usage_verdict(upstream: LoopbackServer, provider: str, stream: bool,
                                                                 how: str, count: str) -> None:  # fmt: skip
    run, step, card = _step(upstream.url, provider, f"{count}-{how}", stream)
    if count == "float":
        assert step.status == "ok" and step.output == "Paris." and step.tokens_out == 2, step.error
        assert run.ledger.spent["usd"] == pytest.approx(card.usd(7, 2))
        return
    assert step.status == "failed" and "usage.completion_tokens is not a number" in (step.error or ""), step.error
    assert run.ledger.spent["usd"] >= card.usd(7, 8) and run.ledger.spent["calls"] == 1  # its worst case
    assert any(e.kind == "protocol_error" and e.subject == card.id for e in run.context["audit"])


@pytest.mark.parametrize("provider", ["openai", "hosted_vllm"])
def test_the_backend_accepts_only_the_encodings_it_reads(upstream: LoopbackServer, provider: str) -> None:
    """A stream sent in zstd (httpx would decode it: ``zstandard`` is installed) was not asked for:
    the error says so, also where httpx fails on it mid-stream (the frame is never ended)."""
    pytest.importorskip("zstandard")
    run, step, card = _step(upstream.url, provider, "float-zstd", True)
    assert step.status == "failed" and "Content-Encoding 'zstd', which was not asked for" in (step.error or ""), step.error
    assert run.ledger.spent["usd"] >= card.usd(7, 8)
    assert upstream.requests[-1]["model"] == "float-zstd" and _ACCEPTED[-1] == "gzip, deflate"


@pytest.mark.parametrize("provider", ["openai", "hosted_vllm"])
def test_a_whole_reply_to_a_stream_request_keeps_its_answer(upstream: LoopbackServer, provider: str) -> None:
    """A server that ignores ``stream: true`` and sends its whole reply as JSON: the step keeps the
    paid answer, as the openai backend reads it (was: ``ok`` with an empty answer, billed 7 + 2)."""
    run, step, card = _step(upstream.url, provider, "float-json-ignores", True)
    assert (step.status, step.output, step.tokens_in, step.tokens_out) == ("ok", "Paris.", 7, 2), step.error
    assert run.ledger.spent["usd"] == pytest.approx(card.usd(7, 2))

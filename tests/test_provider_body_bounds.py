"""A provider's reply body is bounded like its stream (issue 10: a server that ignores ``max_tokens``
cannot run away): the openai and litellm backends (``openai/``, ``hosted_vllm/``), plain or
streamed, against a real aiohttp server on 127.0.0.1.

Before: a JSON body — the plain reply, or the whole reply of a server that ignores ``stream:
true`` — was read to its end: an endless one held the call until the card's ``timeout_s`` (1.4 GB
read in 4 s here), then was charged its worst case. Now it fails as a protocol error once it
passes what ``max_tokens`` can take (:func:`agentroute.pool.backends.wire.body_limit`). A stream in
an encoding the client did not ask for (zstd) failed as "not an event stream (no chunks)" through
the openai backend: now the error names the encoding. A body trickled a byte at a time after its
headers (no read ever times out) ends by the card's ``timeout_s`` or the task's deadline,
whichever comes first (checked: it did before too).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from agentroute import Budget, Dispatcher, ModelCard, ModelPool, make_router
from tests.helpers import serve_on_loopback

HAS_LITELLM = importlib.util.find_spec("litellm") is not None
#: (backend, model prefix) of each way a card reaches the server.
ROUTES = [
    ("openai", ""),
    pytest.param("litellm", "openai/", marks=pytest.mark.skipif(not HAS_LITELLM, reason="litellm is not installed")),
    pytest.param("litellm", "hosted_vllm/", marks=pytest.mark.skipif(not HAS_LITELLM, reason="litellm is not installed")),
]
MAX_TOKENS = 16
#: the shared 2-core machine stalls its event loop for tenths of a second under load
SLACK_S = 1.5
OVERSIZED_BYTES = 8 << 20  # far past what 16 tokens can take (about 1 MiB)
HEAD = b'{"id":"r1","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"'


async def _keep_writing(response: web.StreamResponse, pause_s: float) -> None:
    """One byte every ``pause_s`` seconds, until the client leaves."""
    while True:
        await response.write(b" ")
        await asyncio.sleep(pause_s)


async def _chat(request: web.Request) -> web.StreamResponse:
    """``oversized``: a JSON body of :data:`OVERSIZED_BYTES` sent at once, then a byte every 0.1 s;
    ``trickle``: JSON headers, then a byte every 0.1 s; ``zstd``: the reply (stream or JSON) in
    zstd, which no client asked for, its frame never ended."""
    body = await request.json()
    how = str(body["model"]).rsplit("/", 1)[-1]
    if how == "zstd":
        return await _zstd(request, streamed=bool(body.get("stream")))
    if how == "endlessline":
        return await _endless_line(request)
    if how in ("gzip", "deflate"):  # the whole reply, compressed as asked (stream or not)
        return _compressed(how)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    try:
        if how == "oversized":
            await response.write(HEAD)
            for _ in range(OVERSIZED_BYTES >> 16):
                await response.write(b"a" * 65536)
        await _keep_writing(response, 0.1)
    except ConnectionError:  # the client left
        pass
    return response


def _compressed(how: str) -> web.Response:
    choice = {"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}
    reply = {"id": "r1", "object": "chat.completion", "created": 0, "model": "m", "choices": [choice],
             "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}}  # fmt: skip
    squeeze = zlib.compressobj(wbits=31 if how == "gzip" else 15)
    data = squeeze.compress(json.dumps(reply).encode()) + squeeze.flush()
    return web.Response(body=data, headers={"Content-Type": "application/json", "Content-Encoding": how})


async def _endless_line(request: web.Request) -> web.StreamResponse:
    """A stream whose first event's line never ends (:data:`OVERSIZED_BYTES`, then a byte every 0.1 s)."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    try:
        await response.write(b'data: {"id":"r1","choices":[{"index":0,"delta":{"content":"')
        for _ in range(OVERSIZED_BYTES >> 16):
            await response.write(b"a" * 65536)
        await _keep_writing(response, 0.1)
    except ConnectionError:  # the client left
        pass
    return response


async def _zstd(request: web.Request, *, streamed: bool) -> web.StreamResponse:
    import zstandard

    kind = "text/event-stream" if streamed else "application/json"
    response = web.StreamResponse(headers={"Content-Type": kind, "Content-Encoding": "zstd"})
    await response.prepare(request)
    chunk = {"id": "r1", "object": "chat.completion.chunk", "created": 0, "model": "m",
             "choices": [{"index": 0, "delta": {"content": "Paris"}, "finish_reason": None}]}  # fmt: skip
    data = f"data: {json.dumps(chunk)}\n\n".encode() if streamed else HEAD + b'Paris"}}]'
    squeeze = zstandard.ZstdCompressor().compressobj()
    await response.write(squeeze.compress(data) + squeeze.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))
    await response.write_eof()  # the frame is never ended
    return response


@contextlib.asynccontextmanager
async def chat_server(handler: Any) -> AsyncIterator[str]:
    """A loopback server whose ``/v1/chat/completions`` is ``handler``: its ``/v1`` URL."""
    if HAS_LITELLM:
        from agentroute.pool.backends.litellm import litellm_module

        await asyncio.to_thread(litellm_module)  # its import (seconds under load) is timed nowhere below
    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    root, runner = await serve_on_loopback(app)
    try:
        yield f"{root}/v1"
    finally:
        await runner.cleanup()  # type: ignore[attr-defined]


@pytest.fixture
async def provider() -> AsyncIterator[str]:
    async with chat_server(_chat) as url:
        yield url


async def one_step(url: str, backend: str, prefix: str, model: str, *, stream: bool, timeout_s: float,
                   seconds: float | None = None) -> tuple[Any, Any, ModelCard, float]:  # fmt: skip
    """One routed step of ``model`` (no retry): ``(step, run, card, seconds it took)``."""
    from agentroute.pool.backends.litellm import LiteLLMBackend
    from agentroute.pool.backends.openai import OpenAIBackend

    card = ModelCard(id=model, backend=backend, model=f"{prefix}{model}", base_url=url, input_price=1.0,
                     output_price=2.0, max_tokens=MAX_TOKENS, timeout_s=timeout_s)  # fmt: skip
    made = OpenAIBackend(stream=stream) if backend == "openai" else LiteLLMBackend(stream=stream)
    pool = ModelPool([card], {backend: made})
    dispatcher = Dispatcher(pool, make_router("cheapest"), retries=0)
    run = dispatcher.start("q", budget=Budget(usd=1.0, seconds=seconds))
    started = time.monotonic()
    try:
        step = await dispatcher.step(run, role="executor", stage="execute", prompt="p", input="q")
    finally:
        elapsed = time.monotonic() - started
        await pool.aclose()
    return step, run, card, elapsed


@pytest.mark.parametrize(("backend", "prefix"), ROUTES)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
async def test_an_oversized_json_body_fails_at_once_as_a_protocol_error(provider: str, backend: str, prefix: str,
                                                                       stream: bool) -> None:  # fmt: skip
    """Before: read until ``timeout_s`` (8 s here), "timed out", charged its worst case."""
    step, run, card, elapsed = await one_step(provider, backend, prefix, "oversized", stream=stream, timeout_s=8.0)
    assert step.status == "failed" and "longer than" in (step.error or "") and "max_tokens" in (step.error or ""), step.error
    assert elapsed < 1.0 + SLACK_S, elapsed
    assert any(e.kind == "protocol_error" and e.subject == card.id for e in run.context["audit"])
    assert run.ledger.spent["calls"] == 1 and run.ledger.spent["usd"] >= card.usd(0, MAX_TOKENS)  # its worst case


@pytest.mark.parametrize(("backend", "prefix"), ROUTES)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
@pytest.mark.parametrize("how", ["gzip", "deflate"])
async def test_a_compressed_whole_reply_within_the_bound_keeps_its_answer(provider: str, backend: str, prefix: str,
                                                                          stream: bool, how: str) -> None:  # fmt: skip
    step, run, card, _ = await one_step(provider, backend, prefix, how, stream=stream, timeout_s=8.0)
    assert (step.status, step.output, step.tokens_in, step.tokens_out) == ("ok", "Paris.", 7, 2), step.error
    assert run.ledger.spent["usd"] == pytest.approx(card.usd(7, 2))


@pytest.mark.parametrize(("backend", "prefix"), ROUTES)
async def test_a_stream_event_longer_than_a_whole_body_fails_at_once(provider: str, backend: str, prefix: str) -> None:
    """An event whose line never ends is bounded as a whole JSON body is. Before: read until
    ``timeout_s`` (1 GB in 4 s through the openai backend), "timed out"."""
    step, run, card, elapsed = await one_step(provider, backend, prefix, "endlessline", stream=True, timeout_s=8.0)
    assert step.status == "failed" and "longer than" in (step.error or "") and "max_tokens" in (step.error or ""), step.error
    assert elapsed < 1.0 + SLACK_S, elapsed
    assert any(e.kind == "protocol_error" and e.subject == card.id for e in run.context["audit"])
    assert run.ledger.spent["calls"] == 1 and run.ledger.spent["usd"] >= card.usd(0, MAX_TOKENS)


@pytest.mark.parametrize(("backend", "prefix"), ROUTES)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
@pytest.mark.parametrize(("timeout_s", "seconds"), [(0.8, 30.0), (30.0, 0.8)], ids=["timeout", "deadline"])
async def test_a_trickled_body_ends_by_the_timeout_or_the_deadline(provider: str, backend: str, prefix: str, stream: bool,
                                                                   timeout_s: float, seconds: float) -> None:  # fmt: skip
    """A byte every 0.1 s after the headers: no read of the client's ever waits ``timeout_s``."""
    step, run, card, elapsed = await one_step(provider, backend, prefix, "trickle", stream=stream, timeout_s=timeout_s,
                                              seconds=seconds)  # fmt: skip
    assert step.status == "failed", step
    assert elapsed < min(timeout_s, seconds) + SLACK_S, elapsed
    assert run.ledger.spent["calls"] == 1 and run.ledger.spent["usd"] >= card.usd(0, MAX_TOKENS)


@pytest.mark.parametrize(("backend", "prefix"), ROUTES)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
async def test_a_reply_in_an_encoding_not_asked_for_is_named(provider: str, backend: str, prefix: str, stream: bool) -> None:
    """Before (openai backend): "the reply is not an event stream (no chunks)", or an unreadable
    JSON body, the encoding named nowhere."""
    pytest.importorskip("zstandard")
    step, run, card, _ = await one_step(provider, backend, prefix, "zstd", stream=stream, timeout_s=8.0)
    assert step.status == "failed" and "Content-Encoding 'zstd', which was not asked for" in (step.error or ""), step.error
    assert "\n" not in (step.error or "")
    assert any(e.kind == "protocol_error" and e.subject == card.id for e in run.context["audit"])


async def test_a_streams_lines_split_as_httpx_splits_them_in_any_chunking() -> None:
    """The bounded line reader splits as httpx's ``aiter_lines`` does (which it replaced in the
    openai backend): ``\\r\\n`` split between two chunks, a lone ``\\r``, a last line without its end."""
    import random

    import httpx

    from agentroute.pool.backends.wire import lines_within

    text = 'data: {"a": 1}\r\n\r\ndata: x\rdata: y\n\n: ping\r\n\r\ndata: [DONE]\r\n\r\nlast'
    rng = random.Random(7)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, 12)))
        chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]

        async def texts(parts: list[str] = chunks) -> AsyncIterator[str]:
            for part in parts:
                yield part

        async def raw(parts: list[str] = chunks) -> AsyncIterator[bytes]:
            for part in parts:
                yield part.encode()

        ours = [line async for line in lines_within(texts(), 1 << 20, 16)]
        theirs = [line async for line in httpx.Response(200, content=raw()).aiter_lines()]
        assert ours == theirs, chunks

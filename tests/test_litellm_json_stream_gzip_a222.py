"""The litellm backend reads a stream labelled JSON as a stream, and inflates a compressed body once.

Was (real aiohttp server on 127.0.0.1, ``max_tokens`` 8): a stream request answered with an endless
stream labelled ``Content-Type: application/json`` (a server that ignores ``max_tokens``) was read
whole, up to ``body_limit``: the server wrote 6,420 events (1.05 MB) in 8.7 s, then the step failed
as a protocol error, its answer lost (the openai backend cuts it after 9 events). A gzip body was
inflated twice (the usage hook's counter, then httpx: 2.00 MB for a 1 MB reply), each 64 KiB read of
a gzip bomb at once (48 MB traced for a 1 MB bound).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests.test_provider_body_bounds import ROUTES, chat_server, one_step

LITELLM = ROUTES[1:]  # litellm: openai/, hosted_vllm/
ANSWER = "word " * 120_000  # 600 kB: within what max_tokens 16 may take (1.06 MB)
BOMB = gzip.compress(b" " * (64 << 20), 9)  # 64 kB that inflate to 64 MiB


class Written:
    """How many events the endless stream wrote before its client left."""

    events = 0


async def _chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    how = str(body["model"]).rsplit("/", 1)[-1]
    if how in ("bomb", "big"):
        reply = {"id": "r1", "object": "chat.completion", "created": 0, "model": "m",
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
                 "usage": {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16}}  # fmt: skip
        data = BOMB if how == "bomb" else gzip.compress(json.dumps(reply).encode())
        return web.Response(body=data, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    response = web.StreamResponse(headers={"Content-Type": "application/json"})  # an endless stream, so labelled
    await response.prepare(request)
    delta = {"id": "r1", "object": "chat.completion.chunk", "created": 0, "model": "m",
             "choices": [{"index": 0, "delta": {"content": " word"}, "finish_reason": None}]}  # fmt: skip
    Written.events = 0
    try:
        while True:
            await response.write(f"data: {json.dumps(delta)}\n\n".encode())
            Written.events += 1
            await asyncio.sleep(0.01)  # 100 tokens/s; the client leaving is seen at the next write
    except ConnectionError:
        pass
    return response


@pytest.fixture
async def provider() -> AsyncIterator[str]:
    async with chat_server(_chat) as url:
        yield url


@pytest.mark.parametrize(("backend", "prefix"), ROUTES)
async def test_an_endless_stream_labelled_json_is_cut_at_max_tokens(provider: str, backend: str, prefix: str) -> None:
    step, _, card, elapsed = await one_step(provider, backend, prefix, "endless", stream=True, timeout_s=30.0,
                                            seconds=10.0)  # fmt: skip
    await asyncio.sleep(0.2)  # the server sees the client leave
    assert step.status == "ok", step.error  # was failed: a protocol error, or cut at the deadline
    # max_tokens + 1 events read; the rest is what a stalled client let the server write meanwhile
    assert Written.events < 200, Written.events  # was 6,420 at 2,000 events/s (1,000 here, to the deadline)
    assert elapsed < 5.0, elapsed  # was 8.7 s at 2,000 events/s


@pytest.mark.parametrize(("backend", "prefix"), LITELLM)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
async def test_a_gzip_bomb_is_inflated_no_further_than_the_bound(provider: str, backend: str, prefix: str,
                                                                 stream: bool) -> None:  # fmt: skip
    tracemalloc.start()
    try:
        step, run, card, _ = await one_step(provider, backend, prefix, "bomb", stream=stream, timeout_s=30.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert step.status == "failed" and "longer than" in (step.error or ""), step.error
    assert peak < 16 << 20, peak  # was 48 MB: a 64 KiB read inflated at once
    assert run.ledger.spent["usd"] >= card.usd(0, card.max_tokens)  # charged its worst case


@pytest.mark.parametrize(("backend", "prefix"), LITELLM)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
async def test_a_gzip_reply_is_inflated_once(provider: str, backend: str, prefix: str, stream: bool,
                                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Every inflater (the backend's and httpx's) counted through :func:`zlib.decompressobj`."""
    inflated = [0]
    real = zlib.decompressobj

    class Counted:
        def __init__(self, *args: Any) -> None:
            self._inflater = real(*args)

        def decompress(self, data: bytes, *args: Any) -> bytes:
            out = self._inflater.decompress(data, *args)
            inflated[0] += len(out)
            return out

        def flush(self, *args: Any) -> bytes:
            out = self._inflater.flush(*args)
            inflated[0] += len(out)
            return out

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inflater, name)

    monkeypatch.setattr(zlib, "decompressobj", Counted)
    step, _, _, _ = await one_step(provider, backend, prefix, "big", stream=stream, timeout_s=30.0)
    assert step.status == "ok" and (step.output or "").strip() == ANSWER.strip(), step.error
    assert len(ANSWER) < inflated[0] < 1.1 * len(ANSWER), inflated[0]  # was twice the body

"""Reading a stream's line is linear in its length however finely the server chunks it (review of
5eced54, which bounded a stream's line: the openai backend's line reader and the litellm backend's
usage tee joined the line's text so far to every new piece, quadratic in the line's length).

Measured before the fix through the openai backend: a 3 MiB event written in 64-byte pieces by an
aiohttp server on 127.0.0.1 took 7.7 s to read (httpx's ``aiter_lines``, which it replaced: 1.9 s);
the litellm tee 2.2 s for 0.8 MB in 256-byte pieces (1.0 s before 5eced54). Here the readers take a
2 MiB line in 16-byte pieces (before: about 137 GB copied, minutes; now well under a second).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from agentroute.types import CompletionRequest

LINE = 2 << 20
PIECE = 16
#: the shared 2-core machine is slow under load; quadratic reading takes minutes
BOUND_S = 5.0


async def _pieces(tail: str = "\n") -> AsyncIterator[str]:
    piece = "a" * PIECE
    for _ in range(LINE // PIECE):
        yield piece
    yield tail


async def test_the_openai_backends_line_reader_is_linear_in_a_finely_chunked_line() -> None:
    from agentroute.pool.backends.wire import lines_within

    started = time.perf_counter()
    lines = [line async for line in lines_within(_pieces("\ndata: x\n"), LINE + 1, 16)]
    assert time.perf_counter() - started < BOUND_S
    assert [len(line) for line in lines] == [LINE, 7]


async def test_the_line_reader_still_refuses_a_line_past_its_bound_in_pieces() -> None:
    import pytest

    from agentroute.pool.backends.wire import BodyTooLong, lines_within

    with pytest.raises(BodyTooLong, match="a line of the stream is longer than 1000 bytes"):
        async for _ in lines_within(_pieces(), 1000, 16):
            pass


def test_the_litellm_usage_tee_is_linear_in_a_finely_chunked_line() -> None:
    from agentroute.pool.backends.litellm import _Sent

    sent = _Sent(CompletionRequest(model="m", messages=[], max_tokens=4096), streamed=True)
    piece = b"a" * PIECE
    started = time.perf_counter()
    sent.feed(b'data: {"usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}, "x": "')
    for _ in range(LINE // PIECE):
        sent.feed(piece)
    sent.feed(b'"}\n')
    assert time.perf_counter() - started < BOUND_S
    assert sent.usage == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}

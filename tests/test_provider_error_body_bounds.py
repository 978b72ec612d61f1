"""An error reply's body is bounded too (review of bef1b41, which bounded a whole JSON reply but
not an error status's body, which the SDKs read whole before raising): an HTTP 500 whose body
never ends held the call until the card's ``timeout_s`` (4 s here; through the litellm backend's
stream 11-23 s, its error read again outside the timeout), reading up to 2.2 GB into memory. Now
its first :data:`~agentroute.pool.backends.wire.ERROR_BODY_BYTES` are read: an unbilled ``HTTP 500``
at once (the SDKs name a body that is not whole JSON by its status only). Real aiohttp server on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.test_provider_body_bounds import ROUTES, SLACK_S, chat_server, one_step


async def _chat(request: web.Request) -> web.StreamResponse:
    """HTTP 500, a JSON error whose message never ends (64 KiB at a time until the client leaves)."""
    response = web.StreamResponse(status=500, headers={"Content-Type": "application/json"})
    await response.prepare(request)
    try:
        await response.write(b'{"error": {"message": "overloaded ')
        while True:
            await response.write(b"a" * 65536)
    except ConnectionError:  # the client left
        pass
    return response


@pytest.fixture
async def provider() -> AsyncIterator[str]:
    async with chat_server(_chat) as url:
        yield url


@pytest.mark.parametrize(("backend", "prefix"), ROUTES)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
async def test_an_endless_error_body_fails_at_once_as_its_status(provider: str, backend: str, prefix: str,
                                                                  stream: bool) -> None:  # fmt: skip
    step, run, _, elapsed = await one_step(provider, backend, prefix, "endless", stream=stream, timeout_s=4.0)
    assert step.status == "failed" and "500" in (step.error or ""), step.error
    assert "\n" not in (step.error or "") and len(step.error or "") < 2000
    assert elapsed < 1.0 + SLACK_S, elapsed
    assert run.ledger.spent["usd"] == 0  # refused before the model ran: not billed

"""OpenAI SDK clients of a served URL, closed when the test that opened them ends.

An ``openai.OpenAI`` client keeps its connections open until it is closed; one left to the garbage
collector warns ``unclosed socket`` in whichever later test collects it. Import both names in a test
module: ``from tests.fixtures_sdk import close_sdk_clients, sdk_client  # noqa: F401``.
:func:`litellm_sync_loop` closes the event loop LiteLLM's synchronous calls would leave open.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import openai
import pytest

_OPENED: list[openai.OpenAI] = []


def sdk_client(url: str, **kwargs: Any) -> openai.OpenAI:
    """A client of ``url`` without retries (``kwargs`` override), closed at the test's end."""
    client = openai.OpenAI(base_url=url, api_key="x", **{"max_retries": 0, **kwargs})
    _OPENED.append(client)
    return client


@pytest.fixture(autouse=True)
def close_sdk_clients() -> Iterator[None]:
    """Close the clients :func:`sdk_client` opened during the test."""
    yield
    while _OPENED:
        _OPENED.pop().close()


@contextlib.contextmanager
def litellm_sync_loop() -> Iterator[None]:
    """The thread's current event loop while ``litellm.completion`` runs, closed after.

    LiteLLM's synchronous calls dispatch their service events on the thread's current loop
    (``asyncio.get_event_loop()``), which in the main thread makes one and leaves it unclosed."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        asyncio.set_event_loop(None)
        loop.close()

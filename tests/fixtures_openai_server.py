"""Local OpenAI-compatible server fixture, backed by the real SmolLM2-135M model (owned by the backends work).

``openai_server_url`` starts :class:`agentroute.serve.ServerThread` on a free loopback port once per
session, with a pool of one card (:data:`SERVER_MODEL`, ``backend: local``) and its model preloaded,
and yields the OpenAI base URL (``http://127.0.0.1:PORT/v1``). Tests using it are ``slow``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool

#: The model id the server answers to, and its price card (USD per 1M tokens).
SERVER_MODEL = "smollm2-135m"
SERVER_CARD = ModelCard(
    id=SERVER_MODEL,
    backend="local",
    model="SmolLM2-135M-Instruct.Q4_1.gguf",
    input_price=0.05,
    output_price=0.20,
    max_tokens=64,
    timeout_s=300,
)


@pytest.fixture(scope="session")
def openai_server_url() -> Iterator[str]:
    """``http://127.0.0.1:PORT/v1`` of an agentroute server running the real local model."""
    pytest.importorskip("fastapi")
    pytest.importorskip("transformers")
    from agentroute.serve import ServerThread

    server = ServerThread(ModelPool([SERVER_CARD])).start()
    try:
        yield server.url
    finally:
        server.stop()

"""The local backend (the real SmolLM2-135M) reads text only: content given as text parts is read
as its text, a part that is not text is refused, at the reservation and at the call, in one line.

Was: the parts reached SmolLM2's chat template as a list, which it printed as Python's repr
(``[{'type': 'text', 'text': 'Hi'}]``): the model read the dicts, and an image's URL as text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agentroute.errors import ConfigurationError
from agentroute.pool.card import ModelCard
from agentroute.types import CompletionRequest

pytest.importorskip("transformers")

from agentroute.pool.backends.local import DEFAULT_GGUF, LocalBackend  # noqa: E402

CARD = ModelCard(id="smol", backend="local", model=DEFAULT_GGUF, input_price=0.05, output_price=0.20, timeout_s=300)
QUESTION = "What is the capital of France?"


def ask(content: object) -> CompletionRequest:
    return CompletionRequest(model=CARD.backend_model, messages=[{"role": "user", "content": content}], max_tokens=8)


@pytest.fixture
async def backend() -> AsyncIterator[LocalBackend]:
    b = LocalBackend()
    await b.preload(CARD)
    yield b
    await b.aclose()


async def test_text_parts_are_read_as_their_text(backend: LocalBackend) -> None:
    parts = [{"type": "text", "text": "What is the capital "}, {"type": "text", "text": "of France?"}]
    assert backend.prompt_tokens(ask(parts), CARD) == backend.prompt_tokens(ask(QUESTION), CARD)
    assert (await backend.complete(ask(parts), CARD)).text == (await backend.complete(ask(QUESTION), CARD)).text


@pytest.mark.parametrize("kind", ["image_url", "input_audio"])
async def test_a_part_that_is_not_text_is_refused(backend: LocalBackend, kind: str) -> None:
    """Refused though the card bounds an image: this model cannot read one."""
    part = {"type": kind, kind: {"url": "https://images.example/cat.png"}}
    request, card = ask([{"type": "text", "text": QUESTION}, part]), CARD.model_copy(update={"image_tokens": 1445})
    with pytest.raises(ConfigurationError) as counted:
        backend.prompt_tokens(request, card)
    with pytest.raises(ConfigurationError) as called:
        await backend.complete(request, card)
    for caught in (counted, called):
        message = str(caught.value)
        assert f"content part 1: model {DEFAULT_GGUF!r} reads text only, not a {kind!r} part" in message, message
        assert "\n" not in message

"""A chat message's ``content`` in the forms OpenAI's chat API takes — ``None`` beside an assistant's
``tool_calls``, a list of text parts — reaches a backend without a ``TypeError``.

Was: ``CompletionRequest.prompt_text`` joined the raw contents, so the replay backend raised
``TypeError: sequence item 1: expected str instance, NoneType found`` on a tool-call turn, and a
content given as parts could never find its logged outcome.
"""

from __future__ import annotations

import pytest

from agentroute.errors import BackendError
from agentroute.pool.backends.replay import LoggedOutcome, ReplayBackend
from agentroute.pool.card import ModelCard
from agentroute.types import CompletionRequest, content_text

CARD = ModelCard(id="logged", backend="replay", input_price=1, output_price=1)
BACKEND = ReplayBackend([LoggedOutcome("What is 2+2?", "logged", 1.0, 0.001, "4")])


async def test_content_as_text_parts_finds_its_logged_outcome() -> None:
    parts = [{"type": "text", "text": "What is "}, {"type": "text", "text": "2+2?"}]
    request = CompletionRequest(model="logged", messages=[{"role": "user", "content": parts}])
    assert (await BACKEND.complete(request, CARD)).text == "4"


async def test_tool_call_turn_with_no_content_is_a_backend_error_not_a_type_error() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 2}'}}
    chat = [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "4"},
    ]
    with pytest.raises(BackendError, match="no logged outcome"):
        await BACKEND.complete(CompletionRequest(model="logged", messages=chat), CARD)


@pytest.mark.parametrize(
    ("content", "text"),
    [
        ("plain", "plain"),
        (None, ""),
        ([{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {}}], "a"),
        (7, "7"),
    ],
)
def test_content_text(content: object, text: str) -> None:
    assert content_text(content) == text

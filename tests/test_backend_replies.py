"""The openai and litellm backends against the shapes of reply real providers send, streamed and
plain, from a real HTTP server on 127.0.0.1 (:mod:`tests.fixtures_reply_server`).

- a reasoning model's text (``reasoning_content``: vLLM's reasoning parsers, DeepSeek, LiteLLM;
  ``reasoning``: newer vLLM, OpenRouter) is kept as ``raw["reasoning"]`` and billed: the
  provider's usage counts it, and a reply without usage is counted with it (it used to be dropped,
  and a plain reply's count left it out: below the bill);
- through LiteLLM, the usage is read from the stream's last chunk (its public API) and LiteLLM's
  own estimate, made when the provider sent none, is not taken for the provider's;
- an empty ``choices`` list is a protocol error, streamed too (a stream used to pass as an empty
  answer); a reply the content filter emptied fails the step (it used to pass as an empty
  answer); a tool call without content keeps its calls (``raw["tool_calls"]``), billed; an error
  object sent with HTTP 200 is the error it says (it used to be a protocol error, or through
  LiteLLM's stream an empty answer); a model name in any script reaches the server whole.
"""

from __future__ import annotations

import os

import pytest

from agentroute.errors import BackendError, ProtocolError
from agentroute.pool.backends.openai import OpenAIBackend
from agentroute.pool.card import ModelCard
from agentroute.types import CompletionRequest
from tests.fixtures_reply_server import ANSWER, PROMPT_TOKENS, REASONING, ReplyServer

ANSWER_TEXT, REASONING_TEXT = "".join(ANSWER), "".join(REASONING)
MODES = [("openai", True), ("openai", False), ("litellm", True), ("litellm", False)]
IDS = ["openai-stream", "openai-plain", "litellm-stream", "litellm-plain"]


def make_backend(kind: str, stream: bool):
    if kind == "openai":
        return OpenAIBackend(stream=stream)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    pytest.importorskip("litellm")
    from agentroute.pool.backends.litellm import LiteLLMBackend

    return LiteLLMBackend(stream=stream)


def card_for(kind: str, url: str, model: str) -> ModelCard:
    return ModelCard(id="m", backend=kind, model=model if kind == "openai" else f"openai/{model}", base_url=url,
                     input_price=1.0, output_price=2.0)


REQUEST = CompletionRequest(model="m", messages=[{"role": "user", "content": "Capital of France?"}], max_tokens=32)


@pytest.mark.parametrize(("kind", "stream"), MODES, ids=IDS)
async def test_reasoning_text_is_kept_and_billed(kind: str, stream: bool) -> None:
    backend = make_backend(kind, stream)
    try:
        with ReplyServer() as server:
            for model in ("reasoner", "reasoner2"):
                done = await backend.complete(REQUEST, card_for(kind, server.url, model))
                assert done.text == ANSWER_TEXT, model
                assert done.raw["reasoning"] == REASONING_TEXT, model
                # the provider's usage counts the reasoning: read as reported (not LiteLLM's estimate)
                assert (done.tokens_in, done.tokens_out) == (PROMPT_TOKENS, len(REASONING) + len(ANSWER)), model
                assert not done.raw.get("usage_counted"), model
            # no usage: counted (the byte bound: the server has no /tokenize), the reasoning included
            done = await backend.complete(REQUEST, card_for(kind, server.url, "nousage"))
            assert done.raw["usage_counted"] and done.raw["reasoning"] == REASONING_TEXT
            assert done.tokens_out == len((ANSWER_TEXT + REASONING_TEXT).encode())
            assert done.cost_usd == pytest.approx(card_for(kind, server.url, "nousage").usd(done.tokens_in, done.tokens_out))
    finally:
        await backend.aclose()


@pytest.mark.parametrize(("kind", "stream"), MODES, ids=IDS)
async def test_reply_shapes_real_providers_send(kind: str, stream: bool) -> None:
    backend = make_backend(kind, stream)
    try:
        with ReplyServer() as server:
            with pytest.raises(ProtocolError, match="choices|stream"):  # "choices": [] (or only a usage chunk)
                await backend.complete(REQUEST, card_for(kind, server.url, "empty"))

            with pytest.raises(BackendError, match="content filter") as info:
                await backend.complete(REQUEST, card_for(kind, server.url, "filtered"))
            assert not info.value.retryable and info.value.billed  # another model may take the step

            done = await backend.complete(REQUEST, card_for(kind, server.url, "toolcall"))
            assert done.text == "" and done.raw["finish_reason"] == "tool_calls"
            [call] = done.raw["tool_calls"]
            assert call["id"] == "c1" and call["function"] == {"name": "lookup", "arguments": '{"q": "Paris"}'}
            assert done.tokens_out == 9  # as the server billed it

            # an error object for body (not a stream, streamed or not): read as its code says
            with pytest.raises(BackendError, match="upstream model crashed") as info:
                await backend.complete(REQUEST, card_for(kind, server.url, "error200"))
            assert type(info.value) is BackendError and info.value.retryable and not info.value.billed

            name = "echo-café-模型🙂"
            done = await backend.complete(REQUEST, card_for(kind, server.url, name))
            assert done.text == name and server.requests[-1]["model"] == name
    finally:
        await backend.aclose()


def test_an_error_object_is_read_as_its_code_says() -> None:
    from agentroute.pool.backends.openai import error_in, error_reply

    assert error_in({"error": {"message": "", "code": None}, "choices": []}, None) is None  # empty: a success
    assert error_in({"error": {"message": "x"}, "choices": [{"index": 0}]}, None) is None  # it did answer
    assert not error_reply("m", {"message": "bad", "code": 400}).retryable
    assert error_reply("m", {"message": "slow down", "code": "429"}).retryable
    assert error_reply("m", {"message": "busy", "type": "overloaded_error"}).retryable
    assert not error_reply("m", "nope").retryable and "nope" in str(error_reply("m", "nope"))


# LiteLLM's plain path gives an error object without code the status 422 (not retryable)
@pytest.mark.parametrize(("kind", "stream"), MODES[:3], ids=IDS[:3])
async def test_an_overloaded_server_says_so_with_http_200_and_is_retried(kind: str, stream: bool) -> None:
    """``{"error": {"type": "server_error", ...}}`` as the body, or as the first event of the stream:
    retryable, not billed (nothing was generated), the server's message shown; once the stream had
    begun (a role chunk, text) the attempt may have been billed."""
    backend = make_backend(kind, stream)
    try:
        with ReplyServer() as server:
            with pytest.raises(BackendError, match="model overloaded") as info:
                await backend.complete(REQUEST, card_for(kind, server.url, "overloaded"))
            assert type(info.value) is BackendError and info.value.retryable and not info.value.billed
            if stream:
                with pytest.raises(BackendError, match="model overloaded") as info:
                    await backend.complete(REQUEST, card_for(kind, server.url, "overloaded2"))
                assert info.value.retryable and info.value.billed
                # the stream had begun (a role chunk) when the error came: the provider ran the
                # prompt and may bill it, so the attempt counts as billed (it did not, before)
                with pytest.raises(BackendError, match="model overloaded") as info:
                    await backend.complete(REQUEST, card_for(kind, server.url, "overloaded1"))
                assert info.value.retryable and info.value.billed
    finally:
        await backend.aclose()


async def test_litellm_stream_reads_the_providers_usage_without_counting_on_the_event_loop(monkeypatch) -> None:
    """A streamed LiteLLM reply's usage is told apart from LiteLLM's own estimate by the chunks the
    provider sent, not by counting the prompt again on the event loop: ``litellm.token_counter``
    may fetch a tokenizer from the Hugging Face Hub (a ``llama-3`` name: 24 s of retries offline),
    which blocked every step in flight after each reply that carried the provider's usage."""
    import threading

    backend = make_backend("litellm", True)
    import litellm

    loop_thread, on_loop = threading.get_ident(), []
    counter = litellm.token_counter

    def watched(*args, **kwargs):
        on_loop.append(threading.get_ident() == loop_thread)
        return counter(*args, **kwargs)

    monkeypatch.setattr(litellm, "token_counter", watched)
    try:
        with ReplyServer() as server:
            done = await backend.complete(REQUEST, card_for("litellm", server.url, "reasoner"))
            assert (done.tokens_in, done.tokens_out) == (PROMPT_TOKENS, len(REASONING) + len(ANSWER))
            assert not done.raw.get("usage_counted")
            done = await backend.complete(REQUEST, card_for("litellm", server.url, "nousage"))
            assert done.raw["usage_counted"]  # LiteLLM's estimate is not taken for the provider's usage
        assert not any(on_loop)
    finally:
        await backend.aclose()


@pytest.mark.parametrize(("kind", "stream"), MODES, ids=IDS)
async def test_a_completion_count_that_leaves_out_the_reasoning_is_raised_to_the_bill(kind: str, stream: bool) -> None:
    """Gateways to Gemini report ``completion_tokens`` as the answer's alone, the thoughts only in
    ``total_tokens`` and ``reasoning_tokens``; the provider bills them as output. The ledger books
    the bill (it booked the answer alone, below the bill; streamed, the count below the chunks
    received failed the step as a protocol error and charged its worst case)."""
    backend = make_backend(kind, stream)
    try:
        with ReplyServer() as server:
            card = card_for(kind, server.url, "thinker")
            done = await backend.complete(REQUEST, card)
            assert done.raw["reasoning"] == REASONING_TEXT
            assert (done.tokens_in, done.tokens_out) == (PROMPT_TOKENS, len(REASONING) + len(ANSWER))
            assert done.cost_usd == pytest.approx(card.usd(PROMPT_TOKENS, len(REASONING) + len(ANSWER)))
    finally:
        await backend.aclose()


def test_billed_completion_keeps_a_complete_count_and_ignores_a_bad_total() -> None:
    from agentroute.pool.backends.usage import billed_completion, reply_usage

    card = ModelCard(id="m", context_window=1000)
    full = {"prompt_tokens": 7, "completion_tokens": 11, "total_tokens": 18, "completion_tokens_details": {"reasoning_tokens": 6}}
    assert billed_completion(card, full, 7, 11) == 11  # reasoning inside the completion: as reported
    assert billed_completion(card, {**full, "total_tokens": float("nan")}, 7, 11) == 11
    assert billed_completion(card, {**full, "total_tokens": 12}, 7, 11) == 11  # a total below: the count stands
    assert billed_completion(card, full, 7, None) is None  # no count: counted from the text
    # the thoughts only in the total: completion 0 with reasoning was counted from the text before
    messages = [{"role": "user", "content": "hi"}]
    assert reply_usage(card, {"prompt_tokens": 21, "completion_tokens": 0, "total_tokens": 81}, messages=messages, text="x") == (21, 60)

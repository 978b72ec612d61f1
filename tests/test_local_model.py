"""The local backend with the real SmolLM2-135M model: generation, cache, batching, accounting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentroute.errors import BackendError, ConfigurationError
from agentroute.pool.card import ModelCard
from agentroute.types import CompletionRequest
from tests.tiny_gguf import write_tiny_gguf

pytest.importorskip("transformers")

from agentroute.pool.backends.local import (  # noqa: E402
    DEFAULT_GGUF,
    LocalBackend,
    LocalModel,
    ModelSource,
)

CARD = ModelCard(
    id="smol", backend="local", model=DEFAULT_GGUF, input_price=0.05, output_price=0.20, timeout_s=300
)


def ask(
    text: str, *, max_tokens: int = 24, temperature: float = 0.0, stop: list[str] | None = None
) -> CompletionRequest:
    return CompletionRequest(
        model=CARD.backend_model,
        messages=[{"role": "user", "content": text}],
        max_tokens=max_tokens,
        temperature=temperature,
        stop=stop,
    )


@pytest.fixture
async def backend() -> AsyncIterator[LocalBackend]:
    """A fresh backend (its own worker and counters) over the process-wide model."""
    b = LocalBackend(max_batch=8, wait_ms=20)
    await b.preload(CARD)
    yield b
    await b.aclose()


# -- no model needed -------------------------------------------------------------------------------
async def test_unpriced_card_is_refused() -> None:
    card = ModelCard(id="free", backend="local", model=DEFAULT_GGUF)
    with pytest.raises(ConfigurationError, match="'free' has no price"):
        await LocalBackend().complete(ask("hi"), card)
    with pytest.raises(ConfigurationError, match="no price"):
        LocalBackend().worst_case_usd(ask("hi"), card)


def test_model_source_errors_name_the_value(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigurationError, match=r"'nope\.gguf' is not in .*SmolLM2-135M-Instruct\.Q4_1\.gguf"
    ):
        ModelSource.resolve("nope.gguf")
    with pytest.raises(ConfigurationError, match="does not exist"):
        ModelSource.resolve(str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match="has no config.json"):
        ModelSource.resolve(str(tmp_path))
    assert ModelSource.resolve("HuggingFaceTB/SmolLM2-135M-Instruct").kind == "hub"
    assert ModelSource.resolve(DEFAULT_GGUF).kind == "gguf"


# -- real model ------------------------------------------------------------------------------------
@pytest.mark.slow
async def test_generation_tokens_cost_confidence(backend: LocalBackend) -> None:
    request = ask("What is the capital of France?")
    first = await backend.complete(request, CARD)
    again = await backend.complete(request, CARD)
    assert "Paris" in first.text
    assert again.text == first.text  # greedy at temperature 0
    model = backend.model(CARD)
    assert first.tokens_in == len(model.prompt_ids(request.messages))
    assert 0 < first.tokens_out <= request.max_tokens
    assert first.cost_usd == pytest.approx(CARD.usd(first.tokens_in, first.tokens_out))
    assert first.cost_usd <= backend.worst_case_usd(request, CARD)
    assert 0.0 <= first.raw["confidence"] <= 1.0
    assert first.latency_ms > 0
    assert backend.count_tokens("hello world", CARD) == len(
        model.tokenizer.encode("hello world", add_special_tokens=False)
    )


@pytest.mark.slow
async def test_max_tokens_and_stop_sequences(backend: LocalBackend) -> None:
    counting = "Count from 1 to 30, one number per line."
    capped = await backend.complete(ask(counting, max_tokens=5), CARD)
    assert capped.tokens_out == 5 and capped.raw["finish_reason"] == "length"
    stopped = await backend.complete(ask(counting, max_tokens=40, stop=["7"]), CARD)
    full = await backend.complete(ask(counting, max_tokens=40), CARD)
    assert "7" in full.text
    assert "7" not in stopped.text and stopped.raw["finish_reason"] == "stop"
    assert full.text.startswith(stopped.text)
    assert stopped.tokens_out < full.tokens_out


@pytest.mark.slow
async def test_concurrent_requests_are_micro_batched(backend: LocalBackend) -> None:
    batcher = backend.batcher(CARD)
    calls, served = batcher.generate_calls, batcher.requests
    questions = [f"What is {i} plus {i}?" for i in range(8)]
    results = await asyncio.gather(*(backend.complete(ask(q, max_tokens=12), CARD) for q in questions))
    assert batcher.requests - served == 8
    assert batcher.generate_calls - calls < 8
    assert max(r.raw["batch_size"] for r in results) > 1
    assert all(r.text and 0 < r.tokens_out <= 12 for r in results)


@pytest.mark.slow
async def test_mixed_temperatures_are_grouped_and_sampling_varies(backend: LocalBackend) -> None:
    batcher = backend.batcher(CARD)
    calls = batcher.generate_calls
    prompt = "Write one sentence about the sea."
    requests = [ask(prompt, max_tokens=16)] * 2 + [ask(prompt, max_tokens=16, temperature=1.0)] * 4
    results = await asyncio.gather(*(backend.complete(r, CARD) for r in requests))
    assert batcher.generate_calls - calls == 2  # one greedy group, one sampled group
    assert results[0].text == results[1].text
    assert len({r.text for r in results[2:]}) > 1
    assert all(0.0 <= r.raw["confidence"] <= 1.0 for r in results)


@pytest.mark.slow
async def test_price_per_second_card_and_context_window(backend: LocalBackend) -> None:
    card = CARD.model_copy(update={"input_price": None, "output_price": None, "price_per_second": 0.01})
    done = await backend.complete(ask("Say hello.", max_tokens=8), card)
    assert done.cost_usd == pytest.approx(0.01 * done.raw["compute_s"]) and done.cost_usd > 0
    assert backend.worst_case_usd(ask("Say hello."), card) == pytest.approx(0.01 * card.timeout_s)
    with pytest.raises(BackendError, match="exceeds the context window of 8192") as info:
        await backend.complete(ask("Say hello.", max_tokens=9000), CARD)
    assert not info.value.retryable


def test_gguf_cache_written_atomically_then_reused(tmp_path: Path) -> None:
    """The cache logic on a tiny GGUF file (the default model's conversion runs wherever it is first
    loaded, e.g. the ``backend`` fixture on a fresh machine): converted once, cached atomically, then
    loaded from the cache without reading the GGUF file again, the same model."""
    source = ModelSource.resolve(str(write_tiny_gguf(tmp_path / "tiny.gguf")))
    cold = LocalModel.load(source, cache=tmp_path)
    cached_dir = source.cache_dir(tmp_path)
    assert cold.loaded_from == "gguf"
    assert (cached_dir / "model.safetensors").is_file() and (cached_dir / "agentroute-cache.json").is_file()
    assert not [p for p in cached_dir.parent.iterdir() if p.name.startswith(".tmp-")]
    size = source.gguf_path.stat().st_size
    source.gguf_path.write_bytes(bytes(size))  # same size (the cache's key), unreadable as GGUF
    warm = LocalModel.load(source, cache=tmp_path)
    assert warm.loaded_from == "cache"
    prompt = cold.prompt_ids([{"role": "user", "content": "Name a color."}])
    assert cold.tokenizer.decode(prompt).startswith("<|im_start|>user\nName a color.<|im_end|>")
    assert warm.prompt_ids([{"role": "user", "content": "Name a color."}]) == prompt
    assert warm.generate([prompt], [8])[0].text == cold.generate([prompt], [8])[0].text
    with pytest.raises(ConfigurationError, match="could not load local model"):
        LocalModel.load(source, cache=tmp_path / "elsewhere")  # the zeroed file: proof warm never read it


@pytest.mark.slow
async def test_load_from_local_directory() -> None:
    shared = await LocalBackend().preload(CARD)  # writes (or reuses) the safetensors cache
    directory = ModelSource.resolve(DEFAULT_GGUF).cache_dir()
    if not directory.is_dir():
        pytest.skip(f"the model cache {directory} could not be written")
    card = CARD.model_copy(update={"id": "smol-dir", "model": str(directory)})
    backend = LocalBackend()
    try:
        model = await backend.preload(card)
        assert model.loaded_from == "directory" and model is not shared
        done = await backend.complete(ask("What is the capital of France?"), card)
        assert "Paris" in done.text
    finally:
        await backend.aclose()


@pytest.mark.slow
async def test_a_prompt_beyond_the_context_window_is_refused_unbilled_and_falls_over(backend: LocalBackend) -> None:
    """A prompt the local model cannot hold was a billed failure (the step charged its worst case,
    ~$0.0005 here, for a call that never ran) with no code a client could read. Now it is a
    ``ContextLengthError``: a call, $0, and the step falls over to a model that can take it."""
    from agentroute import Budget, Dispatcher, ModelPool, make_router
    from agentroute.errors import ContextLengthError
    from tests.helpers import replay_pool

    with pytest.raises(ContextLengthError, match="exceeds the context window"):
        await backend.complete(ask("word " * 10_000, max_tokens=4), CARD)
    replay = replay_pool()
    pool = ModelPool([CARD, replay.card("large")], {"local": backend, "replay": replay.backend("large")})
    dispatcher = Dispatcher(pool, make_router("cheapest"))
    run = dispatcher.start("q", budget=Budget(usd=1.0))
    step = await dispatcher.step(run, role="executor", stage="execute", prompt="", input="word " * 10_000, query_id="q3", max_tokens=4)
    assert [s.agent.model for s in run.steps] == ["smol", "large"] and step.output == "large says 3"
    assert run.steps[0].cost_usd == 0 and run.ledger.spent["calls"] == 2
    assert run.ledger.spent_usd == pytest.approx(step.cost_usd)

"""A card's ``timeout_s`` bounds the silences of every backend that produces its answer piece by
piece, as it does for the streamed replies of the openai and litellm backends
(tests/test_stream_timeouts.py): the local model (SmolLM2, generating token by token) and a
backend of the user's built on :class:`StreamingBackend` or calling :func:`show_progress`. A
backend that cannot show progress (a plain ``complete``, a local card priced per second) keeps
``timeout_s`` as the limit of the whole call.

Before, the local backend and user backends were cut ``timeout_s`` after the call began however
steadily they produced tokens: a slow but healthy generation was cut, booked at its worst case
and retried, each try cut again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from agentroute import Budget, Dispatcher, make_router
from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool
from agentroute.types import Completion, CompletionRequest

TIMEOUT_S = 0.4
PIECES = [f" w{i}" for i in range(12)]


async def one_step(pool: ModelPool, task: str, *, retries: int = 2, ask: str = "hello"):
    dispatcher = Dispatcher(pool, make_router("cheapest"), retries=retries, backoff_s=0.01)
    run = dispatcher.start("hello", budget=Budget(usd=5.0), task_id=task)
    started = time.monotonic()
    try:
        step = await dispatcher.step(run, role="executor", stage="execute", prompt="Answer.", input=f"[task:{task}] {ask}")
    finally:
        elapsed = time.monotonic() - started
    dispatcher.finish(run)
    return step, run, elapsed


def user_pool(backend, **card) -> ModelPool:
    fields = {"id": "mine", "backend": "mine", "input_price": 1.0, "output_price": 2.0, "timeout_s": TIMEOUT_S, "max_tokens": 64}
    return ModelPool([ModelCard(**{**fields, **card})], backends={"mine": backend})


# -- a backend of the user's ---------------------------------------------------------------------
async def test_a_user_backend_that_yields_slowly_completes_once_and_a_silent_one_is_cut() -> None:
    """Twelve pieces 0.1 s apart (~1.2 s) with ``timeout_s=0.4``: one call, the whole answer, billed
    once; the same backend silent for 2 s before its first piece is cut after ``timeout_s``."""
    from agentroute.pool.backends.streaming import StreamingBackend

    class Slow(StreamingBackend):
        def __init__(self, gap_s: float, first_s: float = 0.0):
            self.gap_s, self.first_s, self.calls = gap_s, first_s, 0

        async def stream(self, request: CompletionRequest, card: ModelCard) -> AsyncIterator[str]:
            self.calls += 1
            await asyncio.sleep(self.first_s)
            for piece in PIECES:
                await asyncio.sleep(self.gap_s)
                yield piece

    steady = Slow(0.1)
    step, run, elapsed = await one_step(user_pool(steady), "steady")
    assert step is not None and step.status == "ok", step and step.error
    assert steady.calls == 1 and step.output == "".join(PIECES)
    assert elapsed > 2 * TIMEOUT_S  # it did outlast timeout_s
    assert step.tokens_out == len("".join(PIECES).encode())  # counted (the byte bound): no usage reported
    assert run.ledger.spent["usd"] == pytest.approx(step.cost_usd)

    silent = Slow(0.0, first_s=2.0)
    step, _, elapsed = await one_step(user_pool(silent), "silent", retries=0)
    assert step is not None and step.status == "failed" and "timed out" in (step.error or ""), step and step.error
    assert silent.calls == 1 and elapsed < 1.5


async def test_a_user_backend_calling_show_progress_runs_on_and_a_plain_one_is_timed_whole() -> None:
    """A plain ``complete`` that calls :func:`show_progress` with each piece runs past
    ``timeout_s``; one that does not is cut ``timeout_s`` after it began (it cannot show progress)."""
    from agentroute.pool.backends.base import Backend, show_progress

    class Plain(Backend):
        def __init__(self, progress: bool):
            self.progress, self.calls = progress, 0

        async def complete(self, request: CompletionRequest, card: ModelCard) -> Completion:
            self.calls += 1
            for _ in PIECES:
                await asyncio.sleep(0.1)
                if self.progress:
                    show_progress()
            return Completion(model=card.id, text="".join(PIECES))

    showing = Plain(progress=True)
    step, _, elapsed = await one_step(user_pool(showing), "showing")
    assert step is not None and step.status == "ok", step and step.error
    assert showing.calls == 1 and elapsed > 2 * TIMEOUT_S

    whole = Plain(progress=False)
    step, _, elapsed = await one_step(user_pool(whole), "whole", retries=0)
    assert step is not None and step.status == "failed" and "timed out" in (step.error or ""), step and step.error
    assert elapsed < 1.0


async def test_a_user_stream_past_max_tokens_is_closed_and_billed_as_produced() -> None:
    """A user's stream that ignores ``max_tokens`` is closed after ``max_tokens`` + 1 pieces: the
    answer keeps ``max_tokens`` pieces, the bill what was produced, and its generator is closed."""
    from agentroute.pool.backends.streaming import StreamingBackend

    class Runaway(StreamingBackend):
        closed = False

        async def stream(self, request: CompletionRequest, card: ModelCard) -> AsyncIterator[str]:
            try:
                while True:
                    yield " w"
            finally:
                Runaway.closed = True

    card = ModelCard(id="r", backend="mine", input_price=1.0, output_price=2.0)
    done = await Runaway().complete(CompletionRequest(model="r", messages=[{"role": "user", "content": "hi"}], max_tokens=5), card)
    assert done.text == " w" * 5 and done.raw["stream_cut"] and done.raw["finish_reason"] == "length"
    assert done.tokens_out == len((" w" * 6).encode()) and Runaway.closed


# -- the local model (real SmolLM2) -----------------------------------------------------------------
@pytest.mark.slow
async def test_a_local_generation_longer_than_timeout_s_completes_once_charged_what_it_generated() -> None:
    """SmolLM2 generating 64 tokens with ``timeout_s`` the time of 16 of them (a quarter of that
    generation; many token gaps long): one call, read to its end, charged the tokens it generated; a short answer
    batched with a long one is not cut while it waits for its batch. A card priced per second keeps
    ``timeout_s`` as the limit of the whole call (its worst case relies on it)."""
    pytest.importorskip("transformers")
    from agentroute.pool.backends.local import DEFAULT_GGUF, LocalBackend

    base = ModelCard(id="smol", backend="local", model=DEFAULT_GGUF, input_price=0.05, output_price=0.20,
                     max_tokens=128, timeout_s=300)  # direct: 64 tokens
    backend = LocalBackend(max_batch=1, wait_ms=0)
    try:
        await backend.preload(base)
        ask = "Write a long story about a cat who travels the world."
        story = [{"role": "user", "content": f"[task:measure] {ask}"}]
        started = time.perf_counter()
        measured = await backend.complete(CompletionRequest(model="smol", messages=story, max_tokens=16), base)
        assert measured.tokens_out == 16, measured.text  # many token gaps (the prompt's time counted: a longer timeout)
        timeout_s = max(time.perf_counter() - started, 0.3)  # about a quarter of the 64-token step below
        card = base.model_copy(update={"timeout_s": timeout_s})
        pool = ModelPool([card], backends={"local": backend})
        before = backend.batcher(card).requests
        step, run, elapsed = await one_step(pool, "local", ask=ask)
        assert step is not None and step.status == "ok", step and step.error
        assert backend.batcher(card).requests - before == 1  # one call, not cut and retried
        assert elapsed > timeout_s  # it did outlast timeout_s
        assert step.tokens_out >= 32 and step.cost_usd == pytest.approx(card.usd(step.tokens_in, step.tokens_out))
        assert run.ledger.spent["usd"] == pytest.approx(step.cost_usd)  # charged what it generated

        # batched with it, a short answer done at its 4th token waits for the batch's last (its 48th,
        # about three times timeout_s): alive
        from agentroute.dispatch.dispatcher import call_within

        batched = LocalBackend(max_batch=8, wait_ms=300)
        try:
            await batched.preload(card)
            short = CompletionRequest(model="smol", messages=[{"role": "user", "content": f"[task:short] {ask}"}], max_tokens=4)
            long = CompletionRequest(model="smol", messages=[{"role": "user", "content": f"[task:long] {ask}"}], max_tokens=48)
            a, b = await asyncio.gather(call_within(batched.complete(short, card), timeout_s),
                                        call_within(batched.complete(long, card), timeout_s))
            assert batched.batcher(card).batch_sizes == [2]
            assert a.tokens_out <= 4 and b.tokens_out >= 32
        finally:
            await batched.aclose()

        per_second = card.model_copy(update={"input_price": None, "output_price": None, "price_per_second": 0.01,
                                             "timeout_s": timeout_s})
        pool = ModelPool([per_second], backends={"local": backend})
        step, _, elapsed = await one_step(pool, "per-second", retries=0, ask=ask)
        assert step is not None and step.status == "failed" and "timed out" in (step.error or ""), step and step.error
    finally:
        await backend.aclose()

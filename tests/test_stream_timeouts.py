"""A card's ``timeout_s`` on a streamed reply bounds the server's silence, not the answer's length.

Against the adversarial server (:mod:`tests.fixtures_adversary`, real HTTP on 127.0.0.1): its
``runaway`` model streams one token every ``pace_s`` seconds and ignores ``max_tokens``, so the
client cuts it after ``max_tokens`` + 1 chunks. A slow but steady stream that lasts longer than
``timeout_s`` used to be cut at ``timeout_s``, booked at its worst case and retried, every try cut
again: the user paid three worst cases and got nothing. Now a stream is cut when no chunk came for
``timeout_s`` (before the first one, or between two), or at the task's ``seconds`` deadline.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from agentroute import Budget, Dispatcher, make_router
from agentroute.pool.pool import ModelPool
from agentroute.types import CompletionRequest
from tests.fixtures_adversary import Adversary, adversary_pool

TIMEOUT_S = 0.4
PRICES = (4.0, 12.0)  # USD per 1M tokens (input, output)
#: the shared 2-core machine stalls its event loop for tenths of a second under load
SLACK_S = 1.0


async def one_step(server: Adversary, task: str, *, max_tokens: int, budget: Budget | None = None, backend: str = "openai"):
    pool = adversary_pool(server.url, {"runaway-x": (*PRICES, "small", ("direct",))}, timeout_s=TIMEOUT_S, max_tokens=max_tokens)
    if backend == "litellm":
        # the same card through LiteLLM (OpenAI's protocol: streamed, read by StreamText), imported
        # as the backend imports it: with its local cost map, not fetched from the network
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        pytest.importorskip("litellm")
        pool = ModelPool([c.model_copy(update={"backend": "litellm", "model": f"openai/{c.model}"}) for c in pool])
    dispatcher = Dispatcher(pool, make_router("cheapest"), retries=2, backoff_s=0.01)
    # the first call of a process builds the SDK's client and reply models (tenths of a second on a
    # loaded machine): made here, by an honest model of the same server, it is not timed below
    card = pool.card("runaway-x")
    warm = card.model_copy(update={"id": "honest-x", "model": card.model.replace("runaway-x", "honest-x")})
    await pool.backend("runaway-x").complete(CompletionRequest(model="honest-x", messages=[{"role": "user", "content": "hi"}], max_tokens=4), warm)
    server.reset()
    run = dispatcher.start("hello", budget=budget or Budget(usd=1.0), task_id=task)
    started = time.monotonic()
    try:
        step = await dispatcher.step(run, role="executor", stage="execute", prompt="Answer.", input=f"[task:{task}] hello")
    finally:
        elapsed = time.monotonic() - started
        await pool.aclose()
    result = dispatcher.finish(run)
    return step, run, result, elapsed, card


def worst_case(card, charge) -> float:
    """The least an attempt's worst case can be: the prompt the server billed, its ``max_tokens``."""
    return card.usd(charge.prompt_tokens, charge.max_tokens)


async def bills(server: Adversary, task: str, n: int):
    """The server's charges for ``task`` once it has seen its ``n`` clients leave."""
    for _ in range(100):
        if len(server.bill(task).charges) >= n:
            break
        await asyncio.sleep(0.02)
    return server.bill(task).charges


@pytest.mark.parametrize("backend", ["openai", "litellm"])
async def test_a_steady_stream_longer_than_timeout_s_completes_once_and_is_charged_once(backend: str) -> None:
    """A token every 100 ms (13 tokens: ~1.3 s) with ``timeout_s=0.4``: before, every try was cut
    at 0.4 s and booked at its worst case, three tries, the step failed; now one call, read to
    ``max_tokens``, booked as the tokens received (what the server billed)."""
    with Adversary(prices={"runaway-x": PRICES}, pace_s=0.1) as server:
        step, run, _, elapsed, card = await one_step(server, "steady", max_tokens=24, backend=backend)
        assert server.requests == 1, _audit(run)
        assert step is not None and step.status == "ok", step and step.error
        [charge] = await bills(server, "steady", 1)
        assert elapsed > 2 * TIMEOUT_S  # it did outlast timeout_s
        assert step.tokens_out == charge.max_tokens + 1  # cut at max_tokens, not at timeout_s
        assert step.tokens_out <= charge.completion_tokens < 20 * charge.max_tokens  # stopped when the client left
        assert step.cost_usd == pytest.approx(card.usd(step.tokens_in, step.tokens_out))
        assert step.cost_usd < 1.5 * worst_case(card, charge)  # one attempt, not three worst cases
        assert run.ledger.spent["usd"] == pytest.approx(step.cost_usd)


async def test_a_stream_that_goes_silent_after_its_first_chunk_is_cut_after_timeout_s_and_retried() -> None:
    """One token, then silence (the next would come after 30 s): each try is cut ``timeout_s``
    after its last chunk, booked at its worst case (the model may have run on) and retried as before."""
    with Adversary(prices={"runaway-x": PRICES}, pace_s=30.0) as server:
        step, run, _, elapsed, card = await one_step(server, "silent", max_tokens=24)
        assert server.requests == 3  # retries=2: three tries, as before
        assert step is not None and step.status == "failed"
        assert "silent" in (step.error or ""), step.error
        assert 3 * TIMEOUT_S <= elapsed < 3 * TIMEOUT_S + SLACK_S
        retries = [detail for kind, _, detail in _audit(run) if kind == "retry"]
        assert len(retries) == 2, _audit(run)
        charges = await bills(server, "silent", 3)
        assert len(charges) == 3
        assert step.cost_usd >= 3 * worst_case(card, charges[0])  # each try booked at its worst case
        for charge in charges:
            assert charge.completion_tokens <= charge.max_tokens  # never more than the worst case booked


async def test_the_tasks_deadline_still_cuts_a_steady_stream() -> None:
    """A steady stream (one token every 40 ms, 200 tokens: 8 s) under ``Budget(seconds=1)``: cut at
    the deadline, once, booked at its worst case (the provider may have generated more than was
    received), and the task ends on its deadline."""
    with Adversary(prices={"runaway-x": PRICES}, pace_s=0.04) as server:
        step, run, result, elapsed, card = await one_step(server, "deadline", max_tokens=200, budget=Budget(seconds=1.0))
        assert server.requests == 1  # not cut at timeout_s and retried
        assert step is not None and step.status == "failed"
        assert "deadline" in (step.error or ""), step.error
        assert 1.0 <= elapsed < 1.0 + SLACK_S
        [charge] = await bills(server, "deadline", 1)
        assert charge.completion_tokens < charge.max_tokens  # the provider stopped before its worst case
        assert step.cost_usd >= worst_case(card, charge)  # booked at the worst case: the safe bound
        assert result.status == "budget_exhausted"


def _audit(run):
    return [(e.kind, e.subject, e.detail) for e in run.context.get("audit", [])]


@pytest.mark.parametrize("stream", [False, True])
def test_serve_reads_a_steady_stream_longer_than_timeout_s(stream: bool) -> None:
    """`agentroute serve` in front of a slow, steady provider (a token every 100 ms, timeout_s
    0.4 s): the server cut the call at timeout_s — a 503 'timed out' (plain) or an error event after
    four tokens (streamed) — although the provider never went silent."""
    import openai

    from agentroute.serve import ServerThread

    with Adversary(prices={"runaway-x": PRICES}, pace_s=0.1) as provider:
        pool = adversary_pool(provider.url, {"runaway-x": (*PRICES, "small", ("direct",))}, timeout_s=TIMEOUT_S, max_tokens=12)
        with ServerThread(pool) as server:
            client = openai.OpenAI(base_url=server.url, api_key="x", max_retries=0)
            messages = [{"role": "user", "content": "hello"}]
            started = time.monotonic()
            if stream:
                parts = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
                    model="runaway-x", messages=messages, max_tokens=12, stream=True) if c.choices]  # fmt: skip
                text = "".join(parts)
            else:
                text = client.chat.completions.create(model="runaway-x", messages=messages, max_tokens=12).choices[0].message.content
            elapsed = time.monotonic() - started
    assert elapsed > 2 * TIMEOUT_S and len(text.split()) == 12, (elapsed, text)
    assert provider.requests == 1

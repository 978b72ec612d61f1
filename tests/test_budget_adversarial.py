"""Budgets hold at the provider's bill, against a real adversarial HTTP server (issue 10).

The server (:mod:`tests.fixtures_adversary`) bills every request it receives with SmolLM2's real
tokenizer. Property: on servers that keep their contract (faults allowed, usage honest) what was
billed stays within every task's limit, whatever the kind of limit; on servers that break it,
every overrun and protocol error is audited and the stored cost is never below the bill (equal to
it wherever usage was reported or counted). Plus one regression test per concrete case of the
issue that concerns backends.
"""

from __future__ import annotations

import pytest

from agentroute import Budget, Dispatcher, make_router
from tests.fixtures_adversary import (
    HONEST_POOL,
    LIAR_POOL,
    LIMIT_KINDS,
    Adversary,
    adversary_pool,
    run_tasks,
    summary,
)

TIMEOUT_S = 0.4
MAX_TOKENS = 24
#: A seconds budget may end at most this late here. The issue's bound (100 ms plus one cancellation)
#: is measured by benchmarks/budget_adversarial.py; a shared 2-core CI machine under load stalls the
#: event loop for whole tenths of a second, so the test allows more.
SECONDS_SLACK = 1.5


@pytest.fixture(scope="module")
def server():
    with Adversary(hang_s=5.0, prices={m: v[:2] for m, v in {**HONEST_POOL, **LIAR_POOL}.items()}) as adversary:
        yield adversary


def large(pool_spec: dict) -> frozenset[str]:
    return frozenset(m for m, v in pool_spec.items() if v[2] == "large")


def kinds_of(audit: list[tuple[str, str]]) -> set[str]:
    return {kind for kind, _ in audit}


# -- the properties -------------------------------------------------------------------------------
async def test_billed_never_exceeds_any_limit_on_servers_that_keep_their_contract(server) -> None:
    pool = adversary_pool(server.url, HONEST_POOL, timeout_s=TIMEOUT_S, max_tokens=MAX_TOKENS)
    outcomes = await run_tasks(server, pool, tasks=300, concurrency=20, seed=1)
    big = large(HONEST_POOL)
    table = summary(outcomes, big, seconds_slack=SECONDS_SLACK)
    over = [(o.id, o.kind, o.limit, o.billed(big), o.status, o.audit[-3:]) for o in outcomes
            if o.billed(big) > o.limit + (SECONDS_SLACK if o.kind == "seconds" else 1e-12)]
    assert not over, f"{len(over)} tasks billed over their limit, e.g. {over[:3]}; {table}"
    assert set(table) == set(LIMIT_KINDS) and sum(r["tasks"] for r in table.values()) == 300
    for o in outcomes:
        assert o.status in {"done", "budget_exhausted", "failed"}
        # every attempt was reserved; an attempt cut before the server read it is charged but not billed
        assert o.ledger["calls"] >= o.bill.requests, (o.id, o.ledger, o.bill.charges)
        assert o.stored_usd >= o.bill.usd - 1e-12, (o.id, o.stored_usd, o.bill.usd)  # faults charged as billed, or more
        assert o.ledger["usd"] == pytest.approx(o.stored_usd, rel=1e-9, abs=1e-15)
    assert sum(o.bill.requests for o in outcomes) > 300  # the tasks did call the servers
    assert any(c.behaviour in ("hang", "drop", "err500") for o in outcomes for c in o.bill.charges)  # faults did occur


async def test_servers_that_break_their_contract_are_audited_and_stored_as_billed(server) -> None:
    # no hangs here, and a timeout no loaded machine reaches: every reply is read, none is cut by time
    pool = adversary_pool(server.url, LIAR_POOL, timeout_s=30.0, max_tokens=MAX_TOKENS)
    outcomes = await run_tasks(server, pool, tasks=150, concurrency=20, seed=2, kinds=("usd", "tokens", "calls"))
    price_out = {m: v[1] for m, v in LIAR_POOL.items()}
    for o in outcomes:
        audited = kinds_of(o.audit)
        charges = o.bill.charges
        # a cut stream: the client read max_tokens + 1 chunks and left; what the server generated
        # before it noticed (more the busier the machine) is billed but cannot be known to the client
        tails = [(c.model, max(0, c.completion_tokens - c.max_tokens - 1)) for c in charges if c.behaviour == "runaway"]
        unseen = {"usd": sum(n * price_out[m] / 1e6 for m, n in tails), "tokens": sum(n for _, n in tails)}
        assert o.stored_usd >= o.bill.usd - unseen["usd"] - 1e-12, (o.id, o.stored_usd, o.bill.usd, charges)
        if all(c.behaviour in ("honest", "nousage", "overmax") for c in charges):
            assert o.stored_usd == pytest.approx(o.bill.usd, rel=1e-9, abs=1e-15), (o.id, charges)
        for c in charges:
            if c.behaviour == "overmax":  # hundreds of tokens above any reservation: audited
                assert ("overrun", c.model) in o.audit, (o.id, c, o.audit)
            if c.behaviour in ("negusage", "nanusage"):
                assert ("protocol_error", c.model) in o.audit, (o.id, c, o.audit)
        # over the limit by what the client saw is audited
        seen = o.billed(frozenset()) - unseen.get(o.kind, 0.0)
        if seen > o.limit + 1e-12 and o.kind != "calls":
            assert "overrun" in audited, (o.id, o.kind, o.limit, o.bill.usd, o.audit)
        # an endpoint that broke the protocol is not called again in the task
        bad = [c.model for c in charges if c.behaviour in ("negusage", "nanusage")]
        assert len(bad) == len(set(bad)), (o.id, bad)
    behaviours = {c.behaviour for o in outcomes for c in o.bill.charges}
    assert {"nousage", "negusage", "nanusage", "overmax", "runaway"} <= behaviours


# -- the concrete cases of issue 10 ---------------------------------------------------------------
CHINESE = (
    "请用三句话总结法国大革命的原因，并说明财政危机、启蒙思想和社会等级制度各自起到了什么作用。"
    "请注意引用具体的历史事件，例如三级会议的召开、网球场宣誓以及攻占巴士底狱，并比较它们的重要性。"
)
CODE = "def f(xs: list[int]) -> dict[str, int]:\n    return {f'{i:03d}': (x ** 2) % 7 for i, x in enumerate(xs) if x}  # {}[]()\n"


async def one_task(server, spec: dict, budget: Budget, text: str, task: str, *, steps: int = 1, max_tokens: int = MAX_TOKENS):
    # none of these servers hangs: a long timeout keeps a loaded machine from timing replies out
    pool = adversary_pool(server.url, spec, timeout_s=30.0, max_tokens=max_tokens)
    dispatcher = Dispatcher(pool, make_router("cheapest"), retries=2, backoff_s=0.01)
    run = dispatcher.start(text, budget=budget, task_id=task)
    for _ in range(steps):
        step = await dispatcher.step(run, role="executor", stage="execute", prompt="Answer.", input=f"[task:{task}] {text}")
        if step is None or run.exhausted:
            break
    result = dispatcher.finish(run)
    await pool.aclose()
    return result, run, server.bill(task)


@pytest.mark.parametrize(("name", "text"), [("chinese", CHINESE), ("code", CODE)])
async def test_cjk_and_code_prompts_are_billed_within_the_budget(server, name: str, text: str) -> None:
    """Issue 10: a Chinese prompt billed $0.00230 on a $0.00111 budget; a code prompt 1.28× over."""
    spec = {"honest-small": HONEST_POOL["honest-small"]}
    real_prompt = server.tokenizer.count_chat([{"role": "system", "content": "x"}, {"role": "user", "content": text}])
    for i, limit in enumerate((0.00002, 0.00005, 0.0001, 0.0002)):
        task, run, bill = await one_task(server, spec, Budget(usd=limit), text, f"{name}{i}", steps=3)
        assert bill.usd <= limit, (limit, bill.charges)
        for charge in bill.charges:
            assert charge.prompt_tokens >= real_prompt - 5  # the server counted the real prompt
        assert task.cost_usd >= bill.usd - 1e-15


async def test_negative_completion_tokens_cannot_buy_free_calls(server) -> None:
    """Issue 10: a reply with negative completion_tokens let 40 paid steps through a 2-call budget."""
    spec = {"negusage-small": LIAR_POOL["negusage-small"], "honest-small": (0.9, 1.8, "small", ("direct",))}
    task, run, bill = await one_task(server, spec, Budget(calls=2), "hello", "neg", steps=40)
    assert bill.requests <= 2 and run.ledger.spent["calls"] == bill.requests
    assert run.ledger.spent["usd"] >= bill.usd > 0
    assert any(e.kind == "protocol_error" and e.subject == "negusage-small" for e in run.context["audit"])
    assert sum(1 for c in bill.charges if c.model == "negusage-small") == 1  # avoided after the protocol error


async def test_nan_usage_does_not_disable_later_checks(server) -> None:
    """Issue 10: one NaN cost disabled every later check."""
    spec = {"nanusage-medium": (0.3, 0.6, "small", ("direct",)), "honest-small": (0.9, 1.8, "small", ("direct",))}
    limit = 0.0003
    task, run, bill = await one_task(server, spec, Budget(usd=limit), "hello", "nan", steps=40)
    spent = run.ledger.spent["usd"]
    assert spent == spent and spent <= limit  # finite, and the limit still holds
    assert bill.usd <= limit and len(bill.charges) >= 2
    assert any(e.kind == "protocol_error" and e.subject == "nanusage-medium" for e in run.context["audit"])
    assert task.status == "budget_exhausted"


async def test_usage_above_max_tokens_is_stored_as_billed_and_stops_the_task(server) -> None:
    """Issue 10: usage above max_tokens was capped at the reservation; the stored cost ended over the
    limit with no audit event, and calls continued."""
    spec = {"overmax-medium": LIAR_POOL["overmax-medium"]}
    task, run, bill = await one_task(server, spec, Budget(usd=0.01), "hello", "over", steps=10)
    assert len(bill.charges) == 1  # the overrun stopped the task's calls
    (charge,) = bill.charges
    assert charge.completion_tokens > charge.max_tokens
    assert task.cost_usd == pytest.approx(bill.usd, rel=1e-9) == pytest.approx(run.ledger.spent["usd"], rel=1e-9)
    overruns = [e for e in run.context["audit"] if e.kind == "overrun"]
    assert overruns and overruns[0].subject == "overmax-medium"
    assert task.status == "budget_exhausted"


async def test_a_stream_that_ignores_max_tokens_is_cut(server) -> None:
    """A stream past max_tokens is closed after max_tokens + 1 chunks: the server stops within a few
    tokens (instead of 20 × max_tokens), and the step books the tokens received."""
    spec = {"runaway-large": LIAR_POOL["runaway-large"]}
    task, run, bill = await one_task(server, spec, Budget(usd=0.01), "hello", "runaway", steps=3, max_tokens=16)
    assert bill.charges and len(bill.charges) == len(run.steps)
    for charge, step in zip(bill.charges, run.steps, strict=True):
        assert charge.max_tokens + 1 <= charge.completion_tokens < 20 * charge.max_tokens  # stopped, long before its cap
        assert step.tokens_out == charge.max_tokens + 1 and step.tokens_in >= charge.prompt_tokens

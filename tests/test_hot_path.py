"""The dispatcher's fast paths agree with the plain rules they short-cut (issue 10: overhead).

Every step of every task runs these, so they were made cheaper; each is checked here against the
slow, obvious formulation on arbitrary input: byte counts against ``str.encode``, the validity of a
cost against ``math.isfinite``, ``Budget.given`` against pydantic's dump, ``affordable_each`` against
``affordable``, the cached ``Agent.key`` across copies, and the replay backend's remembered lookup
across ``add``.
"""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from agentroute.budget import RESOURCES, Budget, Cost, Ledger
from agentroute.pool import LoggedOutcome, ModelCard, ReplayBackend
from agentroute.pool.backends.counting import utf8_len
from agentroute.types import Agent, CompletionRequest

AMOUNTS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**6), 10**6), st.just(0.0), st.just(-0.0)
)


@given(st.text())
def test_utf8_len_is_the_encoded_length(text: str) -> None:
    assert utf8_len(text) == len(text.encode("utf-8", "surrogatepass"))


@given(st.tuples(AMOUNTS, AMOUNTS, AMOUNTS, AMOUNTS, AMOUNTS))
def test_cost_is_valid_means_every_amount_finite_and_non_negative(amounts: tuple) -> None:
    expected = all(math.isfinite(a) and a >= 0 for a in amounts)
    assert Cost(*amounts).is_valid() is expected


@given(st.fixed_dictionaries({}, optional={r: st.integers(0, 10**6) for r in RESOURCES}))
def test_budget_given_is_the_dump_of_the_limits_set(limits: dict) -> None:
    budget = Budget(**limits)
    assert budget.given() == budget.model_dump(exclude_none=True)
    assert budget.limits() == {r: float(v) for r, v in limits.items()}


@given(
    st.fixed_dictionaries({}, optional={"usd": st.floats(0, 10), "tokens": st.integers(0, 500), "calls": st.integers(0, 5)}),
    st.lists(st.tuples(st.floats(0, 12), st.integers(0, 600), st.sampled_from([0.0, 1.0])), max_size=6),
    st.lists(st.tuples(st.floats(0, 5), st.integers(0, 300)), max_size=3),
)
def test_affordable_each_agrees_with_affordable(limits: dict, asks: list, held: list) -> None:
    ledger = Ledger(Budget(**limits))
    for usd, tokens in held:  # some reservations in flight
        if ledger.affordable(Cost(usd, tokens)):
            ledger.reserve(Cost(usd, tokens))
    costs = [Cost(usd, tokens, 1.0, 0.0, large) for usd, tokens, large in asks]
    assert ledger.affordable_each(costs) == [ledger.affordable(c) for c in costs]


def test_agent_key_follows_a_copy_with_other_fields() -> None:
    agent = Agent(role="planner", model="m", strategy="cot")
    assert agent.key == "planner:m:cot"  # cached from here on
    assert agent.model_copy(update={"role": "executor"}).key == "executor:m:cot"
    assert agent.model_copy().key == agent.key
    assert Agent.model_validate_json(agent.model_dump_json()) == agent
    assert hash(Agent(role="planner", model="m", strategy="cot")) == hash(agent)


async def test_replay_lookups_follow_added_outcomes() -> None:
    card = ModelCard(id="m", backend="replay", input_price=1.0, output_price=1.0)
    backend = ReplayBackend([LoggedOutcome("q1", "m", 0.0, 0.5, "old")])
    request = CompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}], query_id="q1")
    assert backend.worst_case_usd(request, card, 10) == 0.5
    backend.add([LoggedOutcome("q1", "m", 1.0, 0.25, "new")])  # a lookup was remembered: it must not stick
    assert backend.worst_case_usd(request, card, 10) == 0.25
    assert (await backend.complete(request, card)).text == "new"
    other = CompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}], query_id="q2")
    assert backend.worst_case_usd(other, card, 10) == card.usd(10, other.max_tokens)  # not logged: priced by the card


def test_new_id_is_the_millisecond_clock_then_80_random_bits() -> None:
    import time

    from agentroute.types import new_id

    before = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(2_000)]
    after = time.time_ns() // 1_000_000
    for i in ids:  # the layout of the two-part f-string it replaced: f"{ms:012x}{random:020x}"
        assert len(i) == 32 and i == i.lower() and int(i, 16) >= 0
        assert before <= int(i[:12], 16) <= after
    assert len({i[12:] for i in ids}) == len(ids)  # the random part differs every time


@given(st.tuples(AMOUNTS, AMOUNTS, AMOUNTS, AMOUNTS, AMOUNTS), st.integers(1, 5))
def test_fast_costs_are_the_named_tuples_of_the_same_amounts(amounts: tuple, samples: int) -> None:
    from agentroute.dispatch.dispatcher import _cost

    fast, plain = _cost(amounts), Cost(*amounts)  # compared by repr: a NaN amount equals itself
    assert type(fast) is Cost and repr(fast) == repr(plain) and repr(fast._asdict()) == repr(plain._asdict())
    assert fast.is_valid() is plain.is_valid() and repr(fast.large_calls) == repr(plain.large_calls)
    scaled = _cost([a * samples for a in fast])
    assert repr(scaled) == repr(Cost(*(a * samples for a in plain)))


def test_fast_plans_are_the_named_tuples_of_the_same_fields() -> None:
    from agentroute.dispatch.dispatcher import _Plan, _plan

    fields = tuple(range(len(_Plan._fields)))
    fast = _plan(fields)
    assert type(fast) is _Plan and fast == _Plan(*fields) and fast.candidate == fields[-1]
    assert fast._replace(worst=-1).worst == -1 and fast._replace(worst=-1).card_usd == fields[_Plan._fields.index("card_usd")]


@given(st.lists(st.fixed_dictionaries({"role": st.text(max_size=12), "content": st.text()}), max_size=4))
def test_byte_bound_is_the_sum_of_encoded_lengths(messages: list) -> None:
    from agentroute.pool.backends.counting import MESSAGE_OVERHEAD, PREAMBLE, REPLY_OVERHEAD, byte_bound

    def encoded(text: str) -> int:
        return len(text.encode("utf-8", "surrogatepass"))

    expected = REPLY_OVERHEAD + PREAMBLE + sum(encoded(m["content"]) + encoded(m["role"]) + MESSAGE_OVERHEAD for m in messages)
    assert byte_bound(messages) == expected


NUMBERS = st.one_of(AMOUNTS, st.integers(-(10**17), 10**17), st.floats(1e14, 1e16), st.booleans())


@given(NUMBERS, st.booleans(), st.booleans())
def test_check_amount_fast_path_keeps_every_rule(value: object, integer: bool, allow_zero: bool) -> None:
    from agentroute.budget import MAX_LIMIT, check_amount
    from agentroute.errors import ConfigurationError

    number = float(value) if not isinstance(value, bool) and abs(value) < 1e300 else math.nan  # type: ignore[arg-type]
    refused = (
        isinstance(value, bool) or not math.isfinite(number) or number > MAX_LIMIT or number < 0
        or (number == 0 and not allow_zero) or (integer and number != int(number))
    )
    try:
        got = check_amount("x", value, integer=integer, allow_zero=allow_zero)
    except ConfigurationError:
        assert refused
    else:
        assert not refused and type(got) is float and got == number and math.copysign(1, got) == 1


@given(
    st.sampled_from(["usd", "tokens", "calls"]),
    st.lists(st.tuples(AMOUNTS, st.integers(0, 600)), max_size=5),
    st.lists(st.floats(0, 3), max_size=3),
)
def test_affordable_each_with_one_limit_agrees_with_affordable(resource: str, asks: list, held: list) -> None:
    """The one-limit path of ``affordable_each`` (the common budget) against ``affordable``, NaN and
    infinite worst cases included."""
    ledger = Ledger(Budget(**{resource: 5}))
    for amount in held:
        if ledger.affordable(Cost(amount, amount)):
            ledger.reserve(Cost(amount, amount))
    costs = [Cost(usd, tokens, 1.0, 0.0, 0.0) for usd, tokens in asks]
    assert ledger.affordable_each(costs) == [ledger.affordable(c) for c in costs]


@given(st.lists(st.tuples(st.floats(0, 1), st.integers(0, 50), st.booleans()), min_size=1, max_size=6))
def test_ledger_totals_are_the_sums_of_what_was_settled(attempts: list) -> None:
    """Reserve and settle add and subtract whole cost vectors: spent is the sum of the bookings,
    nothing stays held once every reservation is settled, and time stays the clock's."""
    ledger = Ledger(Budget(usd=1e6, tokens=10**9))
    open_ = [ledger.reserve(Cost(usd, tokens, 1.0, 5.0, 1.0)) for usd, tokens, _ in attempts]
    for reservation, (usd, tokens, billed) in zip(open_, attempts, strict=True):
        ledger.settle(reservation, Cost(usd, tokens, 1.0, 3.0, 0.0) if billed else Cost(0.0, 0.0, 1.0, 0.0, 0.0))
    spent = ledger.spent
    assert spent["usd"] == math.fsum(u for u, _, b in attempts if b) or math.isclose(spent["usd"], sum(u for u, _, b in attempts if b))
    assert spent["tokens"] == sum(t for _, t, b in attempts if b) and spent["calls"] == len(attempts)
    assert spent["large_calls"] == 0.0 and spent["seconds"] < 5.0  # the clock, not the attempts' 3 s each
    assert ledger.remaining() == {"usd": 1e6 - spent["usd"], "tokens": 10**9 - spent["tokens"]}


def test_a_card_copied_with_another_model_name_is_called_by_it() -> None:
    card = ModelCard(id="m", backend="replay", input_price=1.0, output_price=1.0)
    assert card.backend_model == "m"  # remembered from here on
    assert card.model_copy(update={"model": "served-name"}).backend_model == "served-name"
    assert card.model_copy(update={"tier": "large"}).backend_model == "m"
    assert ModelCard.model_validate_json(card.model_dump_json()) == card


async def test_replay_worst_case_is_its_count_and_price_in_one_lookup() -> None:
    """``worst_case`` (what the dispatcher asks) against ``prompt_tokens`` then ``worst_case_usd``:
    a logged count, a logged outcome without one (the byte bound) and no outcome (the card's price)."""
    cards = [ModelCard(id=m, backend="replay", input_price=2.0, output_price=3.0) for m in ("a", "b", "c")]
    backend = ReplayBackend([LoggedOutcome("q1", "a", 1.0, 0.5, "x", tokens_in=7), LoggedOutcome("q1", "b", 1.0, 0.25, "y")])
    chat = [{"role": "user", "content": "héllo"}]
    for card in cards:
        request = CompletionRequest(model=card.id, messages=chat, max_tokens=9, query_id="q1")
        tokens = backend.prompt_tokens(request, card)
        assert backend.worst_case(request, card) == (tokens, backend.worst_case_usd(request, card, tokens))
    assert [backend.worst_case(CompletionRequest(model=c.id, messages=chat, max_tokens=9, query_id="q1"), c)[0] for c in cards] == [7, 74, 74]


def _plans_for(pool, prompt: str = "Plan.", role: str = "executor", query_id: str = "q1"):
    from agentroute.dispatch.dispatcher import Dispatcher
    from agentroute.routers.baselines import CheapestRouter

    dispatcher = Dispatcher(pool, CheapestRouter())
    run = dispatcher.start("question", budget=Budget(usd=1.0))
    return dispatcher, dispatcher._plans(run, role, prompt, "the input", None, None, query_id)


def test_each_card_reserves_its_own_prompt_count_when_tokenizers_differ() -> None:
    """Two cards of one backend whose prompt counts differ (a replay log with each model's count; a
    backend that counts per card): each plan reserves its own card's count, never a shared one."""
    from agentroute.pool import ModelPool
    from agentroute.pool.backends.base import Backend

    cards = [ModelCard(id=m, backend="replay", input_price=1.0, output_price=1.0, strategies=("direct", "cot")) for m in ("a", "b")]
    logged = ReplayBackend([LoggedOutcome("q1", "a", 1.0, 0.5, "x", tokens_in=11), LoggedOutcome("q1", "b", 1.0, 0.5, "y", tokens_in=23)])
    _, plans = _plans_for(ModelPool(cards, {"replay": logged}))
    assert {(p.card.id, p.sample.tokens - p.request.max_tokens) for p in plans} == {("a", 11), ("b", 23)}

    class PerCard(Backend):
        async def complete(self, request, card):  # pragma: no cover - never called
            raise AssertionError

        def prompt_tokens(self, request, card):
            return 100 if card.id == "a" else 5

    _, plans = _plans_for(ModelPool([c.model_copy(update={"backend": "per-card"}) for c in cards], {"per-card": PerCard()}))
    assert {(p.card.id, p.sample.tokens - p.request.max_tokens, p.card_usd) for p in plans} == {
        ("a", 100, p.card.usd(100, p.request.max_tokens)) for p in plans if p.card.id == "a"
    } | {("b", 5, p.card.usd(5, p.request.max_tokens)) for p in plans if p.card.id == "b"}


def test_remembered_system_prompts_follow_the_role_prompt_and_the_strategy() -> None:
    from agentroute.pool import ModelPool

    cards = [ModelCard(id="a", backend="replay", input_price=1.0, output_price=1.0, strategies=("direct", "cot"))]
    pool = ModelPool(cards, {"replay": ReplayBackend()})
    dispatcher, first = _plans_for(pool, "Plan.")
    run = dispatcher.start("question")
    for prompt in ("Plan.", "Summarise.", "Plan."):
        plans = dispatcher._plans(run, "executor", prompt, "the input", None, None, "q1")
        assert sorted(p.strategy.name for p in plans) == ["cot", "direct"]
        for p in plans:
            assert p.request.messages[0] == {"role": "system", "content": p.strategy.system_prompt(prompt)}
            assert p.request.messages[-1] == {"role": "user", "content": "the input"}


@given(st.lists(st.tuples(st.sampled_from([0.0, 1e-6, 2e-6, 1.0, math.inf]), st.sampled_from(["small", "medium", "large"])), min_size=1, max_size=6))
def test_cheapest_in_one_pass_is_the_first_of_the_cost_order(rows: list) -> None:
    """Ties (equal costs) included: broken by the weaker card first, then the earlier candidate."""
    from agentroute.routers.baselines import cheapest, cost_order
    from agentroute.types import RouteContext

    agents = [Agent(role="r", model=f"m{i}") for i in range(len(rows))]
    cards = {a.model: ModelCard(id=a.model, input_price=1.0, output_price=1.0, tier=tier) for a, (_, tier) in zip(agents, rows, strict=True)}
    ctx = RouteContext(query="q", candidates=agents, cards=cards, costs={a.key: c for a, (c, _) in zip(agents, rows, strict=True)})
    assert cheapest(ctx) == cost_order(ctx)[0]


def test_ledgers_without_a_budget_share_one_unlimited_budget_safely() -> None:
    first, second = Ledger(), Ledger(None)
    assert first.budget == Budget() and first.limits == {} and first.remaining() == {}
    first.limits["usd"] = 0.0  # a ledger's own copy: the next ledger is still unlimited
    assert second.limits == {} and Ledger().limits == {} and Ledger().affordable(Cost(1e9, 1e9))


async def test_a_router_swapped_in_is_asked_its_own_hooks() -> None:
    """Whether a router overrides ``observe``/``escalate`` is looked up when it is set: a router
    swapped in on a live dispatcher is observed, and the one swapped out no longer is."""
    from agentroute.dispatch.dispatcher import Dispatcher
    from agentroute.pool import ModelPool
    from agentroute.routers.baselines import CheapestRouter

    class Watching(CheapestRouter):
        def __init__(self) -> None:
            self.seen: list[str] = []

        def observe(self, step, task=None) -> None:
            self.seen.append(step.output)

    card = ModelCard(id="m", backend="replay", input_price=1.0, output_price=1.0)
    pool = ModelPool([card], {"replay": ReplayBackend([LoggedOutcome(f"q{i}", "m", 1.0, 0.0, f"a{i}") for i in range(3)])})
    dispatcher = Dispatcher(pool, CheapestRouter())
    watching = Watching()
    for i, router in enumerate((CheapestRouter(), watching, CheapestRouter())):
        dispatcher.router = router
        run = dispatcher.start("question", query_id=f"q{i}")
        assert (await dispatcher.step(run, role="executor", stage="s", prompt="p", input="x")).status == "ok"  # type: ignore[union-attr]
        dispatcher.finish(run)
    assert watching.seen == ["a1", "a1"]  # the step, then the finished task's last step


@given(
    st.fixed_dictionaries({}, optional={"usd": st.floats(0, 10), "tokens": st.integers(0, 500), "seconds": st.floats(1, 60)}),
    st.lists(st.tuples(st.floats(0, 1), st.integers(0, 40), st.booleans()), max_size=5),
)
def test_snapshot_counts_open_reservations_as_spent_and_keeps_the_budget_as_given(limits: dict, attempts: list) -> None:
    ledger = Ledger(Budget(**limits))
    for usd, tokens, settle in attempts:
        if ledger.affordable(Cost(usd, tokens)):
            reservation = ledger.reserve(Cost(usd, tokens))
            if settle:
                ledger.settle(reservation, Cost(usd / 2, tokens))
    snap = ledger.snapshot()
    held = [sum(r.worst_case[i] for r in ledger._reserved.values()) for i in range(len(RESOURCES))]
    spent = ledger.spent
    for i, resource in enumerate(RESOURCES):
        if resource != "seconds":
            assert math.isclose(snap["spent"][i], spent[resource] + held[i], abs_tol=1e-9)
    assert snap["budget"] == Budget(**limits).given() and snap["in_flight"] == ledger.in_flight
    snap["budget"]["usd"] = -1  # the snapshot is the caller's: the next one is unchanged
    assert ledger.snapshot()["budget"] == Budget(**limits).given()
    assert Ledger.restore(ledger.snapshot()).limits == ledger.limits

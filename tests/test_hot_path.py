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

    fast, plain = _cost(amounts), Cost(*amounts)
    assert type(fast) is Cost and fast == plain and fast._asdict() == plain._asdict()
    assert fast.is_valid() is plain.is_valid() and fast.large_calls == plain.large_calls
    scaled = _cost([a * samples for a in fast])
    assert scaled == Cost(*(a * samples for a in plain))


def test_fast_plans_are_the_named_tuples_of_the_same_fields() -> None:
    from agentroute.dispatch.dispatcher import _Plan, _plan

    fields = tuple(range(len(_Plan._fields)))
    fast = _plan(fields)
    assert type(fast) is _Plan and fast == _Plan(*fields) and fast.candidate == fields[-1]
    assert fast._replace(worst=-1).worst == -1 and fast._replace(worst=-1).card_usd == fields[_Plan._fields.index("card_usd")]

"""Property tests of :class:`Budget` and :class:`Ledger` (issue 10: budgets reject nonsense and hold).

Budget: every finite, non-negative number — int, float, ``Decimal`` or numpy — is accepted and
round-trips; every NaN, ±inf, negative, boolean, string or overflowing value is refused with a
:class:`ConfigurationError` that names the field. Ledger: under any interleaving of reservations,
settlements and releases, what is spent never passes a limit while actual costs stay within their
worst case; an actual above its worst case is booked as it is and counted in ``overruns``; a
snapshot restores to the same books.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, initialize, invariant, rule

from agentroute.budget import MAX_LIMIT, RESOURCES, Budget, Cost, Ledger
from agentroute.errors import BudgetExceededError, ConfigurationError

COUNTS = ("tokens", "calls", "large_calls")
AMOUNTS = ("usd", "seconds")
FIELDS = st.sampled_from(RESOURCES)


# -- strategies of valid and invalid values ----------------------------------------------------------
def whole_numbers() -> st.SearchStrategy:
    ints = st.integers(0, int(MAX_LIMIT))
    return st.one_of(
        ints,
        ints.map(np.int64),
        st.integers(0, 2**31 - 1).map(np.int32),
        ints.map(float),
        ints.map(Decimal),
        ints.map(np.float64),
    )


def amounts() -> st.SearchStrategy:
    floats = st.floats(0, MAX_LIMIT, allow_nan=False, allow_infinity=False).filter(
        lambda x: not math.copysign(1, x) < 0
    )
    return st.one_of(
        whole_numbers(),
        floats,
        floats.map(np.float64),
        st.floats(0, 1e6, width=32).map(np.float32),
        st.decimals(0, Decimal(int(MAX_LIMIT)), allow_nan=False, allow_infinity=False),
    )


def negatives() -> st.SearchStrategy:
    return st.one_of(
        st.integers(max_value=-1),
        st.floats(max_value=-5e-324, allow_nan=False, allow_infinity=False),
        st.decimals(max_value=Decimal("-1e-30"), allow_nan=False, allow_infinity=False, places=40),
        st.integers(max_value=-1).map(lambda x: np.int64(max(x, -(2**63)))),
    )


def nonsense() -> st.SearchStrategy:
    """Values no limit may take: NaN, ±inf, negatives, booleans, strings, overflow, other types."""
    return st.one_of(
        st.sampled_from([float("nan"), float("inf"), float("-inf"), np.nan, np.inf, np.float32("nan")]),
        st.sampled_from([Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("-Infinity")]),
        negatives(),
        st.booleans(),
        st.sampled_from([np.bool_(True), np.bool_(False)]),
        st.text(max_size=20),
        st.integers(min_value=int(MAX_LIMIT) + 1),
        st.just(10**400),
        st.floats(min_value=MAX_LIMIT, exclude_min=True, allow_nan=False),
        st.decimals(min_value=Decimal("1e16"), allow_nan=False),
        st.sampled_from([[1], {"usd": 1}, (1,), b"1", complex(1, 0), object()]),
    )


# -- Budget ------------------------------------------------------------------------------------------
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(AMOUNTS), value=amounts())
def test_any_finite_non_negative_amount_is_accepted_and_round_trips(field, value):
    budget = Budget(**{field: value})
    assert budget.limits() == {field: float(value)}
    assert Budget(**budget.model_dump(exclude_none=True)) == budget
    assert Budget.model_validate_json(budget.model_dump_json()) == budget


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(COUNTS), value=whole_numbers())
def test_any_whole_non_negative_count_is_accepted_and_round_trips(field, value):
    budget = Budget(**{field: value})
    stored = getattr(budget, field)
    assert type(stored) is int and stored == int(value) and budget.limits() == {field: float(int(value))}
    assert Budget(**budget.model_dump(exclude_none=True)) == budget


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=FIELDS, value=nonsense())
def test_every_nonsense_value_is_refused_naming_the_field(field, value):
    with pytest.raises(ConfigurationError, match=rf"budget {field}\b"):
        Budget(**{field: value})


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(COUNTS), whole=st.integers(0, 10**6), part=st.floats(0.001, 0.999))
def test_counts_must_be_whole(field, whole, part):
    with pytest.raises(ConfigurationError, match=rf"budget {field} must be a whole number"):
        Budget(**{field: whole + part})


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(limits=st.fixed_dictionaries({}, optional={f: st.integers(0, 100) for f in RESOURCES}))
def test_zero_means_none_allowed(limits):
    budget = Budget(**limits)
    ledger = Ledger(budget)
    for field, limit in limits.items():
        if limit == 0 and field != "seconds":
            one = Cost(**{"calls": 0.0, field: 1.0})
            assert not ledger.affordable(one)


# -- the concrete cases of issue 10 ------------------------------------------------------------------
def test_issue_cases_nan_overflow_and_zero_large_calls():
    with pytest.raises(ConfigurationError, match="budget usd must be finite"):
        Budget(usd=float("nan"))
    with pytest.raises(ConfigurationError, match="budget tokens"):
        Budget(tokens=10**400)
    budget = Budget(large_calls=0)
    assert budget.large_calls == 0 and budget.limits() == {"large_calls": 0.0}
    ledger = Ledger(budget)
    assert ledger.affordable(Cost(calls=1.0, large_calls=0.0))  # small calls still allowed
    with pytest.raises(BudgetExceededError, match="large_calls"):
        ledger.reserve(Cost(calls=1.0, large_calls=1.0))  # "no large calls" means none


def test_numpy_and_decimal_limits_are_accepted():
    budget = Budget(
        usd=Decimal("0.25"), tokens=np.int64(1000), calls=np.float64(3.0), seconds=np.float32(2.5)
    )
    assert budget.limits() == {"usd": 0.25, "tokens": 1000.0, "calls": 3.0, "seconds": 2.5}


def test_error_messages_stay_short_whatever_the_value():
    for value in (Decimal("-0." + "1" * 5000), Decimal("2." + "1" * 5000)):
        with pytest.raises(ConfigurationError) as info:
            Budget(calls=value)
        assert len(str(info.value)) < 300


# -- Ledger ------------------------------------------------------------------------------------------
LIMITED = ("usd", "tokens", "calls", "large_calls")


def costs(scale: float = 1.0) -> st.SearchStrategy[Cost]:
    amount = st.floats(0, 5 * scale, allow_nan=False)
    return st.builds(
        Cost,
        usd=amount.map(lambda x: x / 100),
        tokens=st.integers(0, 40).map(float),
        calls=st.sampled_from([0.0, 1.0, 1.0, 2.0]),
        seconds=st.just(0.0),
        large_calls=st.sampled_from([0.0, 0.0, 1.0]),
    )


def below(worst: Cost, fractions: list[float]) -> Cost:
    """An actual cost within ``worst`` on every resource."""
    return Cost(*(w * f for w, f in zip(worst, fractions, strict=True)))


class HonestLedger(RuleBasedStateMachine):
    """Reserve, settle within the worst case, release: spent never passes any limit."""

    reservations = Bundle("reservations")

    @initialize(
        limits=st.fixed_dictionaries(
            {},
            optional={
                "usd": st.floats(0, 0.2, allow_nan=False),
                "tokens": st.integers(0, 200),
                "calls": st.integers(0, 12),
                "large_calls": st.integers(0, 3),
            },
        )
    )
    def start(self, limits):
        self.ledger = Ledger(Budget(**limits))
        self.booked = [0.0] * len(RESOURCES)

    @rule(target=reservations, worst=costs())
    def reserve(self, worst):
        fits = self.ledger.affordable(worst)
        try:
            reservation = self.ledger.reserve(worst)
        except BudgetExceededError as exc:
            assert not fits and exc.resource in self.ledger.limits
            return None
        assert fits
        return reservation

    @rule(reservation=consumes(reservations), fractions=st.lists(st.floats(0, 1), min_size=5, max_size=5))
    def settle(self, reservation, fractions):
        if reservation is None:
            return
        actual = below(reservation.worst_case, fractions)
        booked = self.ledger.settle(reservation, actual)
        assert booked == actual and not self.ledger.overrun_of(reservation, booked)
        self.booked = [b + a for b, a in zip(self.booked, booked, strict=True)]

    @rule(reservation=consumes(reservations))
    def release(self, reservation):
        if reservation is None:
            return
        charge = Cost(calls=min(1.0, reservation.worst_case.calls), large_calls=0.0)
        self.ledger.release(reservation, charge=charge)
        self.booked = [b + a for b, a in zip(self.booked, charge, strict=True)]

    @invariant()
    def spent_within_limits(self):
        spent = self.ledger.spent
        for resource, limit in self.ledger.limits.items():
            if resource != "seconds":
                assert spent[resource] <= limit * (1 + 1e-9) + 1e-9, (resource, spent, limit)
        assert self.ledger.overruns == 0 and self.ledger.over_limit() is None

    @invariant()
    def books_match(self):
        spent = self.ledger.spent
        for i, resource in enumerate(RESOURCES):
            if resource != "seconds":
                assert spent[resource] == pytest.approx(self.booked[i], rel=1e-9, abs=1e-12)


TestHonestLedger = HonestLedger.TestCase
TestHonestLedger.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    worst=costs(),
    extra=st.floats(1e-6, 10, allow_nan=False),
    resource=st.sampled_from(LIMITED),
    limit=st.floats(0.5, 10, allow_nan=False),
)
def test_an_overrun_is_booked_uncapped_and_counted(worst, extra, resource, limit):
    index = RESOURCES.index(resource)
    assume(worst[index] * (1 + 1e-9) + 1e-12 < worst[index] + extra)
    ledger = Ledger(Budget(**{"usd": limit if resource == "usd" else None, "calls": 1000}))
    assume(ledger.affordable(worst))
    reservation = ledger.reserve(worst)
    actual = worst._replace(**{resource: worst[index] + extra})
    booked = ledger.settle(reservation, actual)
    assert booked == actual  # what the provider billed, not the worst case
    assert ledger.spent[resource] == pytest.approx(actual[index])
    assert ledger.overruns == 1 and resource in Ledger.overrun_of(reservation, booked)
    if resource == "usd" and actual.usd > limit + 1e-9:  # beyond the ledger's float-rounding tolerance
        assert ledger.over_limit() == "usd" and not ledger.affordable(Cost(calls=0.0))


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    worst=costs(), bad=st.sampled_from([float("nan"), -1.0, float("inf"), -1e-9]), at=st.sampled_from(LIMITED)
)
def test_invalid_actual_usage_is_charged_the_worst_case(worst, bad, at):
    ledger = Ledger(Budget(calls=100))
    reservation = ledger.reserve(worst)
    booked = ledger.settle(reservation, worst._replace(**{at: bad}))
    assert booked == worst and ledger.overruns == 0


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    limits=st.fixed_dictionaries(
        {"calls": st.integers(1, 50)},
        optional={
            "usd": st.floats(0.01, 1, allow_nan=False),
            "tokens": st.integers(1, 1000),
            "large_calls": st.integers(0, 5),
        },
    ),
    ops=st.lists(st.tuples(costs(0.1), st.booleans(), st.floats(0, 1.5)), max_size=20),
)
def test_snapshot_restores_the_same_books(limits, ops):
    ledger = Ledger(Budget(**limits))
    for worst, settle, fraction in ops:
        if not ledger.affordable(worst):
            continue
        reservation = ledger.reserve(worst)
        if settle:
            ledger.settle(reservation, Cost(*(w * fraction for w in worst)))
    before = ledger.spent
    snapshot = json.loads(json.dumps(ledger.snapshot()))  # JSON-able, as a checkpoint stores it
    restored = Ledger.restore(snapshot)
    assert restored.limits == ledger.limits and restored.overruns == ledger.overruns
    after = restored.spent
    remaining = ledger.remaining()
    for resource in ledger.limits:
        if resource != "seconds":
            # open reservations are counted as spent: a crash mid-call is charged its worst case
            assert after[resource] == pytest.approx(ledger.limits[resource] - remaining[resource], abs=1e-12)
            assert after[resource] >= before[resource] - 1e-12
    assert after["seconds"] >= snapshot["spent"][RESOURCES.index("seconds")]
    assert json.loads(json.dumps(restored.snapshot()))["spent"][:3] == pytest.approx(snapshot["spent"][:3])
    assert restored.in_flight == 0


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spent=st.lists(st.floats(allow_nan=True), min_size=5, max_size=5))
def test_restore_refuses_a_corrupt_snapshot(spent):
    assume(not Cost(*spent).is_valid())
    with pytest.raises(ConfigurationError, match="invalid ledger snapshot"):
        Ledger.restore({"budget": {"usd": 1.0}, "spent": spent})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    snapshot=st.fixed_dictionaries(
        {},
        optional={
            "budget": json_values,
            "spent": json_values,
            "overruns": json_values,
            "in_flight": json_values,
        },
    )
)
def test_any_snapshot_restores_or_is_a_configuration_error(snapshot):
    try:
        ledger = Ledger.restore(snapshot)
    except ConfigurationError:
        return
    assert ledger.overruns >= 0 and Cost(*ledger._spent).is_valid()

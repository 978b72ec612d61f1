import asyncio
import threading

import pytest

from agentroute import Budget, BudgetExceededError, ConfigurationError, Cost, Ledger


def test_budget_rejects_negative_limits_and_zero_means_none_allowed():
    with pytest.raises(ConfigurationError, match="usd must be non-negative"):
        Budget(usd=-0.5)
    with pytest.raises(ConfigurationError, match="calls must be non-negative"):
        Budget(calls=-1)
    ledger = Ledger(Budget(large_calls=0))
    assert ledger.affordable(Cost(usd=1.0, large_calls=0))
    assert not ledger.affordable(Cost(usd=0.0, large_calls=1))


def test_reserve_then_settle_charges_actual_not_worst_case():
    ledger = Ledger(Budget(usd=1.0))
    r = ledger.reserve(Cost(usd=0.6))
    assert ledger.remaining()["usd"] == pytest.approx(0.4)
    ledger.settle(r, Cost(usd=0.1))
    assert ledger.spent_usd == pytest.approx(0.1)
    assert ledger.remaining()["usd"] == pytest.approx(0.9)


def test_reservation_over_limit_raises_with_context():
    ledger = Ledger(Budget(usd=1.0, large_calls=1))
    ledger.reserve(Cost(usd=0.7))
    with pytest.raises(BudgetExceededError) as info:
        ledger.reserve(Cost(usd=0.5))
    assert info.value.resource == "usd" and info.value.limit == 1.0
    ledger.reserve(Cost(usd=0.1, large_calls=1))
    assert not ledger.affordable(Cost(usd=0.0, large_calls=1))


def test_actual_above_worst_case_is_booked_as_billed_and_blocks_further_calls():
    ledger = Ledger(Budget(usd=1.0))
    r = ledger.reserve(Cost(usd=0.5))
    booked = ledger.settle(r, Cost(usd=5.0))
    assert booked.usd == 5.0 and ledger.spent_usd == pytest.approx(5.0)  # the bill, never capped
    assert ledger.overruns == 1 and ledger.over_limit() == "usd"
    assert not ledger.affordable(Cost(usd=0.0))


def test_invalid_actual_is_booked_at_its_worst_case():
    ledger = Ledger(Budget(usd=1.0, calls=10))
    for bad in (Cost(usd=float("nan")), Cost(usd=-0.9987), Cost(tokens=float("inf"))):
        r = ledger.reserve(Cost(usd=0.1))
        assert ledger.settle(r, bad) == Cost(usd=0.1)
    assert ledger.spent_usd == pytest.approx(0.3) and ledger.spent["calls"] == 3


def test_snapshot_restore_counts_in_flight_reservations_as_spent():
    ledger = Ledger(Budget(usd=1.0, calls=3))
    ledger.settle(ledger.reserve(Cost(usd=0.2)), Cost(usd=0.1))
    ledger.reserve(Cost(usd=0.3))  # in flight when the process died
    restored = Ledger.restore(ledger.snapshot())
    assert restored.limits == ledger.limits
    assert restored.spent_usd == pytest.approx(0.4) and restored.spent["calls"] == 2
    assert restored.remaining()["calls"] == 1 and restored.in_flight == 0


def test_double_settle_is_an_error():
    ledger = Ledger(Budget(usd=1.0))
    r = ledger.reserve(Cost(usd=0.1))
    ledger.settle(r, Cost(usd=0.1))
    with pytest.raises(ConfigurationError):
        ledger.settle(r, Cost(usd=0.1))


async def test_200_concurrent_steps_racing_for_one_budget_never_overspend():
    ledger = Ledger(Budget(usd=1.0, calls=150))
    admitted = []

    async def step(i: int) -> None:
        try:
            r = ledger.reserve(Cost(usd=0.013))
        except BudgetExceededError:
            return
        await asyncio.sleep(0.001 * (i % 5))
        ledger.settle(r, Cost(usd=0.013 * ((i % 3) / 2)))  # actual ≤ worst case
        admitted.append(i)

    await asyncio.gather(*(step(i) for i in range(200)))
    assert ledger.spent_usd <= 1.0 + 1e-12
    assert ledger.spent["calls"] <= 150
    assert len(admitted) == 76  # floor(1.0 / 0.013): reservations are held while calls run


def test_threads_racing_never_overspend():
    ledger = Ledger(Budget(usd=0.5))
    def worker():
        for _ in range(200):
            try:
                r = ledger.reserve(Cost(usd=0.003))
            except BudgetExceededError:
                return
            ledger.settle(r, Cost(usd=0.003))
    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 0.5 - 0.003 < ledger.spent_usd <= 0.5 + 1e-12


def test_seconds_budget_counts_wall_clock():
    ledger = Ledger(Budget(seconds=60))
    assert 0 < ledger.remaining()["seconds"] <= 60


def test_reservations_in_flight_are_held_until_settled_and_leave_no_drift():
    ledger = Ledger(Budget(usd=1.0, tokens=100))
    a = ledger.reserve(Cost(usd=0.3, tokens=40))
    b = ledger.reserve(Cost(usd=0.2, tokens=30))
    assert ledger.remaining() == pytest.approx({"usd": 0.5, "tokens": 30})
    ledger.settle(a, Cost(usd=0.1, tokens=10))
    assert ledger.remaining() == pytest.approx({"usd": 0.7, "tokens": 60})
    ledger.release(b)
    assert ledger.remaining() == pytest.approx({"usd": 0.9, "tokens": 90})
    assert ledger.spent["calls"] == 2 and ledger.seconds_left() is None
    for _ in range(1000):  # thousands of float additions and removals: nothing stays held
        r = ledger.reserve(Cost(usd=0.0003, tokens=0.07))
        ledger.settle(r, Cost(usd=0.0, tokens=0.0))
    assert ledger.remaining()["usd"] == 1.0 - ledger.spent_usd


def test_seconds_limit_blocks_a_call_that_would_outlast_it():
    ledger = Ledger(Budget(seconds=5))
    assert 0 < ledger.seconds_left() <= 5
    assert ledger.affordable(Cost(seconds=4))
    with pytest.raises(BudgetExceededError) as info:
        ledger.reserve(Cost(seconds=6))
    assert info.value.resource == "seconds"


def test_every_path_that_builds_a_budget_validates_it():
    import math

    from agentroute.types import Task

    with pytest.raises(ConfigurationError, match="usd must be finite"):
        Budget.model_validate({"usd": math.nan})
    with pytest.raises(ValueError, match="usd must be a number"):
        Task.model_validate({"query": "q", "budget": {"usd": "x"}})
    assert Task.model_validate({"query": "q", "budget": {"usd": 0.5, "calls": 3}}).budget == Budget(usd=0.5, calls=3)
    assert str(Budget(usd=-0.0).usd) == "0.0"

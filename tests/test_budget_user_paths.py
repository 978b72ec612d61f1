"""The Budget and Ledger as a user drives them directly: clear errors, never a silent overrun."""

import pickle

import pytest

from agentroute import Budget, BudgetExceededError, ConfigurationError, Cost, Ledger


def test_settling_a_reservation_on_another_ledger_is_refused_and_leaves_both_intact():
    a, b = Ledger(Budget(usd=1.0)), Ledger(Budget(usd=1.0))
    ra = a.reserve(Cost(usd=0.9))
    rb = b.reserve(Cost(usd=0.1))  # same id (1) as ra in its own ledger
    with pytest.raises(ConfigurationError, match="another ledger"):
        b.settle(ra, Cost(usd=0.0))
    # b still holds its own reservation: no room was freed for an overrun
    assert b.in_flight == 1 and b.remaining()["usd"] == pytest.approx(0.9)
    with pytest.raises(BudgetExceededError):
        b.reserve(Cost(usd=1.0))
    # a's reservation can still be settled on its own ledger
    assert a.settle(ra, Cost(usd=0.5)).usd == 0.5
    assert a.in_flight == 0 and a.remaining()["usd"] == pytest.approx(0.5)
    b.settle(rb, Cost(usd=0.1))
    assert b.remaining()["usd"] == pytest.approx(0.9)


def test_settling_on_a_ledger_with_no_such_reservation_is_a_clear_error():
    a = Ledger(Budget(usd=1.0))
    ra = a.reserve(Cost(usd=0.2))
    with pytest.raises(ConfigurationError, match="another ledger"):
        Ledger(Budget(usd=1.0)).settle(ra, Cost(usd=0.1))  # was KeyError, with ra marked settled
    a.settle(ra, Cost(usd=0.1))
    with pytest.raises(ConfigurationError, match="settled twice"):
        a.release(ra)


@pytest.mark.parametrize("worst", [(0.1, 0, 1, 0, 0), {"usd": 0.1}, 0.1, None])
def test_reserve_with_something_not_a_cost_is_a_configuration_error(worst):
    ledger = Ledger(Budget(usd=1.0))
    with pytest.raises(ConfigurationError, match="Cost"):
        ledger.reserve(worst)  # was AttributeError: 'tuple' object has no attribute 'is_valid'
    assert ledger.in_flight == 0


def test_settle_with_something_not_a_cost_keeps_the_reservation_held():
    ledger = Ledger(Budget(usd=1.0))
    r = ledger.reserve(Cost(usd=0.4))
    with pytest.raises(ConfigurationError, match="Cost"):
        ledger.settle(r, 0.1)
    assert ledger.in_flight == 1 and ledger.remaining()["usd"] == pytest.approx(0.6)
    ledger.settle(r, Cost(usd=0.1))
    assert ledger.remaining()["usd"] == pytest.approx(0.9)


def test_ledger_of_a_dict_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="Budget"):
        Ledger({"usd": 1.0})  # was AttributeError: 'dict' object has no attribute 'limits'


def test_budget_equality_repr_pickle_and_given():
    b = Budget(usd=0.01, calls=3)
    assert b == Budget(calls=3, usd=0.01) and b != Budget(usd=0.01)
    assert hash(b) == hash(Budget(usd=0.01, calls=3))
    assert pickle.loads(pickle.dumps(b)) == b
    assert "usd=0.01" in repr(b) and "calls=3" in repr(b)
    assert b.given() == {"usd": 0.01, "calls": 3} and isinstance(b.given()["calls"], int)
    with pytest.raises(TypeError):
        Budget(0.01)
    with pytest.raises(TypeError):
        b + Budget(usd=1.0)

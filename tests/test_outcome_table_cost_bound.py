"""The cost bound of an outcomes file (at most ``MAX_COST_USD`` a call) holds for an
:class:`OutcomeTable` built in Python too (a user's own logs, a notebook): ``1e308`` is refused
naming the model and query, before any router fits on it (was: accepted, while the same cell in a
file was refused; a router then saved a cost scale of 1e308 and read every other cost as 0)."""

from __future__ import annotations

import numpy as np
import pytest

from agentroute.errors import ConfigurationError
from agentroute.outcomes import OutcomeTable

LIMIT = 1e9  # outcomes.MAX_COST_USD, the bound docs/outcomes.md states


def _table(huge: float) -> OutcomeTable:
    costs = np.array([[0.0002, 0.02]] * 4)
    costs[2, 1] = huge
    return OutcomeTable([f"q{i}" for i in range(4)], [f"question {i}" for i in range(4)], ["fast", "pro"],
                        np.array([[0.0, 1.0]] * 4), costs)  # fmt: skip


@pytest.mark.parametrize("huge", [1e308, LIMIT * 1.001, np.inf])
def test_a_huge_cost_is_refused_by_the_table(huge: float) -> None:
    with pytest.raises(ConfigurationError) as info:
        _table(huge)
    message = str(info.value)
    assert "the cost of 'pro' on query 'q2' (table row 3" in message, message
    assert "at most 1e+09 a call" in message, message


def test_the_largest_cost_allowed_and_a_missing_one_still_build() -> None:
    assert _table(LIMIT).costs[2, 1] == LIMIT
    assert np.isnan(_table(np.nan).costs[2, 1])

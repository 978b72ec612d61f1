"""`agentroute.eval.agentic.make_budget(cap_large, budget_usd)` (the Python face of `eval --agentic`'s
`--cap-large` and `--budget-usd`) is the one budget rule, `agentroute.budget.make_budget`, with the
errors the CLI prints (was: a second copy building `Budget` itself, whose errors named no option)."""

from __future__ import annotations

import pytest

from agentroute.budget import Budget
from agentroute.errors import ConfigurationError
from agentroute.eval.agentic import make_budget


@pytest.mark.parametrize(("given", "message"), [
    ({"cap_large": -1}, "--cap-large: budget large_calls must be non-negative (got -1)"),
    ({"cap_large": 1, "budget_usd": float("inf")}, "--budget-usd: budget usd must be finite and at most 1e+15 (got inf)"),
])  # fmt: skip
def test_a_bad_option_is_named_as_the_cli_names_it(given, message):
    with pytest.raises(ConfigurationError) as caught:
        make_budget(**given)
    assert str(caught.value) == message


def test_good_options_give_the_budget():
    assert make_budget() is None
    assert make_budget(1) == Budget(large_calls=1)
    assert make_budget(0, 0.5) == Budget(large_calls=0, usd=0.5)

"""`agentroute run web` checks its `--budget-*` by Budget's rule, with the line `ask` and `run` print
(tests/test_budget_cli_checks.py)
(was: its own copy, `--budget-usd must be ≥ 0 (got -1.0)`); 0 calls or seconds is still refused there,
saying why (no episode could take a step)."""

from __future__ import annotations

import pytest

from agentroute.cli.web_cmd import main


@pytest.mark.parametrize(("option", "message"), [
    (["--budget-usd", "-1"], "error: --budget-usd: budget usd must be non-negative (got -1.0)"),
    (["--budget-large-calls", "-1"], "error: --budget-large-calls: budget large_calls must be non-negative (got -1)"),
    (["--budget-calls", "0"], "error: --budget-calls must be > 0 (got 0): no episode could take a step"),
])
def test_a_bad_budget_is_named_as_everywhere(capsys, option, message):
    assert main(["--tasks", "click-test", *option]) == 2
    assert capsys.readouterr().err.splitlines() == [message]

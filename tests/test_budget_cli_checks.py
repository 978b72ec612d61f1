"""A bad `--budget-*` on the command line is named in one line (exit 2) before LangGraph loads: the
rule lives beside `Budget` in agentroute.budget (was: agentroute.loading, which imports the graph
runtime, so `agentroute ask hi --budget-usd nan` took ~3.8 s to say so on a loaded 2-core machine;
now ~1.2 s). `agentroute.loading.make_budget` stays importable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agentroute.errors import ConfigurationError


@pytest.mark.parametrize(("args", "message"), [
    (["ask", "hi", "--budget-usd", "nan"], "error: --budget-usd: budget usd must be finite and at most 1e+15 (got nan)"),
    (["serve", "--router", "cheapest", "--budget-calls", "-1"], "error: --budget-calls: budget calls must be non-negative (got -1)"),
])
def test_a_bad_budget_is_named_before_langgraph_loads(args, message):
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "agentroute", *args], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"})
    errors = [x for x in run.stderr.splitlines() if not x.startswith("import time:")]
    assert run.returncode == 2 and errors == [message], run.stderr[-2000:]
    assert "langgraph" not in run.stderr and "agentroute.graph" not in run.stderr


def test_one_home_importable_from_loading_too():
    from agentroute.budget import make_budget
    from agentroute.loading import make_budget as from_loading

    assert from_loading is make_budget
    with pytest.raises(ConfigurationError, match=r"^--cap-large: budget large_calls must be a whole number \(got 1.5\)$"):
        make_budget(large_calls=1.5, options={"large_calls": "--cap-large"})

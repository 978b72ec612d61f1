"""`agentroute run web --budget-tokens N` (the web runner takes no token budget: docs/web_agent.md)
is refused in one line saying so and where a tokens limit is set, exit 2 (was: the web runner's usage
text and 'unrecognized arguments: --budget-tokens N', an option `run --help` lists)."""

from __future__ import annotations

import os
import subprocess
import sys


def test_run_web_refuses_a_token_budget_in_one_line():
    run = subprocess.run([sys.executable, "-m", "agentroute", "run", "web", "--tasks", "click-test", "--budget-tokens", "100"],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"})
    assert run.returncode == 2 and run.stderr.splitlines() == [
        "error: --budget-tokens: run web takes no token budget; set Budget(tokens=…) from Python (docs/web_agent.md)"
    ], run.stderr[-2000:]

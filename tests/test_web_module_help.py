"""`python -m agentroute.cli.web_cmd --help` (the documented runner without the `agentroute`
command) lists the options it takes, under its own name (was: `usage: agentroute run web …` with
no --router, --pool, --budget-usd, --memory or --concurrency, though it takes them)."""

from __future__ import annotations

import subprocess
import sys


def test_module_help_lists_the_runtime_options():
    run = subprocess.run([sys.executable, "-m", "agentroute.cli.web_cmd", "--help"], capture_output=True, text=True,
                         timeout=60, env={"PATH": "/usr/bin:/bin", "COLUMNS": "100"})
    assert run.returncode == 0 and run.stdout.startswith("usage: python -m agentroute.cli.web_cmd "), run.stdout[:300]
    for option in ("--router ROUTER", "--pool FILE", "--budget-usd BUDGET_USD", "--memory URL", "--concurrency", "--tasks"):
        assert option in run.stdout, option


def test_a_bad_option_of_the_module_names_the_module():
    run = subprocess.run([sys.executable, "-m", "agentroute.cli.web_cmd", "--bogus"], capture_output=True,
                         text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "COLUMNS": "100"})
    assert run.returncode == 2  # was: `agentroute run web: error: …`, a command the user did not run
    assert run.stderr.splitlines()[-1] == "python -m agentroute.cli.web_cmd: error: unrecognized arguments: --bogus"

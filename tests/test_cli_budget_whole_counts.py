"""A count budget that is not a whole number (`agentroute ask hi --budget-calls 1.5`) is one line naming
the option, exit 2, as a negative one is: make_budget is the one rule. Was: typer's int type refused it
first in a multi-line usage box ("Invalid value for '--budget-calls': Input should be a valid integer");
`eval --agentic --cap-large 1.5` likewise.
`run web` hands its --budget-* to the web runner, which parses them with the same rule; a whole count
(given as text "2" and handed on) is still taken. Real CLI subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``agentroute ARGS`` of this checkout, run from ``cwd`` (no memory file lands in the checkout)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "agentroute", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ask", "hi", "--budget-calls", "1.5"), "--budget-calls: budget calls must be a whole number (got 1.5)"),
        (("ask", "hi", "--budget-tokens", "2.5"), "--budget-tokens: budget tokens must be a whole number (got 2.5)"),
        (("run", "web", "--budget-large-calls", "0.5"),
         "--budget-large-calls: budget large_calls must be a whole number (got 0.5)"),
        (("ask", "hi", "--budget-calls", "-1"), "--budget-calls: budget calls must be non-negative (got -1)"),
        (("eval", "--agentic", "--dataset", "routerbench:x", "--cap-large", "1.5"),
         "--cap-large: budget large_calls must be a whole number (got 1.5)"),
    ],
)  # fmt: skip
def test_a_count_budget_that_is_not_whole_is_one_line_naming_it(args, message, tmp_path) -> None:
    done = _cli(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert (done.stdout, done.stderr) == ("", f"error: {message}\n")  # -1: as typed, not -1.0


def test_a_whole_count_is_still_taken(tmp_path) -> None:
    """`run web --budget-calls 2`: past the budget checks to the next one (the unknown task)."""
    done = _cli("run", "web", "--budget-calls", "2", "--tasks", "no-such-task", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: unknown MiniWoB task 'no-such-task'"), done.stderr

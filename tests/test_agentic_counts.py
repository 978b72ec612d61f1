"""Steps and attempts of the agentic environment: one rule (a whole number >= 1), one message from
Python and from `agentroute eval --agentic` (was: three copies; `AgenticEnv(steps=2.5)` ended in a
TypeError traceback, `max_attempts=1.5` or `True` was taken)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from agentroute.agentic import AgenticEnv, build_tasks
from agentroute.errors import ConfigurationError
from agentroute.outcomes import OutcomeTable


def table(n: int = 12) -> OutcomeTable:
    return OutcomeTable(
        query_ids=[f"q{i}" for i in range(n)], queries=[f"question {i}" for i in range(n)],
        models=["small", "large"], scores=np.tile([0.5, 1.0], (n, 1)), costs=np.tile([1e-4, 1e-2], (n, 1)),
        task_types=["a"] * n,
    )  # fmt: skip


@pytest.mark.parametrize(("options", "message"), [
    ({"steps": 0}, "steps must be >= 1 (got 0)"),
    ({"steps": 2.5}, "steps must be a whole number >= 1 (got 2.5)"),
    ({"steps": True}, "steps must be a whole number >= 1 (got True)"),
    ({"max_attempts": 0}, "max_attempts must be >= 1 (got 0)"),
    ({"max_attempts": 1.5}, "max_attempts must be a whole number >= 1 (got 1.5)"),
    ({"max_attempts": True}, "max_attempts must be a whole number >= 1 (got True)"),
])
def test_the_environment_refuses_a_bad_count_in_one_line(options, message):
    with pytest.raises(ConfigurationError) as caught:
        AgenticEnv(table(), **options)
    assert str(caught.value) == message


def test_build_tasks_says_the_same():
    with pytest.raises(ConfigurationError, match=r"^variants must be a whole number >= 1 \(got '2'\)$"):
        build_tasks(["a"] * 4, steps=2, variants="2")  # type: ignore[arg-type]
    assert len(AgenticEnv(table(), steps=np.int64(3), max_attempts=2).tasks) == 4  # numpy integers are whole numbers


def test_the_cli_says_it_with_the_option_name(tmp_path):
    command = [sys.executable, "-m", "agentroute", "eval", "--agentic", "--dataset", f"routerbench:{tmp_path}",
               "--steps", "3", "--max-attempts", "-1"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=60, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 2 and run.stderr.splitlines() == ["error: --max-attempts must be >= 1 (got -1)"], run.stderr

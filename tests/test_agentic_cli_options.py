"""`agentroute eval --agentic` with a bad option a user typed: one line naming the option (exit 2),
before the dataset is read and before LangGraph loads (was: `steps must be >= 1` after the dataset,
or the dataset's own error when it was missing too, ~4 s on a loaded 2-core machine)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agentroute.cli.agentic_cmd import check_options
from agentroute.errors import ConfigurationError


def test_steps_0_is_named_before_the_dataset_loads(tmp_path):
    command = [sys.executable, "-X", "importtime", "-m", "agentroute", "eval", "--agentic",
               "--dataset", f"routerbench:{tmp_path / 'missing'}", "--steps", "0"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"})
    errors = [x for x in run.stderr.splitlines() if not x.startswith("import time:")]
    assert run.returncode == 2 and errors == ["error: --steps must be >= 1 (got 0)"], run.stderr[-2000:]
    assert "langgraph" not in run.stderr  # the check needs no graph runtime


@pytest.mark.parametrize(("options", "message"), [
    ({"max_attempts": 0}, "--max-attempts must be >= 1 (got 0)"),
    ({"success_rule": "1.5"}, "--success-rule must be all/majority/any/last or a fraction in (0, 1] (got 1.5)"),
    ({"success_rule": "nan"}, "--success-rule must be all/majority/any/last or a fraction in (0, 1] (got nan)"),
    ({"tiers": "claude-v1,claude-v1"}, "--tiers must name at least two distinct models, cheapest first (got ['claude-v1', 'claude-v1'])"),
])
def test_each_bad_option_names_itself(options, message):
    given = {"steps": 3, "max_attempts": 1, "success_rule": "all", **options}
    with pytest.raises(ConfigurationError) as caught:
        check_options(["always-small"], **given)
    assert str(caught.value) == message


def test_good_options_give_the_rule_and_the_tiers():
    assert check_options(["bopo"], steps=1, max_attempts=2, success_rule="0.5") == (0.5, None)
    assert check_options(["bopo"], steps=1, max_attempts=1, success_rule="majority", tiers=",a, b,") == ("majority", ["a", "b"])


def test_a_missing_bopo_recipe_is_named_before_the_dataset_loads(tmp_path):
    command = [sys.executable, "-m", "agentroute", "eval", "--agentic", "--dataset", f"routerbench:{tmp_path / 'missing'}",
               "--routers", "bopo", "--config", str(tmp_path / "bopo.yaml")]
    run = subprocess.run(command, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"})
    assert run.returncode == 2 and run.stderr.splitlines() == [f"error: recipe {tmp_path / 'bopo.yaml'} does not exist"], run.stderr

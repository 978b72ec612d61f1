"""`agentroute eval` given an option its mode does not use says so in one line naming it (exit 2)
instead of running without it: `--tiers ""` or `--steps 5` without `--agentic` (was: a single-query
evaluation that ignored them), `--out`/`--limit` with `--agentic`, `--agentic` with `--from`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from agentroute.cli.app import app


@pytest.mark.parametrize(("args", "message"), [
    (["--tiers", ""], "error: --tiers: --agentic only (k-step tasks under budgets): add --agentic, or leave out"),
    (["--steps", "5", "--cap-large", "1"], "error: --steps, --cap-large: --agentic only (k-step tasks under budgets): add --agentic, or leave out"),
    (["--agentic", "--out", "OUT", "--limit", "3"], "error: --out, --limit: single-query evaluation only, not used with --agentic"),
])
def test_an_option_of_the_other_mode_is_named(tmp_path, args, message):
    result = CliRunner().invoke(app, ["eval", "--dataset", f"routerbench:{tmp_path}", *args])
    assert result.exit_code == 2 and result.stderr.splitlines() == [message], result.output


def test_a_user_shell_gets_the_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "agentroute", "eval", "--dataset", f"routerbench:{tmp_path}", "--tiers", ""],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"})
    assert run.returncode == 2 and run.stderr.splitlines() == [
        "error: --tiers: --agentic only (k-step tasks under budgets): add --agentic, or leave out"], run.stderr


def test_agentic_is_not_a_counterfactual_option(tmp_path):
    result = CliRunner().invoke(app, ["eval", "--from", f"sqlite:///{tmp_path / 'm.db'}", "--agentic"])
    assert result.exit_code == 2 and result.stderr.splitlines() == [
        "error: --agentic: not used with --from (counterfactual estimates)"], result.output
    assert not (tmp_path / "m.db").exists()  # said before the memory is opened


def test_the_options_of_each_mode_still_reach_it(tmp_path):
    for args in (["--agentic", "--tiers", ""], ["--limit", "3", "--no-peers"]):  # to the dataset's own error
        result = CliRunner().invoke(app, ["eval", "--dataset", f"routerbench:{tmp_path / 'none'}", *args])
        assert result.exit_code == 2 and "--agentic only" not in result.stderr and "not used" not in result.stderr

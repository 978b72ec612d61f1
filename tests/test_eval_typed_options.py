"""`agentroute eval` refuses an option its mode does not use when the user typed it, whatever its
value: `--steps 3` without `--agentic`, `--boot 500` or `--peers` with it (was: taken as not given,
since they equal the defaults: the check compared values with a second copy of each default), and
`--pool` without `--from` (was: ignored). A value the user did not type is never refused."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from agentroute.cli.app import app


@pytest.mark.parametrize(("args", "message"), [
    (["--steps", "3"], "--steps: --agentic only (k-step tasks under budgets): add --agentic, or leave out"),
    (["--agentic", "--boot", "500", "--peers"], "--boot, --peers: single-query evaluation only, not used with --agentic"),
    (["--agentic", "--no-peers"], "--no-peers: single-query evaluation only, not used with --agentic"),
    (["--pool", "pool.yaml"], "--pool: --from only (estimates on your logged traffic): add --from, or leave out"),
    (["--agentic", "--pool", "pool.yaml"], "--pool: --from only (estimates on your logged traffic): add --from, or leave out"),
])  # fmt: skip
def test_a_typed_option_of_another_mode_is_named(tmp_path, args, message):
    result = CliRunner().invoke(app, ["eval", "--dataset", f"routerbench:{tmp_path}", *args])
    assert result.exit_code == 2 and result.stderr.splitlines() == [f"error: {message}"], result.output


@pytest.mark.parametrize("args", [[], ["--agentic"], ["--seed", "1", "--json", "--routers", "cheapest"]])
def test_defaults_are_never_refused(tmp_path, args):
    result = CliRunner().invoke(app, ["eval", "--dataset", f"routerbench:{tmp_path / 'none'}", *args])
    assert result.exit_code == 2 and "only" not in result.stderr and "not used" not in result.stderr, result.stderr
    assert "does not exist" in result.stderr or "expected" in result.stderr, result.stderr  # the dataset's own error

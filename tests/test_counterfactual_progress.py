"""``agentroute eval --from MEMORY`` shows its long phases on stderr, as the other long commands do."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from agentroute.cli import app as app_cli
from agentroute.eval.counterfactual import evaluate_from_memory
from tests.helpers import POOL_YAML, flaky_outcomes, log_explored, replay_pool


def test_each_long_phase_shows_on_stderr_and_stdout_stays_the_json(tmp_path):
    """On 10,000 logged tasks the command ran ~26 s and printed nothing until its table. With bars
    on (a terminal, here ``$AGENTROUTE_PROGRESS=1``) each phase is named on stderr; stdout holds
    the JSON alone."""
    url = f"sqlite:///{tmp_path}/m.db"
    log_explored(url, 12, flaky_outcomes(12, small_fails_on_odd=False))
    pool = tmp_path / "pool.yaml"
    pool.write_text(POOL_YAML)
    command = ["eval", "--from", url, "--pool", str(pool), "--routers", "cheapest,strongest", "--boot", "40", "--json"]
    done = CliRunner().invoke(app_cli, command, env={"AGENTROUTE_PROGRESS": "1"})
    assert done.exit_code == 0, done.output
    assert [r["router"] for r in json.loads(done.stdout)["routers"]] == ["cheapest", "strongest"]
    for shown in ("reading the memory", "fitting strongest on 6 logged tasks", "estimating", "bootstrap cheapest", "bootstrap strongest"):
        assert shown in done.stderr, (shown, done.stderr)


def test_no_bar_where_stderr_is_no_terminal(tmp_path, capsys, monkeypatch):
    """A pipe, a log file or a CI run (stderr no terminal) gets no bar, as ``eval --dataset``."""
    monkeypatch.delenv("AGENTROUTE_PROGRESS", raising=False)
    url = f"sqlite:///{tmp_path}/m.db"
    log_explored(url, 12, flaky_outcomes(12, small_fails_on_odd=False))
    capsys.readouterr()
    evaluate_from_memory(url, ["cheapest", "strongest"], pool=replay_pool(12), n_boot=40)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("AGENTROUTE_PROGRESS", "1")
    evaluate_from_memory(url, ["cheapest"], pool=replay_pool(12), n_boot=40, progress=False)
    assert "bootstrap" in capsys.readouterr().err  # the user's switch wins, as for every bar

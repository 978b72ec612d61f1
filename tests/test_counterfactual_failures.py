"""``eval --from`` on logs with failed tasks: the user is told what the tasks scored 0 failed of."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from agentroute import AgentGraph
from agentroute.cli import app as app_cli
from agentroute.eval.counterfactual import evaluate_from_memory
from agentroute.memory import SQLMemory
from tests.helpers import POOL_YAML, flaky_outcomes, log_explored, replay_pool


def test_the_table_says_what_the_failed_tasks_scored_0_failed_of(tmp_path):
    """The header said "N failed tasks scored 0" and no more: an outage, which no router could
    have avoided and which lowers every estimate alike, read the same as an agent's failures. With
    no fallback each failed task tried one agent: none failed on every candidate."""
    url = f"sqlite:///{tmp_path}/m.db"
    log_explored(url, 40, flaky_outcomes(40, outage_every=4), max_fallbacks=0)
    with SQLMemory(url) as memory:
        failed = sum(t.task.status == "failed" for t in memory.trajectories())
    pool = tmp_path / "pool.yaml"
    pool.write_text(POOL_YAML)
    done = CliRunner().invoke(app_cli, ["eval", "--from", url, "--pool", str(pool), "--routers", "cheapest"])
    assert done.exit_code == 0, done.output
    text = " ".join(done.output.split())
    assert f"; {failed} failed tasks scored 0;" in text
    assert (
        f"warning: {failed} failed tasks are scored 0 (no answer reached their users): 0 after every candidate "
        f"failed (an outage: no router could have answered them), {failed} after the agents tried failed; last "
        "error: " in text
    ), done.output
    assert re.search(r"last error: (small|large): no logged outcome for query 'q\d+'", text), done.output


def test_a_task_that_failed_on_every_agent_is_told_apart(tmp_path):
    """With a fallback, a task on a query every model fails on ends after both failed: an outage."""
    url = f"sqlite:///{tmp_path}/m.db"
    log_explored(url, 40, flaky_outcomes(40, small_fails_on_odd=False, outage_every=4), max_fallbacks=1)
    result = evaluate_from_memory(url, ["cheapest"], pool=replay_pool(40), n_boot=50)
    assert result["failed_scored_0"] == 10
    assert result["warnings"][0].startswith(
        "10 failed tasks are scored 0 (no answer reached their users): 10 after every candidate failed"
    ), result["warnings"]


def test_a_role_given_one_model_that_fails_failed_on_every_candidate(tmp_path):
    """A planner given ``large``, then an executor given ``small`` alone, which fails on odd
    queries: those tasks failed on every candidate the executor had (its one model)."""
    url = f"sqlite:///{tmp_path}/m.db"
    graph = (
        AgentGraph("two")
        .add_role("planner", prompt="plan", models=["large"])
        .add_role("executor", prompt="do", models=["small"])
        .add_edge("planner", "executor")
    )
    log_explored(url, 40, flaky_outcomes(40), graph)
    result = evaluate_from_memory(url, ["cheapest"], pool=replay_pool(40), n_boot=50)
    assert result["failed_scored_0"] == 20, result
    assert result["warnings"][0].startswith(
        "20 failed tasks are scored 0 (no answer reached their users): 20 after every candidate failed"
    ), result["warnings"]

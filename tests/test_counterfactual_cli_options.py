"""`agentroute eval --from`: the resamples (--boot) and the graph (--graph) a user picks."""

from __future__ import annotations

import asyncio

import pytest
from typer.testing import CliRunner

from agentroute import AgentGraph
from agentroute.cli import app
from agentroute.memory import SQLMemory
from agentroute.routers.explore import ExploreRouter
from tests.helpers import replay_pool

runner = CliRunner(env={"COLUMNS": "300"})
POOL = (
    "models:\n  - {id: small, backend: replay, input_price: 0.1, output_price: 0.1, tier: small}\n"
    "  - {id: large, backend: replay, input_price: 10, output_price: 10, tier: large}\n"
)


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """Explored traffic of two graphs: 60 tasks of ``one``, 40 of ``two``."""
    folder = tmp_path_factory.mktemp("cf-cli")
    url = f"sqlite:///{folder}/m.db"
    with SQLMemory(url) as memory:
        for name, n in (("one", 60), ("two", 40)):
            app_ = AgentGraph(name).add_role("executor", prompt="p").compile(
                pool=replay_pool(n), router=ExploreRouter(base="cheapest", epsilon=0.5, seed=3), memory=memory
            )
            items = [{"query": f"question {i}", "query_id": f"q{i}", "task_id": f"{name}-{i:03d}"} for i in range(n)]
            asyncio.run(app_.arun_many(items))
    pool = folder / "pool.yaml"
    pool.write_text(POOL)
    return url, str(pool)


def evaluate(logs, *args: str):
    url, pool = logs
    return runner.invoke(app, ["eval", "--from", url, "--pool", pool, "--routers", "cheapest,fixed:model=large", *args])


def test_boot_0_prints_estimates_without_intervals(logs):
    result = evaluate(logs, "--boot", "0")
    assert result.exit_code == 0, result.output
    assert "no intervals (--boot 0)" in result.output and "nan" not in result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│")]
    assert len(rows) == 2 and not any("[" in row for row in rows)  # no bounds in any cell


def test_boot_is_the_number_of_resamples(logs):
    assert evaluate(logs, "--boot", "60").output != evaluate(logs, "--boot", "100").output  # other draws, other bounds
    result = evaluate(logs, "--boot", "5")
    assert result.exit_code == 2 and result.output.strip().splitlines() == [
        "error: n_boot 5 is too few for a 95% interval: at least 40 (each tail needs one resample), 0 for none"
    ]


def test_graph_keeps_that_graphs_tasks(logs):
    both, one, two = evaluate(logs), evaluate(logs, "--graph", "one"), evaluate(logs, "--graph", "two")
    assert both.exit_code == one.exit_code == two.exit_code == 0, (both.output, one.output, two.output)
    assert " 100 logged tasks" in " ".join(both.output.split())
    assert " 60 logged tasks" in " ".join(one.output.split())
    assert " 40 logged tasks" in " ".join(two.output.split())


def test_a_graph_with_no_tasks_or_graph_without_from_is_one_line(logs):
    result = evaluate(logs, "--graph", "nope")
    assert result.exit_code == 2 and "no tasks of graph 'nope'" in result.output and len(result.output.strip().splitlines()) == 1
    result = runner.invoke(app, ["eval", "--dataset", "routerbench:/nowhere", "--graph", "one"])
    assert result.exit_code == 2 and "--graph: --from only" in result.output

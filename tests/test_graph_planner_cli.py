"""GraphPlanner's CLI module: train from a SQL memory with a recipe, then show the saved policy."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
typer = pytest.importorskip("typer")

from typer.testing import CliRunner  # noqa: E402

from agentroute.cli.graph_planner_cmd import show_graph_planner, train_graph_planner  # noqa: E402
from agentroute.types import Agent, Step, Task  # noqa: E402


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("train")(train_graph_planner)
    app.command("show")(show_graph_planner)
    return app


def _fill(url: str) -> None:
    from agentroute.memory import open_memory

    with open_memory(url) as memory:
        for i in range(12):
            for j, model in enumerate(("small", "large")):
                task = Task(query=f"What is {i} plus {j}?", metadata={"query_id": f"q{i}"})
                memory.start_task(task)
                score = float(model == "large" or i % 2 == 0)
                memory.record_step(Step(task_id=task.id, index=0, stage="execute", agent=Agent(model=model),
                                        input=task.query, output="x", cost_usd=0.001 * (1 + 9 * j), score=score))
                task.status, task.score = "done", score
                memory.finish_task(task)


def test_train_from_memory_then_show(tmp_path):
    url = f"sqlite:///{tmp_path}/memory.db"
    _fill(url)
    recipe = tmp_path / "gp.yaml"
    recipe.write_text("router: graph-planner\nparams:\n  episodes: 32\n  episodes_per_update: 16\n")
    runner = CliRunner()
    out = tmp_path / "gp"
    result = runner.invoke(_app(), ["train", "--from", url, "--config", str(recipe), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (out / "router.json").exists()
    shown = runner.invoke(_app(), ["show", "--state", str(out), "--out", str(tmp_path / "ev")])
    assert shown.exit_code == 0, shown.output
    assert "executor" in shown.output
    assert (tmp_path / "ev" / "workflows.txt").read_text().strip()
    assert (tmp_path / "ev" / "actions.json").exists()


def test_recipe_for_another_router_is_refused(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("router: knn\nparams: {}\n")
    result = CliRunner().invoke(_app(), ["train", "--dataset", "routerbench", "--config", str(recipe), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2, result.output  # the error is reported (the progress callback once shadowed `report`)
    assert "is for router 'knn', not 'graph-planner'" in result.output

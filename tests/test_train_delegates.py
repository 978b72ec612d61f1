"""`agentroute train graph-planner|router-r1` does what the routers' own commands do, with their
options, and a Ctrl-C says truthfully what --out holds. Was: --no-progress, --resume, --policy,
--no-sft… were "No such option"; router-r1 silently ignored --from/--dataset; and a Ctrl-C before
graph-planner's command started said "nothing was saved" over a checkpoint it resumes from."""

from __future__ import annotations

import inspect
import sys

from typer.testing import CliRunner

from agentroute.cli import app
from agentroute.cli.graph_planner_cmd import train_graph_planner
from agentroute.cli.router_r1_cmd import train_router_r1
from agentroute.cli.train_cmd import train_command
from tests.test_cli_signals import _assert_one_line_130, _ctrl_c_after_import, _env

runner = CliRunner()
TINY = "router: graph-planner\nparams:\n  episodes: 16\n  episodes_per_update: 16\n  hidden: 8\n"


def _dataset(data_dir):
    return f"routerbench:{data_dir / 'routerbench'}"


def test_train_takes_every_option_of_the_routers_own_commands():
    options = set(inspect.signature(train_command).parameters)
    for command in (train_graph_planner, train_router_r1):
        assert set(inspect.signature(command).parameters) <= options, command.__name__


def test_graph_planner_trains_without_its_progress_bar(tmp_path, data_dir):
    recipe = tmp_path / "gp.yaml"
    recipe.write_text(TINY)
    out = tmp_path / "gp"
    result = runner.invoke(app, ["train", "graph-planner", "--dataset", _dataset(data_dir), "--config", str(recipe),
                                 "--out", str(out), "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "PPO" not in result.output and "trained in" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["arrays.npz", "router.json"]


def test_router_r1_resume_reaches_its_trainer(tmp_path):
    out = tmp_path / "r1"
    result = runner.invoke(app, ["train", "router-r1", "--config", "training/router_r1.yaml", "--out", str(out),
                                 "--resume", "--no-sft", "--max-steps", "1"])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert f"--resume: no GRPO checkpoint in {out / 'grpo'}" in " ".join(result.output.split())


def test_options_a_router_would_ignore_are_refused_by_name(tmp_path, data_dir):
    cases = [
        (["knn", "--dataset", _dataset(data_dir), "--no-progress"], "--no-progress: for `train graph-planner` only, not knn"),
        (["mlp", "--dataset", _dataset(data_dir), "--resume", "--policy", "p"], "--policy, --resume: for `train router-r1` only, not mlp"),
        (["graph-planner", "--dataset", _dataset(data_dir), "--gpu"], "--gpu: for `train router-r1` only, not graph-planner"),
        (["router-r1", "--dataset", _dataset(data_dir)], "router-r1 trains on its recipe's data: --from and --dataset do not apply"),
        (["router-r1", "--progress"], "--progress: for `train graph-planner` only, not router-r1"),
    ]
    for args, said in cases:
        out = tmp_path / "out"
        result = runner.invoke(app, ["train", *args, "--out", str(out)])
        assert result.exit_code == 2, (args, result.output)
        assert said in " ".join(result.output.split()), (args, result.output)
        assert not out.exists()


def test_ctrl_c_before_graph_planner_starts_names_the_checkpoint_it_resumes_from(tmp_path, data_dir):
    from agentroute.eval.datasets import load_dataset
    from agentroute.routers.graph_planner.router import GraphPlannerRouter

    out = tmp_path / "gp"
    out.mkdir()
    train = load_dataset(_dataset(data_dir), limit=40).train
    GraphPlannerRouter(episodes=16, episodes_per_update=16, hidden=8).fit(train, checkpoint=out / "checkpoint.pt")
    recipe = tmp_path / "gp.yaml"
    recipe.write_text(TINY)
    command = [sys.executable, "-m", "agentroute", "train", "graph-planner", "--dataset", _dataset(data_dir),
               "--config", str(recipe), "--out", str(out)]  # fmt: skip
    rc, lines = _ctrl_c_after_import(command, "agentroute.cli.graph_planner_cmd", tmp_path, _env())
    _assert_one_line_130(rc, lines, "SIGINT as graph-planner's command starts")
    assert lines[-1] == (f"interrupted: --out {out}: a checkpoint after 16 episodes ({out / 'checkpoint.pt'}): "
                         "rerun the same command to resume")  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]

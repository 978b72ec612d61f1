"""GraphPlanner training interrupted and resumed, as a TRL user expects: a checkpoint of the last
finished PPO update, resumed to the very router an uninterrupted run trains; a checkpoint of
another run, or a corrupted one, is refused naming the file; Ctrl-C on the CLI says where it is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from agentroute.errors import ConfigurationError, StateFileError
from agentroute.eval.datasets import load_dataset
from agentroute.routers.base import Router
from agentroute.routers.graph_planner.router import GraphPlannerRouter
from tests.small_data import small_routerbench

PARAMS = {"episodes": 64, "episodes_per_update": 16, "hidden": 16, "seed": 3}


@pytest.fixture(scope="module")
def small_train(data_dir):
    return load_dataset(f"routerbench:{data_dir / 'routerbench'}", limit=40).train


def _arrays(router):
    return router.get_arrays()


def _stop_after(updates):
    seen = []

    def progress(row):
        seen.append(row)
        if len(seen) == updates:
            raise KeyboardInterrupt

    return progress


def test_a_resumed_fit_trains_the_router_an_uninterrupted_fit_trains(tmp_path, small_train):
    straight = GraphPlannerRouter(**PARAMS).fit(small_train)
    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(KeyboardInterrupt):
        GraphPlannerRouter(**PARAMS).fit(small_train, checkpoint=checkpoint, progress=_stop_after(2))
    assert checkpoint.is_file()  # the last finished update (32 of 64 episodes), kept on Ctrl-C
    rows = []
    resumed = GraphPlannerRouter(**PARAMS).fit(small_train, checkpoint=checkpoint, progress=rows.append)
    assert [r["episodes"] for r in rows] == [48, 64]  # only what was left
    assert [r["episodes"] for r in resumed.train_log_] == [16, 32, 48, 64]
    for name, value in _arrays(straight).items():
        np.testing.assert_array_equal(_arrays(resumed)[name], value, err_msg=name)


def test_more_episodes_continue_a_finished_checkpoint(tmp_path, small_train):
    checkpoint = tmp_path / "checkpoint.pt"
    GraphPlannerRouter(**PARAMS).fit(small_train, checkpoint=checkpoint)
    rows = []
    GraphPlannerRouter(**{**PARAMS, "episodes": 96}).fit(small_train, checkpoint=checkpoint, progress=rows.append)
    assert [r["episodes"] for r in rows] == [80, 96]


def test_a_checkpoint_of_other_parameters_is_refused(tmp_path, small_train):
    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(KeyboardInterrupt):
        GraphPlannerRouter(**PARAMS).fit(small_train, checkpoint=checkpoint, progress=_stop_after(1))
    with pytest.raises(ConfigurationError, match="a checkpoint of another training run"):
        GraphPlannerRouter(**{**PARAMS, "cost_weight": 0.3}).fit(small_train, checkpoint=checkpoint)


def test_a_corrupted_checkpoint_is_an_error_naming_the_file(tmp_path, small_train):
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(StateFileError, match="checkpoint.pt: not a graph-planner checkpoint"):
        GraphPlannerRouter(**PARAMS).fit(small_train, checkpoint=checkpoint)


@pytest.mark.slow
def test_ctrl_c_on_the_cli_keeps_a_checkpoint_that_the_same_command_resumes(tmp_path, data_dir):
    """Was: "nothing was saved" — every episode trained before the Ctrl-C was lost."""
    recipe = tmp_path / "gp.yaml"
    recipe.write_text("router: graph-planner\nparams:\n  episodes: 200000\n  episodes_per_update: 32\n  hidden: 16\n")
    out = tmp_path / "gp"
    dataset = small_routerbench(data_dir, tmp_path / "routerbench")  # the signal is the subject, not the data
    command = [sys.executable, "-m", "agentroute", "train", "graph-planner", "--dataset",
               f"routerbench:{dataset}", "--config", str(recipe), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    live = {**env, "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "NO_COLOR": "1"}  # rich draws its progress bar into the pipe
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=live)
    try:  # a failure never leaves the 200,000-episode run going
        said: list[str] = []
        threading.Thread(target=lambda: said.extend(iter(proc.stdout.readline, "")), daemon=True).start()  # type: ignore[union-attr]
        deadline = time.monotonic() + 120
        while not any(" 64/200000 " in line for line in said):  # two PPO updates done, as the progress bar shows
            assert time.monotonic() < deadline and proc.poll() is None, said
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert err.startswith(f"interrupted: --out {out}: a checkpoint after ") and "rerun the same command to resume" in err
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]
    with pytest.raises(StateFileError):  # an unfinished run never loads as a router
        Router.load(out)
    from agentroute.routers.graph_planner.trainer import checkpoint_episodes

    done_episodes = checkpoint_episodes(out / "checkpoint.pt")
    recipe.write_text(recipe.read_text().replace("200000", str(done_episodes)))  # as many as done: it finishes at once
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming from" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == ["arrays.npz", "router.json"]  # the checkpoint is gone
    assert isinstance(Router.load(out), GraphPlannerRouter)


def test_a_checkpoint_write_cut_short_does_not_lock_the_out_folder(tmp_path, data_dir):
    """A ``kill -9`` during the first checkpoint write leaves only ``checkpoint.pt.partial``; was:
    "--out holds other files and no router.json", so the same command could not run again."""
    from typer.testing import CliRunner

    from agentroute.cli import app

    out = tmp_path / "gp"
    out.mkdir()
    (out / "checkpoint.pt.partial").write_bytes(b"cut short")
    recipe = tmp_path / "gp.yaml"
    recipe.write_text("router: graph-planner\nparams:\n  episodes: 16\n  episodes_per_update: 16\n  hidden: 8\n")
    dataset = small_routerbench(data_dir, tmp_path / "routerbench")
    result = CliRunner().invoke(app, ["train", "graph-planner", "--dataset", f"routerbench:{dataset}",
                                      "--config", str(recipe), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["arrays.npz", "router.json"]

"""A training command ended by a job scheduler's SIGTERM keeps its work, as a Ctrl-C does: exit 143,
the last finished update in the checkpoint, a message saying how to resume; the same command resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.fixtures_signals import ROUTER_R1_TRACES, signal_while_traces_are_built
from tests.small_data import small_routerbench

pytest.importorskip("torch")

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
LIVE = {**ENV, "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "NO_COLOR": "1"}  # rich draws its progress bar into the pipe


def _start(command: list[str], cwd: Path, env: dict[str, str] = ENV) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
    said: list[str] = []
    threading.Thread(target=lambda: said.extend(iter(proc.stdout.readline, "")), daemon=True).start()  # type: ignore[union-attr]
    return proc, said


def _wait_for(said: list[str], text: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not any(text in line for line in said):
        assert time.monotonic() < deadline, f"{text!r} never printed: {said}"
        time.sleep(0.2)


def test_sigterm_keeps_the_graph_planner_checkpoint_and_the_same_command_resumes(tmp_path: Path, data_dir: Path) -> None:
    """Was: Python's default SIGTERM — the process died (-15) with no checkpoint of the run so far."""
    from agentroute.routers.base import Router
    from agentroute.routers.graph_planner.router import GraphPlannerRouter
    from agentroute.routers.graph_planner.trainer import checkpoint_episodes

    recipe = tmp_path / "gp.yaml"
    recipe.write_text("router: graph-planner\nparams:\n  episodes: 200000\n  episodes_per_update: 32\n  hidden: 8\n")
    out = tmp_path / "gp"
    dataset = small_routerbench(data_dir, tmp_path / "routerbench")  # the signal is the subject, not the data
    command = [sys.executable, "-m", "agentroute", "train", "graph-planner", "--dataset",
               f"routerbench:{dataset}", "--config", str(recipe), "--out", str(out)]
    proc, said = _start(command, tmp_path, LIVE)
    _wait_for(said, " 32/200000 ")  # the first PPO update done, as the progress bar shows (the periodic checkpoint is every 30 s: none yet)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.startswith(f"terminated: --out {out}: a checkpoint after "), err
    assert "rerun the same command to resume" in err
    done_episodes = checkpoint_episodes(out / "checkpoint.pt")
    assert done_episodes is not None and done_episodes > 0
    recipe.write_text(recipe.read_text().replace("200000", str(done_episodes + 32)))
    resumed = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {out / 'checkpoint.pt'} ({done_episodes} episodes done)" in resumed.stdout.replace("\n", "")
    router = Router.load(out)
    assert isinstance(router, GraphPlannerRouter) and router.train_log_[-1]["episodes"] == done_episodes + 32


@pytest.mark.slow
def test_sigterm_during_router_r1_training_exits_143_with_one_line(tmp_path: Path, tiny_policy: Path) -> None:
    """Was: killed by the signal (-15) with no line, the pool's generation thread never stopped."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(ROUTER_R1_TRACES + f"policy: {tiny_policy}\n")
    out = tmp_path / "out"
    code, said = signal_while_traces_are_built(
        ["agentroute", "train", "router-r1", "--config", str(recipe), "--out", str(out)], signal.SIGTERM, cwd=tmp_path, env=ENV
    )
    assert code == 143, said
    assert said == [f"terminated: --out {out}: this run saved no policy\n"]


@pytest.mark.parametrize("steps", ["-1", "0"])
def test_a_max_steps_below_one_is_refused_naming_it_before_anything_loads(tmp_path: Path, steps: str) -> None:
    """Was: accepted — the SFT warm-up's pool calls and fit ran (minutes) before TRL met the bad value."""
    recipe = Path(__file__).parents[1] / "training" / "router_r1.yaml"
    done = subprocess.run([sys.executable, "-m", "agentroute", "train", "router-r1", "--config", str(recipe),
                           "--out", str(tmp_path / "r1"), "--max-steps", steps],
                          capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"error: --max-steps must be an integer >= 1 (got {steps}): the GRPO steps to train"
    assert not (tmp_path / "r1").exists()


def test_graph_planner_on_a_tiny_memory_warns_as_every_other_trainer_does(tmp_path: Path) -> None:
    """Was: two logged tasks trained in silence; `train knn`/`train bopo` warn that so few teach nothing."""
    from agentroute.memory import open_memory
    from agentroute.types import Agent, Step, Task

    url = f"sqlite:///{tmp_path}/memory.db"
    with open_memory(url) as memory:
        for i in range(2):
            task = Task(query=f"What is {i} plus 1?", metadata={"query_id": f"q{i}"})
            memory.start_task(task)
            memory.record_step(Step(task_id=task.id, index=0, stage="execute", agent=Agent(model="small"),
                                    input=task.query, output="x", cost_usd=0.001, score=1.0))
            task.status, task.score = "done", 1.0
            memory.finish_task(task)
    recipe = tmp_path / "gp.yaml"
    recipe.write_text("router: graph-planner\nparams:\n  episodes: 16\n  episodes_per_update: 16\n  hidden: 8\n")
    done = subprocess.run([sys.executable, "-m", "agentroute", "train", "graph-planner", "--from", url, "--config", str(recipe),
                           "--out", str(tmp_path / "gp"), "--no-progress"], capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "warning: 2 training examples: too few for graph-planner to learn from" in done.stderr.replace("\n", " ")
    assert (tmp_path / "gp" / "router.json").is_file()

"""`agentroute train router-r1` as a new user meets it, in a subprocess (a247's sweep):

- `--out` an existing folder of the user's own files: refused in one line before the policy loads
  (was: the run built its traces and checkpoints into it, mixing them with the user's files);
- a typo in the recipe's own `loop:`/`grpo:` was blamed on the `gpu:` profile ("the gpu: profile
  (read with --gpu): loop: unknown keys …") on a run without `--gpu`: now it names the section alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parents[1] / "training" / "router_r1.yaml"


def _train(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "agentroute", "train", "router-r1", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "300"})


def _recipe(tmp_path: Path, old: str, new: str) -> Path:
    text = RECIPE.read_text()
    assert old in text
    text = text.replace(old, new).replace("pool: router_r1_pool.yaml", f"pool: {RECIPE.parent / 'router_r1_pool.yaml'}")
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_an_unrelated_out_folder_is_refused_before_anything_runs(tmp_path: Path) -> None:
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "thesis.txt").write_text("mine")
    run = _train(tmp_path, "--config", str(RECIPE), "--out", str(mine), "--max-steps", "1")
    assert run.returncode == 2, run.stderr[-2000:]
    assert run.stderr.splitlines() == [
        f"error: --out {mine} holds other files and no Router-R1 run (sft/, policy/, traces.jsonl): "
        "give a new or empty directory, or an earlier run's --out"]
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.txt"]


def test_an_earlier_runs_out_folder_is_not_refused(tmp_path: Path) -> None:
    from agentroute.routers.router_r1.trainer import check_out_folder

    for name in ("traces.jsonl", "sft.partial", "policy.old", "summary.json"):
        earlier = tmp_path / name.replace(".", "_")
        earlier.mkdir()
        (earlier / name).write_text("")
        (earlier / "my-notes.txt").write_text("")
        check_out_folder(earlier)  # no error
    check_out_folder(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    check_out_folder(tmp_path / "empty")


def test_a_typo_in_the_recipe_is_not_blamed_on_the_gpu_profile(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, "max_turns: 4, turn_tokens: 80", "max_turn: 4, turn_tokens: 80")
    run = _train(tmp_path, "--config", str(recipe), "--out", str(tmp_path / "out"))
    assert run.returncode == 2, run.stderr[-2000:]
    [line] = run.stderr.splitlines()
    assert line.startswith("error: loop: unknown keys ['max_turn']"), line
    assert "gpu" not in line
    assert not (tmp_path / "out").exists()


def test_a_grpo_typo_names_grpo_alone(tmp_path: Path) -> None:
    from agentroute.errors import ConfigurationError
    from agentroute.routers.router_r1.trainer import RouterR1TrainConfig

    with pytest.raises(ConfigurationError) as refused:
        RouterR1TrainConfig.from_yaml(_recipe(tmp_path, "  max_steps: 3\n", "  max_step: 3\n"))
    assert str(refused.value) == "grpo: ['max_step'] are not GRPOConfig fields"

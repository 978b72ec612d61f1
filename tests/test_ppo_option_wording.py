"""graph-planner's PPO options are refused in the routers' one wording of a range (check_range's):
was 'clip' must be in (0, 1), 'gamma' must be in [0, 1], 'value_clip' must be > 0 or None."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentroute.training.ppo import PPOConfig, PPOOptionError


@pytest.mark.parametrize(("field", "value", "rule"), [
    ("clip", 1.5, "a finite number in (0, 1)"),
    ("gamma", 2, "a finite number in [0, 1]"),
    ("gae_lambda", -0.1, "a finite number in [0, 1]"),
    ("value_clip", 0, "a finite number > 0 or None"),
    ("value_clip", float("inf"), "a finite number > 0 or None"),
])  # fmt: skip
def test_ppo_config_says_each_range_in_the_shared_wording(field: str, value: float, rule: str) -> None:
    with pytest.raises(PPOOptionError) as refused:
        PPOConfig(**{field: value})
    assert str(refused.value) == f"ppo: {field!r} must be {rule} (got {value!r})"
    assert refused.value.rule == rule


def train_graph_planner(tmp_path: Path, params: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """``agentroute train graph-planner --config RECIPE`` (its ``params:`` lines ``params``, after
    ``episodes: 4`` on line 3) on a dataset that does not exist: the recipe is refused first."""
    recipe = tmp_path / "gp.yaml"
    recipe.write_text(f"router: graph-planner\nparams:\n  episodes: 4\n{params}")
    done = subprocess.run(
        [sys.executable, "-m", "agentroute", "train", "graph-planner", "--dataset", "routerbench:/nonexistent",
         "--config", str(recipe), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=tmp_path, timeout=60, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    return recipe, done


def test_train_graph_planner_names_a_bad_gamma_in_the_shared_wording(tmp_path: Path) -> None:
    recipe, done = train_graph_planner(tmp_path, "  gamma: 2\n")
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"error: recipe {recipe} line 4: graph-planner: 'gamma' must be a finite number in [0, 1] (got 2)\n"
    assert not (tmp_path / "out").exists()

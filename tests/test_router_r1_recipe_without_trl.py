"""``train router-r1`` refuses a recipe's own bad values before TRL is imported (seconds, ~20 s the
first time in a process), and a batch size that is not a number is named, not a traceback.

Was: ``RouterR1TrainConfig.check`` imported TRL first; ``grpo: {per_device_train_batch_size: "4"}``
was a ``TypeError`` traceback (a string multiplied, then ``%``) and ``num_generations: 0`` a
``ZeroDivisionError``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentroute.cli import app


@pytest.mark.parametrize(
    ("grpo", "said"),
    [
        ("{per_device_train_batch_size: '4'}", "grpo: 'per_device_train_batch_size' must be a finite number ≥ 1 (got '4')"),
        ("{num_generations: 0}", "grpo: 'num_generations' must be a finite number ≥ 1 (got 0)"),
        ("{gradient_accumulation_steps: 0, beta: -1}",
         "grpo: 'beta' must be a finite number ≥ 0 (got -1); 'gradient_accumulation_steps' must be a finite number ≥ 1 (got 0)"),
    ],
)
def test_a_bad_grpo_batch_is_one_line_without_trl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, grpo: str, said: str) -> None:
    monkeypatch.setitem(sys.modules, "trl", None)  # an import of trl fails: the recipe's rules do not need it
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"pool: default\ngrpo: {grpo}\n")
    done = CliRunner().invoke(app, ["train", "router-r1", "--config", str(recipe), "--out", str(tmp_path / "o")])
    assert done.exit_code == 2, done.output[-2000:]
    (line,) = done.output.strip().splitlines()
    assert line.endswith(said), line

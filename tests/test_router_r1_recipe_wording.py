"""A Router-R1 recipe's numbers are refused in the routers' one wording of a range (``range_rule``),
and an infinite one is refused as a NaN is.

Was: ``'learning_rate' must be a number > 0 and ≤ 1``, ``'top_p' must be in (0, 1]`` beside the
routers' ``must be a finite number in (0, 1]``; ``beta: .inf`` was let through to TRL; and a
``loop:`` value given as text (``top_p: high``) was reported as ``loop: unknown keys []``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from agentroute.errors import ConfigurationError
from agentroute.routers.router_r1.trainer import RouterR1TrainConfig


@pytest.mark.parametrize(
    ("recipe", "said"),
    [
        ("grpo: {learning_rate: 2}", "grpo: 'learning_rate' must be a finite number in (0, 1] (got 2)"),
        ("grpo: {beta: .inf}", "grpo: 'beta' must be a finite number ≥ 0 (got inf)"),
        ("loop: {top_p: high, temperature: -1}",
         "loop: 'temperature' must be a finite number ≥ 0, 0 = greedy (got -1); 'top_p' must be a finite number in (0, 1] (got 'high')"),
    ],
)
def test_a_recipe_value_reads_as_a_router_option_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recipe: str, said: str) -> None:
    monkeypatch.setitem(sys.modules, "trl", None)  # refused before TRL is needed
    path = tmp_path / "recipe.yaml"
    path.write_text(f"pool: default\n{recipe}\n")
    with pytest.raises(ConfigurationError) as refused:
        RouterR1TrainConfig.from_yaml(path)
    assert str(refused.value) == said

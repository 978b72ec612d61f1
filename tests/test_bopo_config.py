"""BoPOConfig refuses the nonsense an ML engineer can type into ``training/bopo.yaml`` (a negative
or NaN learning rate, NaN weights, a negative seed) when it is built, naming the field."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from agentroute.cli.agentic_cmd import bopo_recipe
from agentroute.errors import ConfigurationError
from agentroute.training.bopo_config import BoPOConfig


@pytest.mark.parametrize(("field", "value", "says"), [
    ("lr", -1.0, "BoPOConfig: 'lr' must be a finite number > 0 (got -1.0)"),  # was: accepted (gradient ascent)
    ("lr", math.nan, "BoPOConfig: 'lr' must be a finite number > 0 (got nan)"),
    ("sft_lr", 0.0, "BoPOConfig: 'sft_lr' must be a finite number > 0 (got 0.0)"),
    ("kl_coef", -1.0, "BoPOConfig: 'kl_coef' must be a finite number ≥ 0 (got -1.0)"),
    ("entropy_coef", math.nan, "BoPOConfig: 'entropy_coef' must be a finite number ≥ 0 (got nan)"),
    ("lam", math.nan, "BoPOConfig: 'lam' must be a finite number ≥ 0 (got nan)"),  # was: NaN passed `lam < 0`
    ("lam", math.inf, "BoPOConfig: 'lam' must be a finite number ≥ 0 (got inf)"),
    ("reference_weight", math.nan, "BoPOConfig: 'reference_weight' must be a finite number ≥ 0 (got nan)"),
    ("score_threshold", math.nan, "BoPOConfig: 'score_threshold' must be a finite number (got nan)"),
    ("cost_margin", math.nan, "BoPOConfig: 'cost_margin' must be a finite number ≥ 1 (got nan)"),
    ("seed", -1, "BoPOConfig: 'seed' must be an integer ≥ 0 (got -1)"),
    ("steps", True, "BoPOConfig: 'steps' must be an integer ≥ 1 (got True)"),
])
def test_nonsense_is_refused_when_the_config_is_built(field, value, says):
    with pytest.raises(ConfigurationError) as refused:
        BoPOConfig(**{field: value})
    assert says in str(refused.value)


def test_the_shipped_recipe_still_builds():
    BoPOConfig.from_dict(bopo_recipe(Path("training/bopo.yaml")))

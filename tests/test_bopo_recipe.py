"""``BoPOConfig.from_yaml`` reads numbers as the ``train`` command's recipes do."""

from __future__ import annotations

import re

import pytest

from agentroute.errors import ConfigurationError
from agentroute.training.bopo_config import BoPOConfig


def test_a_learning_rate_written_2e_3_is_a_number(tmp_path):
    """Was: a TypeError traceback ('<' not supported between 'int' and 'str'): safe_load read 2e-3 as text."""
    recipe = tmp_path / "bopo.yaml"
    recipe.write_text("bopo:\n  lr: 2e-3\n  sft_lr: 3e-3\n")
    config = BoPOConfig.from_yaml(recipe)
    assert (config.lr, config.sft_lr) == (2e-3, 3e-3)


def test_a_missing_recipe_is_an_error_naming_it(tmp_path):
    """Was: a FileNotFoundError traceback."""
    with pytest.raises(ConfigurationError, match="recipe .*nope.yaml does not exist"):
        BoPOConfig.from_yaml(tmp_path / "nope.yaml")



@pytest.mark.parametrize(("field", "value", "says"), [
    ("steps", 2.5, "an integer ≥ 1"), ("group_size", 4.0, "an integer ≥ 2"), ("lr", "2e-3", "a finite number > 0"),
    ("kl_coef", "0.1", "a finite number ≥ 0"), ("tail_chars", "512", "an integer ≥ 16 or None"),
])
def test_a_text_or_a_fraction_where_a_number_belongs_is_refused_naming_the_field(field, value, says):
    """Was: a TypeError traceback from the first comparison or product (6 × 2.5 steps, '2e-3' < 0)."""
    with pytest.raises(ConfigurationError, match=re.escape(f"BoPOConfig: {field!r} must be {says} (got {value!r})")):
        BoPOConfig(**{field: value})


def test_numpy_numbers_and_an_int_for_a_float_are_accepted():
    import numpy as np

    config = BoPOConfig(steps=np.int64(2), lr=np.float32(1e-3), score_threshold=1, tail_chars=None)
    assert config.steps == 2 and config.score_threshold == 1

"""``BoPOConfig.from_yaml`` reads numbers as the ``train`` command's recipes do."""

from __future__ import annotations

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


"""A Router-R1 recipe's ``gpu:`` profile is checked when the recipe is read, with or without ``--gpu``."""

from __future__ import annotations

import pytest

from agentroute.errors import ConfigurationError
from agentroute.routers.router_r1.trainer import RouterR1TrainConfig


def _recipe(tmp_path, gpu: str):
    path = tmp_path / "recipe.yaml"
    path.write_text(f"pool: []\ngpu: {gpu}\n")
    return path


def test_a_misspelt_value_of_the_gpu_profile_is_refused_on_the_cpu_read(tmp_path):
    """Was: accepted until --gpu on the GPU machine."""
    recipe = _recipe(tmp_path, "{sft: {trace: 5}}")
    with pytest.raises(ConfigurationError, match=r"the gpu: profile \(read with --gpu\): sft: unknown keys \['trace'\]"):
        RouterR1TrainConfig.from_yaml(recipe)


@pytest.mark.parametrize("gpu", [False, True])
def test_an_unknown_key_of_the_gpu_profile_names_the_known_ones(tmp_path, gpu):
    """Was: accepted without --gpu, an AttributeError traceback with it."""
    recipe = _recipe(tmp_path, "{polcy: x}")
    with pytest.raises(ConfigurationError, match=r"gpu: unknown recipe keys \['polcy'\]; known: \['budget'"):
        RouterR1TrainConfig.from_yaml(recipe, gpu=gpu)


def test_a_gpu_profile_that_is_not_a_mapping_is_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="gpu: is a mapping of recipe keys"):
        RouterR1TrainConfig.from_yaml(_recipe(tmp_path, "3"), gpu=True)


def test_a_pool_file_named_by_the_gpu_profile_is_read_beside_the_recipe(tmp_path):
    recipe = _recipe(tmp_path, "{pool: gpu_pool.yaml}")
    assert RouterR1TrainConfig.from_yaml(recipe, gpu=True).pool == str(tmp_path / "gpu_pool.yaml")


@pytest.mark.parametrize("gpu", [False, True])
def test_the_shipped_recipe_reads(gpu):
    cfg = RouterR1TrainConfig.from_yaml("training/router_r1.yaml", gpu=gpu)
    assert cfg.grpo["max_steps"] == (225 if gpu else 3)


def test_a_learning_rate_written_2e_3_is_a_number(tmp_path):
    """Was: PyYAML's safe_load read 1e-6 as text: "grpo: 'learning_rate' must be a number > 0 and ≤ 1 (got '1e-6')"."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("pool: []\ngrpo: {learning_rate: 1e-6}\nsft: {lr: 5e-5}\n")
    cfg = RouterR1TrainConfig.from_yaml(recipe)
    assert cfg.grpo["learning_rate"] == 1e-6 and cfg.sft["lr"] == 5e-5


def test_a_repeated_recipe_key_is_refused_naming_its_line(tmp_path):
    """Was: the later 'grpo:' silently replaced the first (PyYAML keeps the last of two equal keys)."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("pool: []\ngrpo: {max_steps: 5}\ngrpo: {beta: 0.1}\n")
    with pytest.raises(ConfigurationError, match=f"recipe {recipe} line 3"):
        RouterR1TrainConfig.from_yaml(recipe)


@pytest.mark.parametrize("section", ["budget: 3", "loop: 3", "sft: 3", "grpo: [1]", "reward: on"])
def test_a_section_that_is_not_a_mapping_is_refused_naming_it(tmp_path, section):
    """Was: a TypeError traceback ('int' object is not iterable; argument after ** must be a mapping)."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"pool: []\n{section}\n")
    name = section.split(":")[0]
    with pytest.raises(ConfigurationError, match=f"{name}: a mapping of its settings"):
        RouterR1TrainConfig.from_yaml(recipe)

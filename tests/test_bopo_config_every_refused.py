"""BoPOConfig names every field refused at once, in the routers' one wording of a range (was: it
stopped at the first, in its own words: 'BoPOConfig.steps must be >= 1 (got 0)'), from Python, from
`agentroute train bopo --config` (the recipe's line) and from `agentroute eval --agentic --config`
(before the dataset is read)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentroute.errors import ConfigurationError
from agentroute.training.bopo_config import BoPOConfig

STEPS_AND_LR = "'steps' must be an integer ≥ 1 (got 0); 'lr' must be a finite number > 0 (got -1) — the default is 2e-3"


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentroute", *args], capture_output=True, text=True, cwd=tmp_path,
                          timeout=60, env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "400"})  # fmt: skip


def _recipe(tmp_path: Path, *fields: str) -> Path:
    recipe = tmp_path / "bopo.yaml"
    recipe.write_text("router: bopo\nparams:\n  config:\n" + "".join(f"    {field}\n" for field in fields))
    return recipe


def test_python_names_every_bad_field_in_field_order() -> None:
    with pytest.raises(ConfigurationError) as refused:
        BoPOConfig(lr=-1, steps=0)
    assert str(refused.value) == f"BoPOConfig: {STEPS_AND_LR}"


@pytest.mark.parametrize(("fields", "says"), [
    ({"tiers": "gpt-4"}, "'tiers' must name at least two distinct models, cheapest first (got ['gpt-4'])"),  # was: 5 tiers g, p, t, -, 4
    ({"usd_fractions": 0.5}, "'usd_fractions' must be shares in (0, 1] (got 0.5)"),  # was: a TypeError
    ({"feedback": "no"}, "'feedback' must be true or false (got 'no')"),  # was: feedback on
    ({"equivalence": "cosine"}, "'equivalence' must be neighbours or task_type (got 'cosine')"),
    ({"lr": -1, "max_attempts": 2}, "'lr' must be a finite number > 0 (got -1) — the default is 2e-3; "
                                    "max_attempts=2 without feedback never retries"),
])  # fmt: skip
def test_values_of_the_wrong_shape_are_named_with_the_rest(fields: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        BoPOConfig(**fields)  # type: ignore[arg-type]
    assert str(refused.value).startswith(f"BoPOConfig: {says}")


def test_train_names_every_bad_field_on_the_config_line(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, "lr: -1", "steps: 0", "usd_fractions: [high]")  # the fractions were a ValueError traceback
    done = _cli(tmp_path, "train", "bopo", "--dataset", "routerbench:/nonexistent", "--config", str(recipe),
                "--out", str(tmp_path / "out"))  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"error: recipe {recipe} line 3: bopo: BoPOConfig: {STEPS_AND_LR}; "
        "'usd_fractions' must be shares in (0, 1] (got ['high'])\n"
    )
    assert not (tmp_path / "out").exists()


def test_eval_agentic_names_every_bad_field_before_the_dataset_loads(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, "lr: -1", "steps: 0")
    done = _cli(tmp_path, "eval", "--agentic", "--dataset", "routerbench:/nonexistent", "--routers", "bopo", "--config", str(recipe))
    assert done.returncode == 2, done.stderr  # was: the dataset was read first ('/nonexistent does not exist')
    assert done.stderr == f"error: recipe {recipe}: BoPOConfig: {STEPS_AND_LR}\n"


def test_an_unknown_field_is_named_with_the_known_ones_refused() -> None:
    with pytest.raises(ConfigurationError) as refused:
        BoPOConfig.from_dict({"stepz": 3, "lr": -1})  # was: the unknown field alone
    said = str(refused.value)
    assert said.startswith("BoPOConfig: unknown fields ['stepz']; known: ['advantage_scale', ")
    assert said.endswith("]; 'lr' must be a finite number > 0 (got -1) — the default is 2e-3")


def test_from_yaml_names_the_file_of_a_refused_mapping(tmp_path: Path) -> None:
    mapping = tmp_path / "fields.yaml"
    mapping.write_text("bopo:\n  lr: -1\n  steps: 0\n")
    with pytest.raises(ConfigurationError) as refused:
        BoPOConfig.from_yaml(mapping)  # was: 'BoPOConfig.steps must be >= 1 (got 0)', no file named
    assert str(refused.value) == f"recipe {mapping}: BoPOConfig: {STEPS_AND_LR}"
    with pytest.raises(ConfigurationError) as refused:
        BoPOConfig.from_yaml(_recipe(tmp_path, "lr: -1", "steps: 0"))
    assert str(refused.value) == f"recipe {tmp_path / 'bopo.yaml'}: BoPOConfig: {STEPS_AND_LR}"


def test_the_routers_threshold_is_named_before_the_configs_fields() -> None:
    """What follows ``BoPOConfig: …`` in the line is BoPOConfig's: the router's own option comes first."""
    from agentroute import make_router
    from agentroute.errors import ConfigurationError

    with pytest.raises(ConfigurationError) as info:
        make_router("bopo", threshold=2, config={"lr": -1})
    assert str(info.value) == (
        "bopo: 'threshold' must be a finite number in (0, 1] (got 2); "
        "BoPOConfig: 'lr' must be a finite number > 0 (got -1) — the default is 2e-3"
    )

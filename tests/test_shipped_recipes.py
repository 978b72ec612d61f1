"""Every YAML shipped under ``training/`` loads through the reader its users use, and the BoPO recipe
trains as shipped (its sizes cut down) and serves from the folder it was saved to."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agentroute.errors import ConfigurationError

TRAINING = Path(__file__).parents[1] / "training"
SHIPPED = sorted(TRAINING.glob("*.yaml"))


def test_the_shipped_recipes_are_there() -> None:
    assert {p.name for p in SHIPPED} >= {"bopo.yaml", "graph_planner.yaml", "router_r1.yaml", "router_r1_pool.yaml"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_yaml_loads_through_the_users_reader(path: Path) -> None:
    from agentroute.cli.train_cmd import read_recipe, recipe_params
    from agentroute.pool.pool import ModelPool
    from agentroute.routers import make_router
    from agentroute.routers.router_r1.trainer import RouterR1TrainConfig

    shape = yaml.safe_load(path.read_text())
    if "models" in shape:  # a pool a recipe names (`pool:`), also `ask --pool`
        assert len(list(ModelPool.from_yaml(path))) >= 2
    elif "pool" in shape:  # `agentroute train router-r1 --config …`, with and without --gpu
        for gpu in (False, True):
            RouterR1TrainConfig.from_yaml(path, gpu=gpu).check()
    else:  # `agentroute train ROUTER --config …`: the recipe, its params checked against the router
        recipe = read_recipe(path)
        router = make_router(recipe["router"], **recipe_params(recipe["router"], recipe, path))
        check = getattr(router, "_check_params", None)
        if callable(check):
            check()


def test_the_shipped_bopo_recipe_loads_in_python_as_on_the_command_line() -> None:
    """Was: ``BoPOConfig.from_yaml("training/bopo.yaml")`` — "unknown fields ['dataset', 'params', 'router']"."""
    from agentroute.cli.agentic_cmd import bopo_recipe
    from agentroute.training.bopo_config import BoPOConfig

    config = BoPOConfig.from_yaml(TRAINING / "bopo.yaml")
    assert config == BoPOConfig.from_dict(bopo_recipe(TRAINING / "bopo.yaml"))
    assert config.tiers == ("mistralai/mixtral-8x7b-chat", "gpt-4-1106-preview") and config.lr == 0.002


def test_a_recipe_for_another_router_is_refused_naming_it(tmp_path: Path) -> None:
    from agentroute.training.bopo_config import BoPOConfig

    with pytest.raises(ConfigurationError, match="is for router 'knn', not 'bopo'"):
        recipe = tmp_path / "knn.yaml"
        recipe.write_text("router: knn\nparams: {k: 5}\n")
        BoPOConfig.from_yaml(recipe)
    bare = tmp_path / "bare.yaml"
    bare.write_text("steps: 2\nlr: 1e-3\n")  # a bare mapping of the fields still reads
    assert BoPOConfig.from_yaml(bare).steps == 2


def test_the_shipped_bopo_recipe_trains_on_the_cli_and_the_saved_router_routes(tmp_path: Path, data_dir: Path) -> None:
    """The shipped recipe, its loop sizes cut to seconds, through `agentroute train bopo`; the folder
    loads with load_router, as the docs say."""
    from agentroute.loading import load_router
    from agentroute.routers.bopo import BoPORouter
    from agentroute.training.bopo_config import BoPOConfig

    recipe = yaml.safe_load((TRAINING / "bopo.yaml").read_text())
    small = {"iterations": 2, "tasks_per_iteration": 8, "group_size": 2, "sft_epochs": 2, "boundary_rollouts": 2, "sweep": 2}
    recipe["params"]["config"].update(small)
    (tmp_path / "bopo.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp_path / "bopo"
    done = subprocess.run(
        [sys.executable, "-m", "agentroute", "train", "bopo", "--dataset", f"routerbench:{data_dir / 'routerbench'}",
         "--config", str(tmp_path / "bopo.yaml"), "--limit", "60", "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr
    router = load_router(out)
    assert isinstance(router, BoPORouter)
    assert router.config_ == BoPOConfig.from_yaml(TRAINING / "bopo.yaml").replace(**small)
    assert router.fit_summary().startswith("bopo: tiers mistralai/mixtral-8x7b-chat < gpt-4-1106-preview")


def test_the_learning_doc_recipe_snippet_runs_from_the_repository_root() -> None:
    import re

    root = TRAINING.parent
    blocks = re.findall(r"^ *```python\n(.*?)^ *```", (root / "docs" / "learning.md").read_text(), re.S | re.M)
    snippet = next(b for b in blocks if "BoPOConfig.from_yaml" in b)
    done = subprocess.run([sys.executable, "-c", snippet + "\nprint(router.resolved_config().iterations, config.steps)"],
                          cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["20", "3"]


@pytest.mark.parametrize(("config", "says"), [
    ("lr: -1", "bopo: BoPOConfig: 'lr' must be a finite number > 0 (got -1) — the default is 2e-3"),  # was: BoPOConfig.lr must be
    ("stepz: 3", "bopo: BoPOConfig: unknown fields ['stepz']"),
])
def test_a_bad_bopo_config_in_a_recipe_is_refused_before_the_data_is_read(tmp_path: Path, config: str, says: str) -> None:
    """Was: the dataset was read (and said so) first; the error came from the fit."""
    recipe = tmp_path / "bopo.yaml"
    recipe.write_text(f"router: bopo\nparams:\n  config:\n    {config}\n")
    done = subprocess.run([sys.executable, "-m", "agentroute", "train", "bopo", "--dataset", "routerbench:/nonexistent",
                           "--config", str(recipe), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: recipe {recipe} line 3: {says}"), done.stderr
    assert done.stdout == ""

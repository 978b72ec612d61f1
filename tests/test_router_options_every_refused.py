"""Every router names each option it refuses in one line, in one wording (``check_range``'s), on the
command line too (``eval --routers``: exit 2, one line, before any data is read).

Was: stack, ant-colony, graph-planner, bopo and explore stopped at the first bad option (stack with
``l2=-1:folds=0`` named only ``l2``), and the same rule read three ways ('lr' must be > 0,
'c' must be a number > 0, 'val_fraction' (got 1) must be in [0, 1)).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from agentroute.errors import ConfigurationError
from agentroute.routers import make_router


def _eval_refuses(spec: str) -> str:
    """The one line ``agentroute eval --routers SPEC`` exits 2 with (a dataset that does not exist:
    the options must be refused before it is read)."""
    proc = subprocess.run(
        [sys.executable, "-m", "agentroute", "eval", "--dataset", "routerbench:/nonexistent.csv", "--routers", spec],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_stack_names_every_bad_option_on_the_command_line() -> None:
    line = _eval_refuses("stack:l2=-1:folds=0:validation_fraction=2")
    assert line.endswith(
        "stack: 'folds' must be an integer ≥ 1 (got 0); "
        "'validation_fraction' must be a finite number in (0, 1) (got 2); "
        "'l2' must be a finite number ≥ 0 or None (got -1)"
    ), line


def test_ant_colony_names_every_bad_option() -> None:
    with pytest.raises(ConfigurationError) as info:
        make_router("ant-colony", intent="none", alpha=-1, rho=2, ants=0, tau_min=5)
    assert str(info.value) == (
        "ant-colony: 'alpha' must be a finite number ≥ 0 (got -1); 'rho' must be a finite number in [0, 1] (got 2); "
        "'ants' must be an integer ≥ 1 (got 0); need 0 < tau_min ≤ tau_init ≤ tau_max (got 5, 1.0, 10.0)"
    )


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        (
            "stack",
            {"bases": "knn,nope", "base_params": {"knn": {"k": 0}}, "l2": -1},
            "stack: 'bases': unknown router 'nope'",
        ),
        ("stack", {"base_params": {"knn": {"k": 0}}, "folds": 0}, "stack: 'base_params': knn: 'k' must be an integer ≥ 1 (got 0); 'folds'"),
        (
            "explore",
            {"base": "nope", "epsilon": 2},
            "explore: 'base' 'nope': unknown router 'nope'; known: ",
        ),
    ],
)
def test_nested_options_are_named_with_the_rest(name: str, params: dict, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        make_router(name, **params)
    assert message in str(info.value) and "\n" not in str(info.value)
    if name == "explore":
        assert str(info.value).endswith("; 'epsilon' must be a finite number in [0, 1] (got 2)")
    if name == "stack" and "l2" in params:
        assert "'l2' must be a finite number ≥ 0 or None (got -1)" in str(info.value)


needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs the [ml] extra")


@needs_torch
def test_graph_planner_names_every_bad_option_ppo_ones_included() -> None:
    with pytest.raises(ConfigurationError) as info:
        make_router("graph-planner", hidden=0, clip=1.5, ppo_epochs=0, memory_tau=0, id_dropout=2)
    assert str(info.value) == (
        "graph-planner: 'hidden' must be an integer ≥ 1 (got 0); 'clip' must be a finite number in (0, 1) (got 1.5); "
        "'ppo_epochs' must be an integer ≥ 1 (got 0); 'memory_tau' must be a finite number > 0 (got 0); "
        "'id_dropout' must be a finite number in [0, 1] (got 2)"
    )


@needs_torch
def test_bopo_names_threshold_and_config() -> None:
    with pytest.raises(ConfigurationError) as info:
        make_router("bopo", threshold=0, config={"nope": 1})
    message = str(info.value)
    assert message.startswith("bopo: 'threshold' must be a finite number in (0, 1] (got 0); ") and "\n" not in message
    assert "; BoPOConfig: unknown fields ['nope']" in message  # the config's own fields last: what follows is its


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("logreg", {"c": 0}, "logreg: 'c' must be a finite number > 0 (got 0)"),
        ("per-task", {"intent_c": 0}, "per-task: 'intent_c' must be a finite number > 0 (got 0)"),
        ("kg-gnn", {"val_fraction": 1}, "kg-gnn: 'val_fraction' must be a finite number in [0, 1) (got 1)"),
        ("kg-gnn", {"dropout": 1}, "kg-gnn: 'dropout' must be a finite number in [0, 1) (got 1)"),
    ],
)
def test_one_wording_for_one_rule(name: str, params: dict, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        make_router(name, **params)
    if "install" in str(info.value):
        pytest.skip("needs the [ml] extra")
    assert str(info.value) == message


def test_a_router_r1_recipe_names_every_value_refused_on_the_command_line(tmp_path, monkeypatch) -> None:
    """Was: the first section's first bad value alone (grpo's learning_rate; sft, reward, loop unsaid).
    The recipe's own rules need no TRL: it is not imported (seconds) to refuse them."""
    monkeypatch.setitem(sys.modules, "trl", None)  # an import of trl fails
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "pool: default\ndata: {train: 50}\n"
        "grpo: {max_steps: 0, learning_rate: -1, per_device_train_batch_size: 4, num_generations: 4}\n"
        "sft: {epochs: 0}\nreward: {alpha: 2}\nloop: {turn_tokens: 0, top_p: 0}\n"
    )
    from typer.testing import CliRunner

    from agentroute.cli import app

    done = CliRunner().invoke(app, ["train", "router-r1", "--config", str(recipe), "--out", str(tmp_path / "o")])
    assert done.exit_code == 2, done.output[-2000:]
    (line,) = done.output.strip().splitlines()
    assert line.endswith(
        "grpo: 'learning_rate' must be a finite number in (0, 1] (got -1); 'max_steps' must be a finite number ≥ 1 (got 0); "
        "sft: 'epochs' must be a finite number ≥ 1 (got 0); reward: 'alpha' must be a finite number in [0, 1] (got 2); "
        "loop: 'turn_tokens' must be an integer ≥ 1 (got 0); 'top_p' must be a finite number in (0, 1] (got 0)"
    ), line


def test_every_unknown_option_and_every_wrong_type_is_named_on_the_command_line() -> None:
    """Was: the first unknown option alone (``knn takes no parameter kk``; ``shrinkge`` unsaid)."""
    line = _eval_refuses("knn:kk=1:shrinkge=2")
    assert line.endswith(
        "knn takes no parameters kk, shrinkge (it takes: cost_weight, k, shrinkage, query_chars); "
        "did you mean 'kk' → 'k', 'shrinkge' → 'shrinkage'?"
    ), line
    with pytest.raises(ConfigurationError) as info:
        make_router("knn", k="a", shrinkage="b")
    assert str(info.value) == "knn: k='a' (str) is not int; shrinkage='b' (str) is not float"

"""Every training recipe is read by one reader, ``$VARS`` expanded from the environment: the Router-R1
recipe (``train router-r1 --config``, ``RouterR1TrainConfig.from_yaml``) and ``BoPOConfig.from_yaml``
as ``train ROUTER --config`` always did."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def test_train_router_r1_expands_vars_in_its_recipe(tmp_path: Path) -> None:
    """Was: "questions not found at $H67_QUESTIONS/q.json" — the variable read as text."""
    recipe = tmp_path / "r1.yaml"
    recipe.write_text("data: {path: $H67_QUESTIONS/q.json, train: 1}\n")
    done = subprocess.run([sys.executable, "-m", "agentroute", "train", "router-r1", "--config", str(recipe), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "H67_QUESTIONS": str(tmp_path / "nowhere")})
    assert done.returncode == 2, done.stderr
    assert f"questions not found at {tmp_path / 'nowhere' / 'q.json'}" in done.stderr.replace("\n", ""), done.stderr


def test_router_r1_config_from_python_expands_vars_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agentroute.routers.router_r1.trainer import RouterR1TrainConfig

    monkeypatch.setenv("H67_DATA", "/data/questions.jsonl")
    recipe = tmp_path / "r1.yaml"
    recipe.write_text("data: {path: ${H67_DATA}, train: 3}\n")
    assert RouterR1TrainConfig.from_yaml(recipe).data == {"path": "/data/questions.jsonl", "train": 3}


def test_bopo_config_from_yaml_expands_vars_to_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable's value is read as YAML after expansion: ``lr: $LR`` with LR=2e-3 is the number."""
    from agentroute.training import BoPOConfig

    monkeypatch.setenv("H67_LR", "2e-3")
    recipe = tmp_path / "bopo.yaml"
    recipe.write_text("router: bopo\nparams:\n  config:\n    lr: $H67_LR\n")
    assert BoPOConfig.from_yaml(recipe).lr == pytest.approx(2e-3)


def test_an_unset_variable_is_left_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agentroute.training.recipe_file import read_recipe_file

    monkeypatch.delenv("H67_NOT_SET", raising=False)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data: {path: $H67_NOT_SET/q.json}\n")
    assert read_recipe_file(recipe) == {"data": {"path": "$H67_NOT_SET/q.json"}}

"""`agentroute train`: fit a router by name on a dataset or on the memory, save it, load it back."""

import json

from typer.testing import CliRunner

from agentroute.cli import app
from agentroute.loading import load_router
from tests.helpers import logged_memory

runner = CliRunner()


def test_train_on_a_dataset_then_load_the_saved_router(tmp_path, data_dir):
    out = tmp_path / "strongest"
    result = runner.invoke(app, ["train", "strongest", "--dataset", f"routerbench:{data_dir / 'routerbench'}", "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "router.json").read_text())
    assert manifest["router"] == "strongest" and manifest["format_version"] == 1
    router = load_router(str(out))
    assert router.quality_["gpt-4-1106-preview"] > router.quality_["mistralai/mistral-7b-chat"]


def test_train_from_the_memory_uses_scored_trajectories(tmp_path):
    url = f"sqlite:///{tmp_path}/m.db"
    logged_memory(url, 30)
    result = runner.invoke(app, ["train", "strongest", "--from", url, "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "30 trajectories" in result.output
    quality = load_router(str(tmp_path / "r")).quality_
    assert set(quality) == {"executor:small:direct", "executor:large:direct"}  # agent keys; random tried both
    assert quality["executor:large:direct"] == 1.0 and quality["executor:small:direct"] < 1.0  # small is wrong on odd queries


def test_train_errors_are_clear(tmp_path):
    result = runner.invoke(app, ["train", "nope", "--dataset", "routerbench:/nowhere", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown router 'nope'" in result.output
    result = runner.invoke(app, ["train", "strongest", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--from MEMORY_URL or --dataset" in result.output

"""A router saved by ``agentroute train`` takes options after a colon in every command, as a
registered name does: ``eval --routers runs/knn:cost_weight=0.5`` was an "unknown router
'runs/knn'" while ``ask --router runs/knn:cost_weight=0.5`` worked."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from agentroute.cli import app
from agentroute.eval.harness import make_eval_router, split_router_spec


def test_split_takes_an_existing_path_whole_and_splits_options_off_a_directory(tmp_path):
    odd = tmp_path / "a:b"
    odd.mkdir()
    assert split_router_spec(str(odd)) == (str(odd), {})
    assert split_router_spec(f"{tmp_path}/knn:cost_weight=0.5") == (f"{tmp_path}/knn", {"cost_weight": 0.5})
    assert split_router_spec("knn:k=40") == ("knn", {"k": 40})


def test_eval_takes_options_on_a_saved_router_directory(data_dir, tmp_path):
    from agentroute import make_router
    from agentroute.eval.datasets import load_dataset

    bench = f"routerbench:{data_dir / 'routerbench'}"
    make_router("per-task").fit(load_dataset(bench, limit=100).train).save(tmp_path / "pt")
    spec = f"{tmp_path / 'pt'}:cost_weight=0.5"
    name, router = make_eval_router(spec)
    assert (name, router.cost_weight) == (spec, 0.5)
    res = CliRunner().invoke(
        app, ["eval", "--dataset", bench, "--limit", "100", "--routers", f"cheapest,{spec}", "--no-peers", "--json",
              "--out", str(tmp_path / "run")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)["routers"]}
    assert rows[spec]["error"] is None and rows[spec]["aiq"] > 0

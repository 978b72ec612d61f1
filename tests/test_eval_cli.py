"""``agentroute eval`` through the real CLI app."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from agentroute.cli import app
from agentroute.cli.errors import EXIT_BAD_INPUT

runner = CliRunner()


def test_eval_prints_a_table_and_writes_results(data_dir, tmp_path):
    out = tmp_path / "run"
    res = runner.invoke(
        app, ["eval", "--dataset", f"routerbench:{data_dir / 'routerbench'}", "--routers", "cheapest,strongest",
              "--no-peers", "--out", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "AIQ" in res.output and "strongest" in res.output and "gpt-4-1106-preview" in res.output
    assert {p.name for p in out.iterdir()} == {"results.json", "results.csv", "curves.png"}
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[0].startswith("name,mode,aiq,aiq_best_anchor") and len(rows) == 3


def test_eval_json_prints_only_the_object(data_dir, tmp_path):
    res = runner.invoke(
        app, ["eval", "--dataset", f"dcrouter:{data_dir / 'llmrouter'}", "--routers", "cheapest,strongest",
              "--json", "--out", str(tmp_path), "--output-tokens", "128", "--no-peers"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert (data["dataset"], data["n_test"]) == ("dcrouter", 500)
    assert round(data["oracle"]["accuracy"], 3) == 0.743
    assert data["notes"]["output_tokens_assumed"] == 128
    assert [r["name"] for r in data["routers"]] == ["cheapest", "strongest"]
    assert all(r["curve"] for r in data["routers"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "routerbench:/no/such/dir"], "does not exist"),
        (["--dataset", "sqlbench:/tmp"], "unknown dataset 'sqlbench'; known: dcrouter"),
        (
            ["--dataset", "routerbench", "--routers", "cheapest,telepathy"],
            "unknown router 'telepathy'; known:",
        ),
        (["--dataset", "routerbench", "--routers", " , "], "--routers is empty"),
    ],
)
def test_bad_input_exits_with_the_bad_input_code_and_a_message(args, message, tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("AGENTROUTE_DATA", str(data_dir))
    res = runner.invoke(app, ["eval", *args, "--out", str(tmp_path)])
    assert res.exit_code == EXIT_BAD_INPUT
    assert message in " ".join(res.output.split())


def test_eval_takes_a_trained_router_directory_and_warns_when_it_does_not_fit(data_dir, tmp_path):
    """Issue 12: ``eval --routers DIR`` evaluates a router saved by ``train`` as it was trained."""
    from agentroute import make_router
    from agentroute.eval.datasets import load_dataset

    data = load_dataset(f"routerbench:{data_dir / 'routerbench'}", limit=200)
    make_router("per-task").fit(data.train).save(tmp_path / "pt")
    res = runner.invoke(
        app, ["eval", "--dataset", f"routerbench:{data_dir / 'routerbench'}", "--limit", "200", "--routers",
              f"cheapest,{tmp_path / 'pt'}", "--no-peers", "--json", "--out", str(tmp_path / "run")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)["routers"]}
    assert rows[str(tmp_path / "pt")]["error"] is None and rows[str(tmp_path / "pt")]["aiq"] > rows["cheapest"]["aiq"]
    dc = load_dataset(f"dcrouter:{data_dir / 'llmrouter'}", limit=50)  # other models: the router does not fit
    make_router("per-task").fit(dc.train).save(tmp_path / "dc")
    res = runner.invoke(
        app, ["eval", "--dataset", f"routerbench:{data_dir / 'routerbench'}", "--limit", "50", "--routers",
              str(tmp_path / "dc"), "--no-peers", "--out", str(tmp_path / "run2")],
    )  # fmt: skip
    assert res.exit_code == 2 and "does not fit" in res.output


def test_a_mistyped_router_name_gets_a_suggestion():
    """A typo listed every router and left the user to find the one meant."""
    from agentroute import make_router
    from agentroute.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match=r"unknown router 'knnn' \(did you mean 'knn'\?\); known: "):
        make_router("knnn")

"""The evaluation harness as a researcher calls it: from Python and through ``agentroute eval``,
with the inputs people get wrong (a string for the router list, a level in percent, a negative
seed or resample count) and the small cases (one router, ties, three queries)."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from agentroute.cli import app
from agentroute.cli.errors import EXIT_BAD_INPUT
from agentroute.errors import ConfigurationError
from agentroute.eval.datasets import load_dataset
from agentroute.eval.harness import evaluate

runner = CliRunner()


@pytest.fixture(scope="module")
def small(data_dir):
    return load_dataset(f"routerbench:{data_dir / 'routerbench'}", limit=40)


def _finite(obj) -> bool:  # noqa: ANN001
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_finite(v) for v in obj)
    return True


def test_a_string_of_router_names_is_read_as_the_cli_reads_it(small):
    """``evaluate(data, "knn")`` evaluated routers 'k', 'n', 'n' (``unknown router 'k'``)."""
    one = evaluate(small, "cheapest", peers=False, n_boot=20, progress=False)
    assert [r.name for r in one.routers] == ["cheapest"]
    two = evaluate(small, "cheapest, strongest", peers="knn", n_boot=20, progress=False)
    assert [r.name for r in two.routers] == ["cheapest", "strongest", "knn"]
    assert two.peers == ["knn"] and two.reference == "knn"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"level": 90}, "level must be a coverage in (0, 1)"),
        ({"level": 0.0}, "level must be a coverage in (0, 1)"),
        ({"n_boot": -5}, "n_boot must be"),
        ({"seed": -1}, "seed must be a non-negative integer"),
    ],
)
def test_bad_harness_arguments_fail_before_any_router_runs(small, kwargs, message):
    fitted = []
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        evaluate(small, ["cheapest"], peers=False, progress=False, on_router=fitted.append, **kwargs)
    assert fitted == []


def test_a_negative_seed_is_bad_input_not_a_traceback(data_dir, tmp_path):
    """``eval --seed -1 --limit 20`` died in numpy's SeedSequence (traceback, exit 1)."""
    res = runner.invoke(
        app, ["eval", "--dataset", f"routerbench:{data_dir / 'routerbench'}", "--routers", "cheapest",
              "--no-peers", "--limit", "20", "--seed", "-1", "--out", str(tmp_path / "o")],
    )  # fmt: skip
    assert res.exit_code == EXIT_BAD_INPUT, res.output
    assert "seed must be a non-negative integer" in " ".join(res.output.split())
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_three_queries_one_router_and_ties_give_finite_json_and_a_plot(data_dir, tmp_path):
    out = tmp_path / "run"
    res = runner.invoke(
        app, ["eval", "--dataset", f"routerbench:{data_dir / 'routerbench'}", "--routers", "cheapest,knn",
              "--limit", "3", "--boot", "30", "--json", "--out", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["n_test"] == 3 and _finite(data)
    assert [r["name"] for r in data["routers"]] == ["cheapest", "knn", "per-task", "logreg"]
    assert all(r["error"] is None and r["vs_zero"] for r in data["routers"])
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_numpy_scalars_are_taken_for_seed_level_and_n_boot(small):
    import numpy as np

    r = evaluate(small, ["cheapest"], peers=False, seed=np.int64(1), level=np.float32(0.8), n_boot=np.int32(10), progress=False)
    assert r.boot["n_boot"] == 10 and r.routers[0].vs_zero is not None


def test_the_same_seed_gives_the_same_result(small):
    a = evaluate(small, ["knn"], peers=["logreg"], n_boot=50, seed=3, progress=False).model_dump()
    b = evaluate(small, ["knn"], peers=["logreg"], n_boot=50, seed=3, progress=False).model_dump()
    for r in (*a["routers"], *b["routers"]):
        r.pop("fit_s"), r.pop("route_us")
    assert a == b


def test_the_quality_axis_fits_the_single_models_without_routers_and_keeps_a_zero_whole(small, tmp_path):
    """Without a router the axis started at 0 (not below the weakest model); a model at 0 was cut in half."""
    pytest.importorskip("matplotlib")
    from agentroute.eval.plots import _quality_limits, plot_curves

    none = evaluate(small, [], peers=False, n_boot=0, progress=False)
    lowest = min(s.accuracy for s in none.single_models)
    assert lowest > 0.1 and _quality_limits(none)[0] == pytest.approx(lowest - 0.05)
    assert plot_curves(none, tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    zero = none.model_copy(deep=True)
    zero.single_models[0].accuracy = 0.0
    assert _quality_limits(zero)[0] < 0.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([0.5, 0.5], [1]), "2 predictions but 1 outcomes"),  # was numpy's IndexError on a boolean mask
        (([0.3], [1], 0), "bins must be a whole number"),  # was "'list' argument must have no negative elements"
    ],
)
def test_reliability_says_what_is_wrong_with_its_input(args, message):
    from agentroute.eval import metrics as M

    with pytest.raises(ConfigurationError, match=message):
        M.reliability(*args)


def test_two_models_that_tie_on_test_leave_apgr_empty_instead_of_failing_the_run(data_dir, tmp_path):
    """``eval --dataset routellm-mmlu --limit 3 --seed 2``: both models score 2/3 on the test queries;
    the whole evaluation stopped on "PGR undefined" (exit 2, nothing written)."""
    out = tmp_path / "run"
    res = runner.invoke(
        app, ["eval", "--dataset", f"routellm-mmlu:{data_dir / 'routellm' / 'mmlu_responses'}", "--routers",
              "cheapest,strongest", "--no-peers", "--limit", "3", "--seed", "2", "--boot", "20", "--json",
              "--out", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    accs = {s["accuracy"] for s in data["single_models"]}
    assert len(data["single_models"]) == 2 and len(accs) == 1  # the tie this test is about
    assert [(r["name"], r["apgr"], r["cpt50"], r["error"]) for r in data["routers"]] == [
        ("cheapest", None, None, None),
        ("strongest", None, None, None),
    ]
    assert [r["strong_share"] for r in data["routers"]] and _finite(data)
    assert (out / "curves.png").exists()


def test_free_models_plot_on_a_linear_cost_axis_instead_of_crashing(data_dir, tmp_path):
    """Local models logged at cost 0: ``eval`` wrote results.json, then plot_curves died on the
    minimum of an empty array (no positive cost for the log axis), a traceback with exit 1."""
    data = load_dataset(f"routerbench:{data_dir / 'routerbench'}", limit=30)
    rows = [
        {"query_id": qid, "query": q, "agent": m, "score": float(table.scores[i, j]), "cost_usd": 0.0, "split": split}
        for split, table in (("train", data.train), ("test", data.test))
        for i, (qid, q) in enumerate(zip(table.query_ids, table.queries, strict=True))
        for j, m in enumerate(table.models[:3])
    ]
    path = tmp_path / "free.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "run"
    res = runner.invoke(
        app, ["eval", "--dataset", f"outcomes:{path}", "--routers", "cheapest,knn", "--no-peers", "--boot", "20",
              "--out", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "results.json").read_text())["oracle"]["cost"] == 0.0


def test_a_free_model_among_priced_ones_is_drawn_at_the_left_edge(data_dir, tmp_path):
    """A local model logged at cost 0 next to API models vanished from the log-cost plot."""
    pytest.importorskip("matplotlib")
    import numpy as np

    from agentroute.eval.plots import _cost_axis, plot_curves

    data = load_dataset(f"routerbench:{data_dir / 'routerbench'}", limit=40)
    rows = [
        {"query_id": qid, "query": q, "agent": m, "score": float(table.scores[i, j]),
         "cost_usd": 0.0 if j == 0 else float(table.costs[i, j]), "split": split}
        for split, table in (("train", data.train), ("test", data.test))
        for i, (qid, q) in enumerate(zip(table.query_ids, table.queries, strict=True))
        for j, m in enumerate(table.models[:4])
    ]  # fmt: skip
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = evaluate(load_dataset(f"outcomes:{path}"), ["cheapest"], peers=False, n_boot=0, progress=False)
    costs = np.array([s.cost for s in result.single_models])
    assert (costs == 0).sum() == 1
    log, lo, hi, edge = _cost_axis(costs)
    assert log and 0 < lo < edge < costs[costs > 0].min() and hi > costs.max()
    assert _cost_axis(costs[costs > 0])[1] == pytest.approx(costs[costs > 0].min() / 1.5)
    assert plot_curves(result, tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_docs_harness_example_runs_as_written(data_dir, tmp_path, monkeypatch, capsys):
    """docs/eval.md's ``evaluate`` example: the printed line and the files it says it writes."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "eval.md").read_text()
    blocks = [b.split("```", 1)[0] for b in doc.split("```python\n")[1:]]
    example = next(b for b in blocks if "evaluate(data" in b)
    monkeypatch.setenv("AGENTROUTE_DATA", str(data_dir))
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "docs/eval.md", "exec"), {})
    assert "logreg 0.852 [0.035, 0.022, 0.053]" in capsys.readouterr().out
    assert {p.name for p in (tmp_path / "runs" / "my-eval").iterdir()} == {"results.json", "results.csv", "curves.png"}


def test_agentic_eval_refuses_a_negative_seed_with_a_message(data_dir):
    """``eval --agentic --seed -1`` died in numpy's SeedSequence while building the tasks (traceback, exit 1)."""
    from agentroute.eval.agentic import evaluate_agentic

    with pytest.raises(ConfigurationError, match="seed must be a non-negative integer"):
        evaluate_agentic(load_dataset(f"routerbench:{data_dir / 'routerbench'}", limit=30), ["cheapest"], seed=-1)
    res = runner.invoke(
        app, ["eval", "--agentic", "--dataset", f"routerbench:{data_dir / 'routerbench'}", "--routers", "cheapest", "--seed", "-1"]
    )
    assert res.exit_code == EXIT_BAD_INPUT, res.output
    assert "seed must be a non-negative integer" in " ".join(res.output.split())


def test_agentic_eval_reads_a_string_of_router_names_as_the_cli_does(data_dir):
    """``evaluate_agentic(data, "cheapest")`` looked for routers 'c', 'h', 'e', …"""
    from agentroute.eval.agentic import evaluate_agentic

    data = load_dataset(f"routerbench:{data_dir / 'routerbench'}", limit=30)
    result = evaluate_agentic(data, "cheapest, strongest", steps=2)
    names = [row["name"] for row in result.to_dict()["rows"]]
    assert names[:2] == ["cheapest", "strongest"]


def test_routers_with_the_same_curve_share_one_line_and_each_curve_starts_at_its_own_anchor(small):
    """Two routers with one curve: the one drawn last hid the other, and the legend listed both as
    if both were visible. Each curve started at the first of the models tied for cheapest, not at
    the model its AIQ is anchored at."""
    pytest.importorskip("matplotlib")
    import numpy as np

    from agentroute.eval.plots import curves_figure

    result = evaluate(small, ["cheapest", "knn"], peers=False, n_boot=0, progress=False)
    twin = result.router("knn").model_copy(update={"name": "knn-again"})
    result.routers.append(twin)
    labels = [t.get_text() for t in curves_figure(result).axes[0].get_legend().get_texts()]
    assert any(t.startswith("knn = knn-again (AIQ") for t in labels), labels
    assert not any(t.startswith("knn (AIQ") or t.startswith("knn-again (AIQ") for t in labels), labels

    # tie the two cheapest models; a router anchored at the second one starts its curve there
    tied = result.model_copy(deep=True)
    order = np.argsort([s.cost for s in tied.single_models])
    first, second = (tied.single_models[i] for i in order[:2])
    second.cost = first.cost
    second.accuracy = first.accuracy + 0.2
    knn = tied.router("knn")
    knn.anchor = int(order[1])
    tied.routers = [knn]
    ax = curves_figure(tied).axes[0]
    line = next(ln for ln in ax.get_lines() if ln.get_label().startswith("knn"))
    assert line.get_ydata()[0] == pytest.approx(second.accuracy)

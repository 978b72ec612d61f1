"""Bring your own logged outcomes: the long ``outcomes:`` format, subsets, and memory → train in one command."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from agentroute import AgentGraph
from agentroute.cli.memory_cmd import memory_app
from agentroute.errors import ConfigurationError, DatasetError
from agentroute.eval.datasets import load_dataset, load_outcomes
from agentroute.memory import SQLMemory
from agentroute.routers.explore import ExploreRouter
from tests.helpers import replay_pool

runner = CliRunner(env={"COLUMNS": "200"})


def _rows(n: int = 20, *, split: bool = True) -> list[dict]:
    rows = []
    for i in range(n):
        for model, right, cost in (("small", i % 2 == 0, 0.001), ("large", True, 0.01)):
            row = {"query_id": f"q{i}", "query": f"question {i}", "agent": f"executor:{model}:direct",
                   "score": float(right), "cost_usd": cost, "task": "even" if i % 2 == 0 else "odd",
                   "response": f"{model} says {i}"}  # fmt: skip
            if split:
                row["split"] = "test" if i >= 15 else "train"
            rows.append(row)
    return rows


def _write(path: Path, rows: list[dict]) -> Path:
    import pandas as pd

    frame = pd.DataFrame(rows)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_outcomes_file_in_every_format_loads_the_same_table(tmp_path, suffix):
    data = load_dataset(f"outcomes:{_write(tmp_path / f'o{suffix}', _rows())}")
    # agent keys stay agent keys (roles are distinct targets); a router looks up role-free columns too
    assert data.name == "outcomes" and data.models == ["executor:small:direct", "executor:large:direct"]
    assert (len(data.train), len(data.test)) == (15, 5)
    assert data.test.task_types[0] == "odd" and data.test.responses[0][1] == "large says 15"
    np.testing.assert_allclose(data.train.scores[:4, 0], [1, 0, 1, 0])
    np.testing.assert_allclose(data.train.costs[0], [0.001, 0.01])
    assert data.notes["scores"] == "as given"


def test_tokens_and_prices_stand_in_for_cost_and_scores_outside_0_1_are_rescaled(tmp_path):
    rows = [{"query": f"q{i}", "model": m, "score": s, "tokens_in": 100, "tokens_out": 10, "input_price": p, "output_price": p}
            for i in range(10) for m, s, p in (("a", -0.5 + i * 0.1, 1.0), ("b", 2.0, 10.0))]  # fmt: skip
    data = load_outcomes(_write(tmp_path / "o.csv", rows), test_fraction=0.2)
    assert data.notes["scores"] == "rescaled (min-max) from [-0.5, 2] to [0, 1]"
    every = np.concatenate([data.train.scores, data.test.scores])
    assert every.min() == 0.0 and every.max() == 1.0
    np.testing.assert_allclose(data.train.costs[0], [110 / 1e6, 1100 / 1e6])
    kept = load_outcomes(tmp_path / "o.csv", rescale="none")
    assert kept.notes["scores"] == "as given" and np.nanmin(kept.train.scores) < 0


def test_bandit_logs_train_but_cannot_be_replayed(tmp_path):
    rows = [r for r in _rows(split=False) if (int(r["query_id"][1:]) % 2 == 0) == ("small" in r["agent"])]
    with pytest.raises(DatasetError, match="eval --from MEMORY_URL"):
        load_outcomes(_write(tmp_path / "o.jsonl", rows))
    data = load_outcomes(tmp_path / "o.jsonl", require_test=False)
    assert (len(data.train), len(data.test)) == (20, 0) and np.isnan(data.train.scores).sum() == 20


def test_bad_outcome_files_are_named(tmp_path):
    path = tmp_path / "o.jsonl"
    path.write_text('{"query": "x"}\n')
    with pytest.raises(DatasetError, match="o.jsonl"):
        load_outcomes(path)
    with pytest.raises(ConfigurationError, match="rescale"):
        load_outcomes(path, rescale="sometimes")


def test_limit_and_sample_keep_a_seeded_subset(tmp_path):
    path = _write(tmp_path / "o.jsonl", _rows(40, split=False))
    full = load_dataset(f"outcomes:{path}")
    small = load_dataset(f"outcomes:{path}", limit=5)
    assert (len(small.train), len(small.test)) == (5, 5) and "limit 5" in small.notes["subset"]
    assert set(small.train.query_ids) <= set(full.train.query_ids)
    half = load_dataset(f"outcomes:{path}", sample=0.5)
    assert len(half.train) == round(0.5 * len(full.train))
    assert load_dataset(f"outcomes:{path}", limit=5).train.query_ids == small.train.query_ids  # seeded
    with pytest.raises(ConfigurationError, match="sample"):
        load_dataset(f"outcomes:{path}", sample=1.5)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_memory_export_outcomes_then_train_in_one_command(tmp_path, suffix):
    from agentroute.cli import app as cli
    from agentroute.loading import load_router

    url = f"sqlite:///{tmp_path}/m.db"
    with SQLMemory(url) as memory:
        graph = AgentGraph("one").add_role("executor", prompt="p")
        app_ = graph.compile(pool=replay_pool(), router=ExploreRouter(base="cheapest", epsilon=1.0), memory=memory)
        asyncio.run(app_.arun_many([{"query": f"question {i}", "query_id": f"q{i}"} for i in range(40)]))
    out = tmp_path / f"outcomes{suffix}"
    result = runner.invoke(memory_app, ["export", "--format", "outcomes", "--out", str(out), "--memory", url])
    assert result.exit_code == 0, result.output
    assert "wrote 40 outcome rows" in result.output
    if suffix == ".jsonl":  # every row, in whatever order the store keeps tasks that ran concurrently
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert sorted(row["query_id"] for row in rows) == sorted(f"q{i}" for i in range(40))
        assert all(row["agent"].startswith("executor:") and 0 < row["propensity"] <= 1 for row in rows)
    result = CliRunner().invoke(cli, ["train", "strongest", "--dataset", f"outcomes:{out}", "--out", str(tmp_path / "r"), "--limit", "1000"])
    assert result.exit_code == 0, result.output  # bandit logs: every query in train
    assert "outcomes: 40 train queries × 2 models" in result.output
    assert set(load_router(str(tmp_path / "r")).quality_) == {"executor:small:direct", "executor:large:direct"}
    train = load_outcomes(out, require_test=False).train
    assert train.propensity is not None and train.weighted  # the logged propensities come back as weights
    result = CliRunner().invoke(cli, ["train", "strongest", "--from", url, "--out", str(tmp_path / "r"), "--sample", "0.5"])
    assert result.exit_code == 0, result.output
    assert "20 trajectories (seeded subset of 40)" in result.output
    # from the memory, the targets are agent keys (role:model:strategy)
    assert set(load_router(str(tmp_path / "r")).quality_) == {"executor:small:direct", "executor:large:direct"}


# -- a cost must be a finite number ≥ 0 (nan: not logged) -------------------------------------------
def _cost_table(bad: float) -> None:
    from agentroute.outcomes import OutcomeTable

    OutcomeTable(
        query_ids=["q0", "q1"], queries=["first question", "second question"], models=["small", "large"],
        scores=np.array([[1.0, 1.0], [0.0, 1.0]]), costs=np.array([[0.001, np.nan], [0.001, bad]]),
    )  # fmt: skip


@pytest.mark.parametrize("bad", [np.inf, -np.inf, -0.5])
def test_an_infinite_or_negative_cost_is_refused_naming_the_row_and_the_model(bad):
    # was: accepted; knn, logreg and per-task then gave 'large' utility −inf and never routed there, silently
    with pytest.raises(ConfigurationError) as err:
        _cost_table(bad)
    message = str(err.value)
    assert "'large'" in message and "'q1'" in message and "table row 2" in message and "second question" in message
    assert "finite number ≥ 0" in message and repr(float(bad)) in message
    _cost_table(np.nan)  # a missing cost is still nan (not logged), and a free call 0
    _cost_table(0.0)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_train_from_an_outcomes_file_with_an_infinite_cost_exits_2_naming_the_file_and_row(tmp_path, suffix):
    from agentroute.cli import app as cli

    rows = _rows(split=False)
    rows[7]["cost_usd"] = float("inf")  # query q3, the large model; JSON writes it as Infinity, CSV as inf
    path = _write(tmp_path / f"o{suffix}", rows)
    with pytest.raises(DatasetError, match=r"a cost must be a finite number ≥ 0 \(row 8: inf\), at most 1e\+09 USD a call"):
        load_outcomes(path, require_test=False)
    result = CliRunner(env={"COLUMNS": "300"}).invoke(
        cli, ["train", "knn", "--dataset", f"outcomes:{path}", "--out", str(tmp_path / "r")]
    )
    out = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert f"{path}: a cost must be a finite number ≥ 0 (row 8: inf)" in out
    assert not (tmp_path / "r").exists()

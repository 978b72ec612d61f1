"""``agentroute eval`` of a router saved by ``agentroute train`` says when the test split holds
queries it was trained on (was: silence, and figures that flattered it — trained with ``--seed 3``
and evaluated with the default ``--seed 0``, a kNN router matched the best model at $0.0034 a query
instead of its held-out $0.0052). ``train`` records digests of its training query texts in
``router.json``; ``eval`` counts the test queries among them, warns, and writes the count into
``results.json`` (``trained_on_test``)."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import numpy as np

from agentroute.eval.datasets import RoutingDataset, load_dataset
from agentroute.graph import AgentGraph
from agentroute.memory import SQLMemory
from agentroute.outcomes import OutcomeTable
from agentroute.routers.base import MANIFEST, make_router
from tests.test_cli_first_hour import agentroute

FAST = ("--no-peers", "--boot", "0", "--out", "out")


def _logs(path: Path, n: int = 120) -> Path:
    """Two models on ``n`` queries, no split column (``eval`` and ``train`` draw a seeded split)."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["query_id", "query", "model", "score", "cost_usd"])
        for i in range(n):
            for model, cost in (("small", 0.001), ("big", 0.01)):
                writer.writerow([f"q{i}", f"topic {i % 7} question {i}?", model, int(model == "big" or i % 7 < 3), cost])
    return path


def _one_line(stderr: str) -> str:
    return " ".join(stderr.split())


def _trained_on_test(out: Path) -> dict[str, int | None]:
    return {r["name"]: r["trained_on_test"] for r in json.loads((out / "results.json").read_text())["routers"]}


def _held_out_texts(spec: str, *, train_seed: int, eval_seed: int) -> tuple[int, int]:
    """(test queries of the ``eval_seed`` split that are in the ``train_seed`` split's train, test size)."""
    trained = {q.strip() for q in load_dataset(spec, seed=train_seed).train.queries}
    test = load_dataset(spec, seed=eval_seed).test.queries
    return sum(q.strip() in trained for q in test), len(test)


def test_a_router_trained_with_another_seed_is_warned_about_with_its_count(tmp_path: Path) -> None:
    _logs(tmp_path / "logs.csv")
    done = agentroute("train", "knn", "--dataset", "logs.csv", "--seed", "3", "--out", "r", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    run = agentroute("eval", "--dataset", "logs.csv", "--routers", "r,cheapest", *FAST, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    seen, total = _held_out_texts(str(tmp_path / "logs.csv"), train_seed=3, eval_seed=0)
    assert seen > 0
    err = _one_line(run.stderr)
    assert f"warning: router r was trained on {seen} of the {total} test queries ({seen / total:.0%})" in err, err
    assert "evaluate with --seed 3, or train with --seed 0" in err, err
    assert len([line for line in run.stderr.splitlines() if "was trained on" in line]) == 1, run.stderr
    assert _trained_on_test(tmp_path / "out") == {"r": seen, "cheapest": None}
    with (tmp_path / "out" / "results.csv").open() as fh:  # the spreadsheet says it too
        assert {row["name"]: row["trained_on_test"] for row in csv.DictReader(fh)} == {"r": str(seen), "cheapest": ""}


def test_a_router_trained_with_the_evals_seed_is_not_warned_about(tmp_path: Path) -> None:
    _logs(tmp_path / "logs.csv")
    done = agentroute("train", "knn", "--dataset", "logs.csv", "--seed", "3", "--out", "r", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    run = agentroute("eval", "--dataset", "logs.csv", "--seed", "3", "--routers", "r,cheapest", *FAST, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "trained on" not in run.stderr and "cannot be checked" not in run.stderr, run.stderr
    assert _trained_on_test(tmp_path / "out") == {"r": 0, "cheapest": None}


def test_a_router_trained_from_a_memory_that_logged_the_test_queries_is_warned_about(tmp_path: Path) -> None:
    n = 30  # the memory served the first 30 of the dataset's 120 queries
    texts = [f"topic {i % 7} question {i}?" for i in range(n)]
    table = OutcomeTable([f"q{i}" for i in range(n)], texts, ["small", "big"],
                         np.array([[float(i % 7 < 3), 1.0] for i in range(n)]), np.array([[0.001, 0.01]] * n))  # fmt: skip
    url = f"sqlite:///{tmp_path / 'm.db'}"
    with SQLMemory(url) as memory:
        graph = AgentGraph("served").add_role("executor", prompt="answer")
        pool = RoutingDataset("two", table, table).replay_pool("train")
        router = make_router("random", seed=0)
        asyncio.run(graph.compile(pool=pool, router=router, memory=memory).arun_many([{"query": q, "query_id": i} for q, i in zip(texts, table.query_ids, strict=True)]))
    done = agentroute("train", "knn", "--from", url, "--out", "r", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    _logs(tmp_path / "logs.csv")
    run = agentroute("eval", "--dataset", "logs.csv", "--routers", "r", *FAST, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    test = load_dataset(str(tmp_path / "logs.csv"), seed=0).test.queries
    seen = sum(q in texts for q in test)
    assert seen > 0
    err = _one_line(run.stderr)
    assert f"warning: router r was trained on {seen} of the {len(test)} test queries" in err, err
    assert f"logged in the memory it was trained on ({url})" in err, err
    assert _trained_on_test(tmp_path / "out") == {"r": seen}


def test_a_router_saved_without_a_record_is_said_to_be_unchecked_once(tmp_path: Path) -> None:
    logs = _logs(tmp_path / "logs.csv")
    data = load_dataset(str(logs), seed=3)
    for name in ("a", "b"):  # saved as before the record was kept: no "trained_on"
        saved = make_router("knn").fit(data.train).save(tmp_path / name)
        manifest = json.loads((saved / MANIFEST).read_text())
        del manifest["trained_on"]
        (saved / MANIFEST).write_text(json.dumps(manifest))
    run = agentroute("eval", "--dataset", "logs.csv", "--routers", "a,b", *FAST, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    notes = [line for line in _one_line(run.stderr).split("note: ") if "cannot be checked" in line]
    assert len(notes) == 1 and notes[0].startswith("a, b: saved without a record"), run.stderr
    assert _trained_on_test(tmp_path / "out") == {"a": None, "b": None}

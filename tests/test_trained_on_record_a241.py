"""The training record (``trained_on`` in ``router.json``) where Python users meet it: a router saved
by ``agentroute train --seed 3`` and evaluated in Python (``agentroute.eval.evaluate``) on the
seed-0 split is warned about, with the count in its rows, as ``agentroute eval`` does (was: no
warning, ``trained_on_test`` None); ``Router.load`` reads the record back, so a router loaded, served
and saved again keeps it (was: lost, then "cannot be checked"); a router fitted again in Python
records that fit's queries (was: none). Real RouteLLM MMLU logs (``$AGENTROUTE_DATA``), 600 queries
a split: the seed-3 train split holds 25 of the seed-0 test split's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from agentroute.eval.datasets import RoutingDataset, load_dataset
from agentroute.routers import get_router_class, make_router, router_names
from agentroute.routers.base import MANIFEST, Router
from tests.test_cli_first_hour import ROOT, agentroute
from tests.test_routers_user_paths import QUICK

LIMIT = "600"


@pytest.fixture(scope="module")
def spec(data_dir: Path) -> str:
    return f"routellm-mmlu:{data_dir / 'routellm' / 'mmlu_responses'}"


def _train(kind: str, spec: str, cwd: Path, out: str, seed: int = 3) -> Path:
    done = agentroute("train", kind, "--dataset", spec, "--limit", LIMIT, "--seed", str(seed), "--out", out, cwd=cwd)
    assert done.returncode == 0, done.stderr[-2000:]
    return cwd / out


@pytest.fixture(scope="module")
def knn_dir(tmp_path_factory: pytest.TempPathFactory, spec: str) -> Path:
    """A kNN router trained by ``agentroute train --seed 3`` (tests read it, never write it)."""
    return _train("knn", spec, tmp_path_factory.mktemp("trained"), "r")


def _overlap(spec: str, *, train_seed: int, eval_seed: int) -> tuple[int, int]:
    """(test queries of the ``eval_seed`` split that are in the ``train_seed`` split's train, test size)."""
    trained = {q.strip() for q in load_dataset(spec, seed=train_seed, limit=int(LIMIT)).train.queries}
    test = load_dataset(spec, seed=eval_seed, limit=int(LIMIT)).test.queries
    return sum(q.strip() in trained for q in test), len(test)


def _python(code: str, cwd: Path) -> dict[str, Any]:
    """``code`` in a Python process of its own (as a notebook's kernel); what it printed last, as JSON."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _evaluate(spec: str, routers: list[str], seed: int, cwd: Path) -> dict[str, Any]:
    """``evaluate`` of ``routers`` on the ``seed`` split, in a fresh process: the warnings it gave
    (category, message) and each row's ``trained_on_test``, AIQ and fit time."""
    return _python(
        f"""
        import json, warnings
        from agentroute.eval import evaluate
        from agentroute.eval.datasets import load_dataset
        data = load_dataset({spec!r}, seed={seed}, limit={LIMIT})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = evaluate(data, {routers!r}, seed={seed}, peers=False, n_boot=0, progress=False)
        print(json.dumps({{
            "warnings": [[w.category.__name__, str(w.message)] for w in caught if "record" in str(w.message)
                         or "trained on" in str(w.message)],
            "rows": {{r.name: [r.trained_on_test, r.aiq, r.fit_s, r.error] for r in result.routers}},
        }}))
        """,
        cwd,
    )


def test_python_evaluate_of_a_router_trained_with_another_seed_warns_with_its_count(
    knn_dir: Path, spec: str
) -> None:
    seen, total = _overlap(spec, train_seed=3, eval_seed=0)
    assert seen > 0
    knob = "r:cost_weight=0.5"  # the saved router at a knob: evaluated as trained too (was: refit)
    got = _evaluate(spec, ["r", knob, "cheapest"], seed=0, cwd=knn_dir.parent)
    said = f"was trained on {seen} of the {total} test queries ({seen / total:.0%})"
    assert [c for c, _ in got["warnings"]] == ["TrainedOnTestWarning"] * 2, got["warnings"]
    for (_, message), name in zip(got["warnings"], ["r", knob], strict=True):
        assert message.startswith(f"router {name} {said}"), message
        assert "evaluate with --seed 3, or train with --seed 0" in message, message
    rows = got["rows"]
    assert {name: row[0] for name, row in rows.items()} == {"r": seen, knob: seen, "cheapest": None}
    assert rows[knob][2] is None and rows[knob][1] == rows["r"][1], rows  # not refit: the trained router's figures


def test_python_evaluate_notes_a_saved_router_without_a_record(knn_dir: Path, spec: str, tmp_path: Path) -> None:
    old = Router.load(knn_dir).save(tmp_path / "old")  # then its record dropped, as an older agentroute saved it
    manifest = json.loads((old / MANIFEST).read_text())
    manifest.pop("trained_on", None)
    (old / MANIFEST).write_text(json.dumps(manifest))
    got = _evaluate(spec, ["old"], seed=0, cwd=tmp_path)
    assert len(got["warnings"]) == 1 and got["warnings"][0][0] == "UncheckedRecordWarning", got["warnings"]
    assert got["warnings"][0][1].startswith("old: saved without a record of its training queries"), got["warnings"]
    assert got["rows"]["old"][0] is None


@pytest.mark.parametrize("kind", ["knn", "ant-colony"])
def test_a_trained_router_loaded_served_and_saved_again_keeps_its_record(kind: str, spec: str, tmp_path: Path) -> None:
    """``train`` → ``Router.load`` → serve ten train queries (``observe``) → ``save`` elsewhere → evaluate
    that copy in a fresh process: the same warning as the router ``train`` saved."""
    trained = _train(kind, spec, tmp_path, "r")
    served = _python(
        f"""
        import asyncio, json
        from agentroute.eval.datasets import load_dataset
        from agentroute.graph import AgentGraph
        from agentroute.routers.base import Router
        data = load_dataset({spec!r}, seed=3, limit={LIMIT})
        router = Router.load("r")
        before = router.get_state().get("updates")
        graph = AgentGraph("served").add_role("executor", prompt="answer")
        train = data.train
        asyncio.run(graph.compile(pool=data.replay_pool("train"), router=router).arun_many(
            [{{"query": q, "query_id": i}} for q, i in zip(train.queries[:10], train.query_ids[:10])]))
        router.save("again")
        print(json.dumps([before, Router.load("again").get_state().get("updates")]))
        """,
        tmp_path,
    )
    if kind == "ant-colony":  # it learned online from what it served
        assert served[1] > served[0], served
    record = json.loads((trained / MANIFEST).read_text())["trained_on"]
    assert json.loads((tmp_path / "again" / MANIFEST).read_text()).get("trained_on") == record
    seen, total = _overlap(spec, train_seed=3, eval_seed=0)
    got = _evaluate(spec, ["r", "again"], seed=0, cwd=tmp_path)
    assert [c for c, _ in got["warnings"]] == ["TrainedOnTestWarning"] * 2, got["warnings"]
    assert got["warnings"][1][1].startswith(f"router again was trained on {seen} of the {total} test queries")
    assert {name: row[0] for name, row in got["rows"].items()} == {"r": seen, "again": seen}


def test_a_router_fitted_again_in_python_records_the_new_fit(knn_dir: Path, spec: str, tmp_path: Path) -> None:
    """``fit`` learns afresh in every router, so the record is the new fit's queries: refitted on the
    seed-0 train split, the router is held out from the seed-0 test split and trained on part of the
    seed-3 one's."""
    router = Router.load(knn_dir)
    router.fit(load_dataset(spec, seed=0, limit=int(LIMIT))).save(tmp_path / "refit")
    held_out = _evaluate(spec, ["refit"], seed=0, cwd=tmp_path)
    assert held_out["warnings"] == [] and held_out["rows"]["refit"][0] == 0, held_out
    seen, total = _overlap(spec, train_seed=0, eval_seed=3)
    assert seen > 0
    got = _evaluate(spec, ["refit"], seed=3, cwd=tmp_path)
    assert len(got["warnings"]) == 1, got["warnings"]
    message = got["warnings"][0][1]
    assert message.startswith(f"router refit was trained on {seen} of the {total} test queries"), message
    assert "fitted on routellm-mmlu's train split (seeded split by distinct prompt (seed 0" in message, message
    assert got["rows"]["refit"][0] == seen


def _learned() -> list[str]:
    return [n for n in router_names() if get_router_class(n).learned]


@pytest.fixture(scope="module")
def small(spec: str) -> RoutingDataset:
    return load_dataset(spec, seed=3, limit=40)


@pytest.mark.parametrize("kind", _learned())
def test_every_learned_router_keeps_its_record_through_load_and_save(kind: str, small: RoutingDataset, tmp_path: Path) -> None:
    router = make_router(kind, **QUICK.get(kind, {})).fit(small)
    assert router.trained_on_ is not None and router.trained_on_["queries"] == len({q.strip() for q in small.train.queries})
    first = router.save(tmp_path / "first")
    loaded = Router.load(first)
    assert loaded.trained_on_ == router.trained_on_
    second = loaded.save(tmp_path / "second")
    assert json.loads((second / MANIFEST).read_text())["trained_on"] == json.loads((first / MANIFEST).read_text())["trained_on"]

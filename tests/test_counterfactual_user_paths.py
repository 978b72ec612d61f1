"""``agentroute eval --from MEMORY``'s user paths: logs as serving leaves them, estimated as users ask."""

from __future__ import annotations

import asyncio
import json
import re
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from agentroute import AgentGraph
from agentroute.cli import app as app_cli
from agentroute.eval.counterfactual import estimate_router, evaluate_from_memory, logged_tasks
from agentroute.memory import SQLMemory
from agentroute.pool import LoggedOutcome, ModelPool, ReplayBackend
from agentroute.routers import base as routers_base
from agentroute.routers import make_router
from agentroute.routers.base import Router, decide, require_candidates
from agentroute.routers.explore import ExploreRouter
from agentroute.types import Decision, RouteContext
from tests.helpers import POOL_YAML, flaky_outcomes, log_explored, replay_pool


def _serve(url: str, items: list[dict], n: int, router: Router | None = None) -> None:
    with SQLMemory(url) as memory:
        app = AgentGraph("one").add_role("executor", prompt="p").compile(
            pool=replay_pool(n), router=router or ExploreRouter(base="cheapest", epsilon=0.5, seed=3), memory=memory
        )
        asyncio.run(app.arun_many(items, concurrency=4))


class _Memorise(Router):
    """A learned router that records the queries it was fitted on and the ones it was asked about."""

    name = "memorise-probe"
    fitted_on: ClassVar[set[str]] = set()
    asked: ClassVar[set[str]] = set()

    def fit(self, data):  # type: ignore[no-untyped-def]
        type(self).fitted_on |= {t.task.query for t in data}
        self.fitted_ = True
        return self

    def route(self, ctx: RouteContext) -> Decision:
        require_candidates(self, ctx)
        type(self).asked.add(ctx.query)
        return decide(self, ctx, 0, why="first")


@pytest.mark.parametrize("with_id", [True, False])
def test_a_query_served_twice_is_fitted_on_or_evaluated_on_never_both(tmp_path, monkeypatch, with_id):
    """The held-out split drew tasks: a query served twice was learned from on one side and judged
    on the other (with 30 queries × 2, every evaluated query had been fitted on). Without a
    ``query_id`` (``serve``'s clients rarely send one) the query's text names it."""
    monkeypatch.setitem(routers_base._REGISTRY, _Memorise.name, _Memorise)
    monkeypatch.setattr(_Memorise, "fitted_on", set())
    monkeypatch.setattr(_Memorise, "asked", set())
    url = f"sqlite:///{tmp_path}/m.db"
    items = [
        {"query": f"question {i}", "task_id": f"t-{i:02d}-{r}"} | ({"query_id": f"q{i}"} if with_id else {})
        for i in range(30)
        for r in range(2)
    ]
    _serve(url, items, 30)
    result = evaluate_from_memory(url, [_Memorise.name], pool=replay_pool(30), n_boot=50)
    assert result["fitted_on"] + result["evaluated_on"] == 60
    assert _Memorise.fitted_on and _Memorise.asked
    assert not _Memorise.fitted_on & _Memorise.asked
    assert result["fitted_on"] % 2 == 0  # both tasks of a query on the same side


def _flaky_pool(n: int) -> ModelPool:
    """:func:`replay_pool`'s models, but ``large`` has no answer (its call fails) on odd queries."""
    cards = list(replay_pool(n))
    outcomes = [
        LoggedOutcome(f"q{i}", m, float(m == "large" or i % 2 == 0), 0.001 if m == "small" else 0.01, "a")
        for i in range(n)
        for m in ("small", "large")
        if not (m == "large" and i % 2)
    ]
    return ModelPool(cards, {"replay": ReplayBackend(outcomes)})


def test_a_graph_with_two_routed_roles_gets_dr_and_a_note_under_the_table(tmp_path):
    """A graph with two routed roles: DR was left out for every router, the table showing "—" with
    no word why. DR now models the first routed step and importance-weights the second, and the
    note under the table says so, with the count."""
    url = f"sqlite:///{tmp_path}/m.db"
    with SQLMemory(url) as memory:
        graph = AgentGraph("two").add_role("planner", prompt="plan").add_role("executor", prompt="do")
        app = graph.add_edge("planner", "executor").compile(
            pool=replay_pool(12), router=ExploreRouter(base="cheapest", epsilon=0.5, seed=3), memory=memory
        )
        asyncio.run(app.arun_many([{"query": f"question {i}", "query_id": f"q{i}", "task_id": f"t{i:02d}"} for i in range(12)]))
    pool = tmp_path / "pool.yaml"
    pool.write_text(POOL_YAML)
    done = CliRunner().invoke(app_cli, ["eval", "--from", url, "--pool", str(pool), "--routers", "cheapest"])
    assert done.exit_code == 0, done.output
    text = " ".join(done.output.split())  # rich wraps long lines at the runner's width
    assert "note: 12 of the 12 tasks have several routed steps (a graph with several routed roles" in text, done.output
    row = next(line for line in done.output.splitlines() if line.startswith("│ cheapest"))
    assert "—" not in row, row  # DR's score and cost are given


def test_a_call_that_fell_back_is_part_of_the_decision_it_follows(tmp_path):
    """``large`` fails on odd queries and the dispatcher falls back to ``small`` (wrong there), under
    the first decision's evidence. That fallback was read as a second routed step: ``fixed:large``
    has weight 0 on it, so only the even queries counted — SNIPS 1.000 for a true 0.5 — and DR was
    left out for every router."""
    url = f"sqlite:///{tmp_path}/m.db"
    n = 60
    with SQLMemory(url) as memory:
        app = AgentGraph("one").add_role("executor", prompt="p").compile(
            pool=_flaky_pool(n), router=ExploreRouter(base="cheapest", epsilon=1.0, seed=3), memory=memory
        )
        asyncio.run(app.arun_many([{"query": f"question {i}", "query_id": f"q{i}", "task_id": f"t{i:02d}"} for i in range(n)]))
        trajectories = memory.trajectories()
    assert any(len(t.steps) == 2 for t in trajectories)  # fallbacks happened
    tasks, _ = logged_tasks(trajectories)
    assert all(len(t.steps) == 1 for t in tasks)
    est = estimate_router(make_router("fixed", model="large"), tasks, n_boot=100, seed=1)
    for how in ("snips", "dr"):  # truth: 1 on even queries, 0 on odd ones (small after large failed)
        lo, hi = est.intervals[f"score_{how}"]
        assert lo <= 0.5 <= hi and abs(est.score[how] - 0.5) < 0.2, (how, est.score[how], lo, hi)


def test_a_handful_of_logged_queries_is_flagged(tmp_path):
    """Three logged tasks, one left after fitting ``strongest`` on the others: the table printed
    DR 1.000 [1.000, 1.000] — an interval from one query — with no warning (``eval --dataset``
    warns under 30 test queries)."""
    url = f"sqlite:///{tmp_path}/m.db"
    _serve(url, [{"query": f"question {i}", "query_id": f"q{i}", "task_id": f"t{i}"} for i in range(3)], 3)
    result = evaluate_from_memory(url, ["strongest"], pool=replay_pool(3), n_boot=40)
    assert result["evaluated_on"] == 1
    assert result["warnings"][0].startswith("only 1 logged queries to estimate on (the other 2 tasks fitted")


def test_the_table_keeps_its_router_names_and_figures_in_a_pipe(tmp_path):
    """``agentroute eval --from … | cat`` (or a file, or an 80-column terminal) printed
    ``fixed:…`` and ``$0.001…`` in place of the names and figures; ``eval --dataset`` did not."""
    url = f"sqlite:///{tmp_path}/m.db"
    _serve(url, [{"query": f"question {i}", "query_id": f"q{i}", "task_id": f"t{i:02d}"} for i in range(12)], 12)
    pool = tmp_path / "pool.yaml"
    pool.write_text(POOL_YAML)
    args = ["eval", "--from", url, "--pool", str(pool), "--routers", "cheapest,fixed:model=large"]
    done = CliRunner().invoke(app_cli, args, env={"COLUMNS": "80"})  # what rich takes for a pipe
    assert done.exit_code == 0, done.output
    table = done.output[done.output.index("counterfactual estimates") :]
    assert "…" not in table
    row = next(line for line in table.splitlines() if "fixed:model=large" in line)
    assert re.search(r"\$0\.\d{6} \[\$0\.\d{6}, \$0\.\d{6}\]", row), row


def test_a_failed_task_counts_as_score_0(tmp_path):
    """``small`` has no answer on odd queries and nothing is tried after it: those tasks fail
    unscored. They were skipped as "unscored", so ``cheapest`` (always small) was estimated on the
    even queries alone — 1.000 for a true 0.5."""
    url = f"sqlite:///{tmp_path}/m.db"
    log_explored(url, 40, flaky_outcomes(40), max_fallbacks=0)
    result = evaluate_from_memory(url, ["cheapest", "fixed:model=large"], pool=replay_pool(40), n_boot=100)
    assert result["tasks"] == 40 and result["failed_scored_0"] > 0
    by = {r["router"]: r for r in result["routers"]}
    assert abs(by["cheapest"]["score"]["dr"] - 0.5) < 0.2, by["cheapest"]["score"]
    assert by["fixed:model=large"]["score"]["snips"] == 1.0  # large never fails


def test_logs_mixing_an_explorer_with_another_router_are_estimated_on_the_explorers_tasks(tmp_path):
    """Traffic served by ``cheapest`` (no propensities) beside an exploring router's: the first is
    skipped and said so in words (the header printed the raw dict, whose ``failed_step`` meant a
    zero propensity, not a failed step)."""
    url = f"sqlite:///{tmp_path}/m.db"
    _serve(url, [{"query": f"question {i}", "query_id": f"q{i}", "task_id": f"c{i:02d}"} for i in range(10)], 40, router=make_router("cheapest"))
    _serve(url, [{"query": f"question {i}", "query_id": f"q{i}", "task_id": f"e{i:02d}"} for i in range(10, 40)], 40)
    pool = tmp_path / "pool.yaml"
    pool.write_text(POOL_YAML)
    done = CliRunner().invoke(app_cli, ["eval", "--from", url, "--pool", str(pool), "--routers", "cheapest", "--json"])
    result = json.loads(done.output)
    assert result["tasks"] == 30 and result["skipped"] == {"unscored": 0, "no_propensity": 10, "zero_propensity": 0}
    done = CliRunner().invoke(app_cli, ["eval", "--from", url, "--pool", str(pool), "--routers", "cheapest"])
    text = " ".join(done.output.split())
    assert "skipped 0 unscored, 10 routed without propensities, 0 with a zero propensity" in text, done.output


def test_a_constant_cost_is_estimated_exactly_by_dr(tmp_path):
    """Every ``large`` call costs $0.01: DR's q̂ shrank that toward the mean of both models' costs, so
    DR printed fixed:large's cost off the constant (≈ 1% at 200 tasks) with an interval that could
    leave it out (92–94% of seeds, benchmarks/counterfactual_coverage.py --constant-cost)."""
    url = f"sqlite:///{tmp_path}/m.db"
    _serve(url, [{"query": f"question {i}", "query_id": f"q{i}", "task_id": f"t{i:02d}"} for i in range(40)], 40)
    with SQLMemory(url) as memory:
        tasks, _ = logged_tasks(memory.trajectories())
    for model, cost in (("large", 0.01), ("small", 0.001)):
        est = estimate_router(make_router("fixed", model=model), tasks, n_boot=100, seed=1)
        assert est.cost["dr"] == pytest.approx(cost, rel=1e-9), model
        assert est.intervals["cost_dr"] == pytest.approx([cost, cost], rel=1e-9), model

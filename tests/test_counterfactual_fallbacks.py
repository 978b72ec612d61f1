"""``eval --from`` on logs with fallbacks among several agents: the re-route is a logged decision."""

from __future__ import annotations

import asyncio

import pytest

from agentroute import AgentGraph
from agentroute.eval.counterfactual import estimate_router, logged_tasks
from agentroute.memory import SQLMemory
from agentroute.pool import LoggedOutcome, ModelCard, ModelPool, ReplayBackend
from agentroute.routers import make_router
from agentroute.routers.explore import ExploreRouter
from tests.fixtures_memory import memory_url  # noqa: F401 - the fixture: SQLite, PostgreSQL
from tests.helpers import replay_pool

N = 90


def _pool() -> ModelPool:
    """``small`` (cheapest) never answers; ``mid`` is always right, ``large`` always wrong."""
    cards = [
        ModelCard(id="small", backend="replay", input_price=0.1, output_price=0.1, tier="small"),
        ModelCard(id="mid", backend="replay", input_price=1, output_price=1, tier="medium"),
        ModelCard(id="large", backend="replay", input_price=10, output_price=10, tier="large"),
    ]
    outcomes = [
        LoggedOutcome(f"q{i}", m, float(m == "mid"), 0.01, "a") for i in range(N) for m in ("mid", "large")
    ]
    return ModelPool(cards, {"replay": ReplayBackend(outcomes)})


def _log(url: str) -> list:
    with SQLMemory(url) as memory:
        app = (
            AgentGraph("one")
            .add_role("executor", prompt="p")
            .compile(pool=_pool(), router=ExploreRouter(base="cheapest", epsilon=1.0, seed=5), memory=memory)
        )
        asyncio.run(
            app.arun_many(
                [{"query": f"question {i}", "query_id": f"q{i}", "task_id": f"t{i:03d}"} for i in range(N)]
            )
        )
        return memory.trajectories()


def test_a_fallback_among_several_agents_is_weighted_by_its_own_logged_propensity(memory_url):  # noqa: F811
    """``cheapest`` picks ``small``, which fails, then falls back to the cheapest of the rest, ``mid``:
    its true score is 1. The dispatcher recorded the fallback under the first decision and dropped
    the re-route's, so the fallback's draw (mid or large, ½ each) had no logged propensity: the
    estimate took ``cheapest`` to fall back as the logger did — SNIPS ≈ 0.5 (on 8160c6b: weight 0)."""
    trajectories = _log(memory_url)
    fell_back = [t for t in trajectories if len(t.steps) == 2]
    assert fell_back
    for t in fell_back:  # the fallback's step carries the re-route: two candidates, ½ each
        evidence = t.steps[1].decision.evidence
        assert t.steps[1].agent.key in {a.key for a in t.steps[1].decision.agents}
        assert sorted(evidence["probabilities"]) == ["executor:large:direct", "executor:mid:direct"]
        assert evidence["propensity"] == 0.5
    tasks, _ = logged_tasks(trajectories)
    est = estimate_router(make_router("cheapest"), tasks, n_boot=100, seed=1)
    assert est.score["snips"] == 1.0  # only small → mid has weight, and mid is always right
    assert est.score["dr"] is not None  # DR of the first decision, the fallback importance-weighted
    assert est.notes.startswith(f"{len(fell_back)} of the {N} tasks have several routed steps (a graph with")


def test_a_role_given_one_model_is_no_routed_step(tmp_path):
    """A planner routed between two models, then an executor given one: the executor's step is no
    choice (propensity 1 under every router), so each task has one routed step, and no note."""
    url = f"sqlite:///{tmp_path}/m.db"
    with SQLMemory(url) as memory:
        graph = (
            AgentGraph("two")
            .add_role("planner", prompt="plan")
            .add_role("executor", prompt="do", models=["large"])
        )
        app = graph.add_edge("planner", "executor").compile(
            pool=replay_pool(40), router=ExploreRouter(base="cheapest", epsilon=0.5, seed=3), memory=memory
        )
        items = [{"query": f"question {i}", "query_id": f"q{i}", "task_id": f"t{i:02d}"} for i in range(40)]
        asyncio.run(app.arun_many(items))
        tasks, _ = logged_tasks(memory.trajectories())
    assert len(tasks) == 40 and all(len(t.steps) == 1 and t.steps[0].context.role == "planner" for t in tasks)
    est = estimate_router(make_router("cheapest"), tasks, n_boot=50, seed=1)
    # large, the executor, is always right (1 up to rounding: the bootstrap sums in matrix products)
    assert est.score["dr"] == pytest.approx(1.0, abs=1e-12) and not est.notes

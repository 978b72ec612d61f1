"""Bandit feedback inside ``fit``: importance-weighted targets from logged propensities (issue 12, req 3).

The logging policy here is context-dependent — ε-greedy around a rule that sends even ("easy")
queries to ``small`` and odd ("hard") ones to ``large`` — so ``small`` is mostly logged where it is
right. ``small`` is right on even queries only (true mean 0.5), ``large`` always. Unweighted, the
logged cells of ``small`` average ≈ 0.85; importance-weighted they estimate the truth.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from agentroute import AgentGraph, make_router
from agentroute.errors import ConfigurationError
from agentroute.memory import SQLMemory
from agentroute.outcomes import OutcomeTable, propensity_weights
from agentroute.routers.base import Router, decide
from agentroute.routers.explore import ExploreRouter
from agentroute.testing import sample_outcomes
from agentroute.types import Agent, Decision, RouteContext
from tests.helpers import replay_pool

N = 400
SMALL, LARGE = "executor:small:direct", "executor:large:direct"
EPSILON = 0.3  # p(greedy) = 0.85, p(other) = 0.15


class EvenToSmall(Router):
    """The logging policy's greedy rule (not under test): even query ids to small, odd to large."""

    name = "even-to-small"

    def route(self, ctx: RouteContext) -> Decision:
        want = "small" if int(str(ctx.query_id).lstrip("q")) % 2 == 0 else "large"
        return decide(self, ctx, next(i for i, a in enumerate(ctx.candidates) if a.model == want), why="rule")


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('bandit')}/m.db"
    with SQLMemory(url) as memory:
        app = AgentGraph("one").add_role("executor", prompt="p").compile(
            pool=replay_pool(N), router=ExploreRouter(base=EvenToSmall(), epsilon=EPSILON, seed=5), memory=memory
        )
        items = [{"query": f"question {i}", "query_id": f"q{i}", "task_id": f"bandit-{i:04d}"} for i in range(N)]
        asyncio.run(app.arun_many(items, concurrency=16))
        memory.flush()
    with SQLMemory(url) as memory:
        return memory.trajectories(with_score=True)


def _small_mean(table: OutcomeTable) -> float:
    j = table.models.index(SMALL)
    logged = ~np.isnan(table.scores[:, j])
    w = table.weights[:, j]
    return float((w[logged] * table.scores[logged, j]).sum() / w[logged].sum())


def test_propensities_become_clipped_normalised_cell_weights(trajectories):
    table = OutcomeTable.from_trajectories(trajectories)
    assert table.weighted and set(np.unique(table.propensity[~np.isnan(table.propensity)]).round(3)) == {0.85, 0.15}
    w = table.weights
    assert np.all(w[np.isnan(table.scores)] == 0)
    for j in range(len(table.models)):  # mean 1 over each column's logged cells
        assert w[~np.isnan(table.scores[:, j]), j].mean() == pytest.approx(1.0)
    j = table.models.index(SMALL)
    low, high = np.isclose(table.propensity[:, j], 0.15), np.isclose(table.propensity[:, j], 0.85)
    assert low.sum() > 10 and high.sum() > 10
    assert w[low, j][0] / w[high, j][0] == pytest.approx(0.85 / 0.15)
    clipped = OutcomeTable.from_trajectories(trajectories, importance_clip=2.0).weights
    assert clipped[low, j][0] / clipped[high, j][0] == pytest.approx(2.0 * 0.85)  # 1/p clipped at 2 for p = 0.15, 1/0.85 for p = 0.85
    with pytest.raises(ConfigurationError, match="clip"):
        propensity_weights(np.array([[0.5]]), clip=0.5)


def test_weighting_undoes_the_logging_policys_selection_bias(trajectories):
    weighted = OutcomeTable.from_trajectories(trajectories)
    plain = weighted.unweighted()
    assert not plain.weighted and np.array_equal(plain.weights, ~np.isnan(plain.scores))
    assert _small_mean(plain) > 0.75  # small logged mostly where it is right
    # the truth: right on half the queries (one seeded realisation of ~30 hard cells: ±0.1)
    assert abs(_small_mean(weighted) - 0.5) < 0.12


@pytest.mark.parametrize("name, params", [("strongest", {}), ("best-single", {"validation_fraction": 0.99}),
                                          ("knn", {"k": 10_000, "shrinkage": 0.0}), ("per-task", {"prior_strength": 0.0})])  # fmt: skip
def test_column_estimates_of_learned_routers_are_importance_weighted(trajectories, name, params):
    """With every neighbour (knn) or one task (per-task), a router's estimate is the column mean."""
    estimates = {}
    for how, table in (("weighted", OutcomeTable.from_trajectories(trajectories)),
                       ("plain", OutcomeTable.from_trajectories(trajectories, importance_clip=None))):  # fmt: skip
        router = make_router(name, **params).fit(table)
        if name == "strongest":
            estimates[how] = router.quality_[SMALL]
        elif name == "best-single":
            estimates[how] = router.validation_score_[SMALL]
        else:
            ctx = RouteContext(query="question 1", candidates=[Agent(model="small"), Agent(model="large")])
            estimates[how] = float(router.predict([ctx])[0][0, 0])
    assert estimates["plain"] > 0.75 and abs(estimates["weighted"] - 0.5) < 0.12, estimates


@pytest.mark.parametrize("name", ["logreg", "mlp", "mf"])
def test_model_based_routers_fit_with_the_weights(trajectories, name):
    """The queries carry no parity signal the embedding can use: a weighted fit predicts small near
    its true rate, an unweighted one near its logged rate."""
    ctxs = [RouteContext(query=f"question {i}", candidates=[Agent(model="small"), Agent(model="large")]) for i in range(N, N + 40)]
    mean = {}
    for how, clip in (("weighted", 20.0), ("plain", None)):
        router = make_router(name).fit(OutcomeTable.from_trajectories(trajectories, importance_clip=clip))
        mean[how] = float(router.predict(ctxs)[0][:, 0].mean())
    assert mean["plain"] - mean["weighted"] > 0.15, mean


def test_full_information_tables_are_unchanged():
    table = sample_outcomes(40)
    assert not table.weighted and np.array_equal(table.weights, ~np.isnan(table.scores))
    a = make_router("knn").fit(table)
    assert a.weights_ is None and a.get_state()["weighted"] is False


def test_a_weighted_router_saves_and_loads_its_weights(trajectories, tmp_path):
    router = make_router("knn").fit(trajectories)
    assert router.weighted_ and router.weights_ is not None
    again = Router.load(router.save(tmp_path / "knn"))
    ctx = RouteContext(query="question 3", candidates=[Agent(model="small"), Agent(model="large")])
    assert np.allclose(again.predict([ctx])[0], router.predict([ctx])[0])
    assert again.weighted_


def test_train_from_the_memory_says_the_fit_is_importance_weighted(tmp_path):
    from typer.testing import CliRunner

    from agentroute.cli import app as cli

    url = f"sqlite:///{tmp_path}/m.db"
    with SQLMemory(url) as memory:
        app = AgentGraph("one").add_role("executor", prompt="p").compile(
            pool=replay_pool(60), router=ExploreRouter(base=EvenToSmall(), epsilon=EPSILON, seed=2), memory=memory
        )
        asyncio.run(app.arun_many([{"query": f"question {i}", "query_id": f"q{i}"} for i in range(60)]))
    result = CliRunner(env={"COLUMNS": "300"}).invoke(cli, ["train", "knn", "--from", url, "--out", str(tmp_path / "knn")])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "knn: 2 agents, 60 logged outcomes on 60 queries; importance-weighted by the logged propensities of 60" in out
    assert "1/p clipped at 20: 0 clipped" in out

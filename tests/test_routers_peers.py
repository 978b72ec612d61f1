"""The peer routers (oracle, best-single, per-task, knn, mlp, mf, graph-router) and the learned
cascade confidence: contract details on the kit's sample table, behaviour on real RouterBench data.

Reference AIQs on the RouterBench subset test split (ROUTERS.md §8): zero router 0.823,
kNN(k=40) 0.843, per-task lookup 0.856, oracle 0.975. RouterBench tests skip cleanly without the
data (``$AGENTROUTE_DATA``) or the loader.
"""

from __future__ import annotations

import copy
import tempfile

import numpy as np
import pytest

from agentroute.errors import ConfigurationError
from agentroute.outcomes import OutcomeTable
from agentroute.routers import CascadeRouter, Router, make_router
from agentroute.routers.utility import KNOB_GRID, UtilityRouter, choose
from agentroute.testing import contexts, sample_outcomes
from agentroute.types import Agent, RouteContext, Step

GPT4 = "gpt-4-1106-preview"


# -- helpers -----------------------------------------------------------------------------------------
def drop_columns(table: OutcomeTable, columns: set[str]) -> OutcomeTable:
    keep = [j for j, m in enumerate(table.models) if m not in columns]
    return OutcomeTable(
        list(table.query_ids), list(table.queries), [table.models[j] for j in keep],
        table.scores[:, keep], table.costs[:, keep], list(table.task_types),
    )  # fmt: skip


def column_rows(table: OutcomeTable, column: str, rows: np.ndarray) -> OutcomeTable:
    j = table.models.index(column)
    return OutcomeTable(
        [table.query_ids[i] for i in rows], [table.queries[i] for i in rows], [column],
        table.scores[rows][:, [j]], table.costs[rows][:, [j]],
    )  # fmt: skip


def curve(
    router: UtilityRouter, ctxs: list[RouteContext], table: OutcomeTable
) -> tuple[np.ndarray, np.ndarray]:
    """(cost, accuracy) per λ of the knob grid, and the choices (λ × query), as the harness sweeps."""
    score, cost = router.predict(ctxs)
    cols = np.array([table.models.index(a.model) for a in ctxs[0].candidates])
    rows = np.arange(len(ctxs))
    picks = np.stack([cols[router.choose(score, cost, lam)] for lam in KNOB_GRID])
    points = np.array([[table.costs[rows, p].mean(), table.scores[rows, p].mean()] for p in picks])
    return points, picks


# -- the decision rule and the base class (no data needed) -----------------------------------------
def test_choose_is_the_argmax_of_score_minus_weighted_cost_with_ties_to_the_cheaper():
    score = np.array([[0.5, 0.5, 0.4], [0.9, 0.1, np.nan]])
    cost = np.array([[2.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert choose(score, cost, 0.0).tolist() == [1, 0]  # tie at 0.5 → cheaper; nan never wins
    assert choose(score, cost, 1.0, cost_scale=1.0).tolist() == [2, 1]
    with pytest.raises(ConfigurationError, match="cost_weight"):
        choose(score, cost, -1.0)


def test_knob_grid_reaches_where_the_cheapest_model_always_wins():
    assert len(KNOB_GRID) >= 30 and KNOB_GRID[0] == 0.0 and list(KNOB_GRID) == sorted(KNOB_GRID)
    table = sample_outcomes()
    router = make_router("knn").fit(table)
    ctxs = contexts(table, subsets=False)
    score, cost = router.predict(ctxs)
    assert (router.choose(score, cost, KNOB_GRID[-1]) == np.argmin(cost, axis=1)).all()


def test_unknown_candidates_get_the_training_mean_and_a_card_calibrated_cost():
    table = sample_outcomes()
    router = make_router("knn").fit(table)
    ctx = contexts(table, subsets=False)[0]
    new = Agent(model="brand-new")
    known_cost = ctx.costs[ctx.candidates[0].key]
    ctx.candidates = [*ctx.candidates, new]
    ctx.costs[new.key] = 2 * known_cost  # twice the card cost of "small"
    score, cost = router.predict([ctx])
    assert score[0, -1] == pytest.approx(np.mean(router.score_mean_))
    ratios = [router.cost_mean_[j] / ctx.costs[a.key] for j, a in enumerate(ctx.candidates[:-1])]
    assert cost[0, -1] == pytest.approx(2 * known_cost * np.median(ratios))
    decision = router.route(ctx)
    assert set(decision.scores) == {a.key for a in ctx.candidates}
    assert set(decision.evidence) == {"predicted_score", "predicted_cost", "offered"}


def test_predict_needs_one_shared_candidate_list():
    table = sample_outcomes()
    router = make_router("knn").fit(table)
    a, b = contexts(table, subsets=False)[:2]
    b.candidates = b.candidates[:1]
    with pytest.raises(ConfigurationError, match="share one candidate list"):
        router.predict([a, b])


def test_oracle_is_a_replay_of_its_own_table():
    table = sample_outcomes()
    oracle = make_router("oracle").fit(table)
    ctxs = contexts(table, subsets=False)
    score, cost = oracle.predict(ctxs)
    assert np.array_equal(score, table.scores) and np.array_equal(cost, table.costs)
    stranger = RouteContext(query="never logged", query_id="nope", candidates=ctxs[0].candidates)
    with pytest.raises(ConfigurationError, match="no logged outcome"):
        oracle.route(stranger)


def test_graph_router_keeps_added_llms_through_save_and_load():
    table = sample_outcomes()
    router = make_router("graph-router", epochs=20, queries_per_step=64).fit(drop_columns(table, {"large"}))
    router.add_outcomes(column_rows(table, "large", np.arange(0, 90, 3)))
    assert router.columns_[-1] == "large"
    ctxs = contexts(table, subsets=False)
    with tempfile.TemporaryDirectory() as tmp:
        loaded = Router.load(router.save(tmp))
    assert np.array_equal(router.predict(ctxs)[0], loaded.predict(ctxs)[0])


# -- RouterBench --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rb(data_dir):
    datasets = pytest.importorskip("agentroute.eval.datasets", reason="agentroute.eval not available")
    path = data_dir / "routerbench"
    if not path.is_dir():
        pytest.skip(f"no RouterBench data under {data_dir}")
    ds = datasets.load_routerbench(path)
    assert ds.train.models == ds.test.models
    return ds


@pytest.fixture(scope="module")
def metrics():
    return pytest.importorskip("agentroute.eval.metrics", reason="agentroute.eval.metrics not available")


@pytest.fixture(scope="module")
def rb_ctxs(rb) -> list[RouteContext]:
    """Test contexts as a deployment sees them: query, candidates, cards and each model's *train*
    mean cost per query (never the test row's logged cost or task label)."""
    agents = [Agent(model=m) for m in rb.test.models]
    mean_cost = np.nanmean(rb.train.costs, axis=0)
    cards = rb.cards()
    return [
        RouteContext(
            query=q,
            candidates=agents,
            query_id=rb.test.query_ids[i],
            costs={a.key: float(c) for a, c in zip(agents, mean_cost, strict=True)},
            cards=cards,
        )  # fmt: skip
        for i, q in enumerate(rb.test.queries)
    ]


@pytest.fixture(scope="module")
def fitted(rb):
    """Routers fitted once on RouterBench train, shared by the tests of this module."""
    cache: dict[str, Router] = {}

    def get(name: str) -> Router:
        if name not in cache:
            cache[name] = make_router(name, **({"seed": 0} if name in ("mlp", "mf") else {})).fit(rb.train)
        return cache[name]

    return get


@pytest.mark.parametrize("name", ["knn", "mf"])
def test_sweeping_the_predicted_matrices_gives_what_route_gives(name, fitted, rb_ctxs):
    router = fitted(name)
    ctxs = rb_ctxs[::8]
    score, cost = router.predict(ctxs)
    try:
        for lam in (0.0, KNOB_GRID[20], KNOB_GRID[30], KNOB_GRID[40]):
            picks = router.choose(score, cost, lam)
            router.set_params(cost_weight=lam)
            routed = [router.route(c).agent.key for c in ctxs]
            assert routed == [c.candidates[p].key for c, p in zip(ctxs, picks, strict=True)]
    finally:
        router.set_params(cost_weight=0.0)


@pytest.mark.parametrize("name", ["knn", "per-task", "mlp", "mf"])
def test_learned_routers_beat_the_zero_router_and_random_at_matched_cost(name, fitted, rb, rb_ctxs, metrics):
    singles = metrics.single_model_points(rb.test.scores, rb.test.costs)
    points, _ = curve(fitted(name), rb_ctxs, rb.test)
    aiq, zero = metrics.aiq(points, singles), metrics.aiq(singles, singles)
    print(f"{name}: AIQ {aiq:.4f} (zero router {zero:.4f})")
    assert aiq > zero + 0.01
    random_cost, random_acc = singles[:, 0].mean(), singles[:, 1].mean()  # uniform random routing
    assert points[points[:, 0] <= random_cost, 1].max() > random_acc + 0.05  # better, for no more


def test_knn_lands_near_the_reference(fitted, rb, rb_ctxs, metrics):
    singles = metrics.single_model_points(rb.test.scores, rb.test.costs)
    points, _ = curve(fitted("knn"), rb_ctxs, rb.test)
    assert metrics.aiq(points, singles) == pytest.approx(0.843, abs=0.015)
    assert points[:, 1].max() >= singles[:, 1].max() - 0.005  # shrinkage: reaches the best model


def test_per_task_infers_the_task_type_from_the_query_alone(fitted, rb, rb_ctxs, metrics):
    router = fitted("per-task")
    predicted = router.predict_task(rb.test.queries)
    intent_accuracy = np.mean([p == t for p, t in zip(predicted, rb.test.task_types, strict=True)])
    print(f"per-task intent accuracy on RouterBench test: {intent_accuracy:.4f}")
    assert intent_accuracy >= 0.95
    singles = metrics.single_model_points(rb.test.scores, rb.test.costs)
    points, _ = curve(router, rb_ctxs, rb.test)
    assert metrics.aiq(points, singles) == pytest.approx(0.856, abs=0.015)


def test_oracle_and_best_single_are_the_references(fitted, rb, rb_ctxs, metrics):
    oracle = make_router("oracle").fit(rb.test)  # a ceiling: fitted on the outcomes it replays
    singles = metrics.single_model_points(rb.test.scores, rb.test.costs)
    points, picks = curve(oracle, rb_ctxs, rb.test)
    assert points[0, 1] == pytest.approx(np.nanmax(rb.test.scores, axis=1).mean())
    assert metrics.aiq(points, singles) == pytest.approx(0.975, abs=0.01)
    assert fitted("best-single").best_model_ == GPT4
    assert {fitted("best-single").route(c).agent.model for c in rb_ctxs[:50]} == {GPT4}


def test_graph_router_routes_to_an_llm_unseen_in_training_without_retraining(rb, rb_ctxs, metrics):
    inductive = {"descriptor_dropout": 0.5, "lr": 1e-3, "epochs": 300, "queries_per_step": 256}
    router = make_router("graph-router", seed=0, **inductive)
    router.fit(drop_columns(rb.train, {GPT4}), cards=rb.cards())
    test10 = drop_columns(rb.test, {GPT4})
    ctxs10 = [copy.copy(c) for c in rb_ctxs]
    for c in ctxs10:
        c.candidates = [a for a in c.candidates if a.model != GPT4]
    singles10 = metrics.single_model_points(test10.scores, test10.costs)
    points, _ = curve(router, ctxs10, test10)
    assert metrics.aiq(points, singles10) > metrics.aiq(singles10, singles10) + 0.005
    weights = {k: v.clone() for k, v in router.net_.state_dict().items()}
    new = [a.model for a in rb_ctxs[0].candidates].index(GPT4)

    # zero-shot: GPT-4 is a candidate only through its card's descriptor
    zero_shot, _ = router.predict(rb_ctxs)
    assert np.isfinite(zero_shot[:, new]).all()
    assert rb_ctxs[0].candidates[new].key in router.route(rb_ctxs[0]).scores

    # few-shot (the paper's setting): 20 logged GPT-4 outcomes become its edges
    shots = np.random.default_rng(0).choice(len(rb.train), 20, replace=False)
    router.add_outcomes(column_rows(rb.train, GPT4, shots), cards=rb.cards())
    few_shot, _ = router.predict(rb_ctxs)
    assert few_shot[:, new].mean() > zero_shot[:, new].mean() + 0.03
    _, picks = curve(router, rb_ctxs, rb.test)
    chosen = picks[0] == rb.test.models.index(GPT4)  # λ = 0
    print(f"graph-router: unseen {GPT4} chosen for {chosen.mean():.1%} of test queries after 20 outcomes")
    assert chosen.mean() >= 0.02
    assert all(router.route(rb_ctxs[i]).agent.model == GPT4 for i in np.flatnonzero(chosen)[:10])
    assert all(v.equal(weights[k]) for k, v in router.net_.state_dict().items())  # no retraining


def test_learned_confidence_drives_the_threshold_cascade(rb):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    from agentroute.routers.confidence import ResponseConfidence

    scorer = ResponseConfidence(max_samples=400, seed=0).fit(rb.train)
    test = rb.test
    rng = np.random.default_rng(1)
    rows, cols = rng.choice(len(test), 150), rng.choice(len(test.models), 150)
    p = scorer.predict_proba(
        [test.queries[i] for i in rows], [test.responses[i][j] for i, j in zip(rows, cols, strict=True)],
        [test.models[j] for j in cols],
    )  # fmt: skip
    auc = sklearn_metrics.roc_auc_score(test.scores[rows, cols], p)
    print(f"response confidence AUC on 150 RouterBench test calls: {auc:.3f}")
    assert auc > 0.6
    with tempfile.TemporaryDirectory() as tmp:
        again = ResponseConfidence.load(scorer.save(tmp))
    i, j = int(rows[0]), int(cols[0])
    step = Step(task_id="t", index=0, stage="execute", agent=Agent(model=test.models[j]),
                input=test.queries[i], output=test.responses[i][j])  # fmt: skip
    assert again(step) == pytest.approx(scorer(step))
    cascade = CascadeRouter(threshold=1.0, confidence_fn=scorer).fit(rb.train)
    ctx = RouteContext(query=test.queries[i], candidates=[Agent(model=m) for m in test.models])
    assert cascade.escalate(ctx, step) is (scorer(step) < 1.0)

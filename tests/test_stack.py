"""The stacking router: combiner weights, honest fitting, save/load, and a real RouterBench slice."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pytest

from agentroute.errors import ConfigurationError
from agentroute.outcomes import OutcomeTable
from agentroute.routers import Router, make_router
from agentroute.routers.stack import StackRouter, cross_entropy, fit_combiner
from agentroute.routers.utility import KNOB_GRID, UtilityRouter
from agentroute.testing import contexts, sample_outcomes
from agentroute.types import Agent, RouteContext

# -- synthetic bases: one knows each query's success probability, one is noise --------------------
TRUE_P: dict[str, np.ndarray] = {}


class Informative(UtilityRouter):
    """Predicts each query's true success probabilities (read from :data:`TRUE_P`)."""

    name = "test-informative"

    def __init__(self, *, cost_weight: float = 0.0):
        self.cost_weight = cost_weight

    def _fit_table(self, table: OutcomeTable) -> None:
        pass

    def _predict_columns(self, ctxs: Sequence[RouteContext]) -> tuple[np.ndarray, np.ndarray]:
        return np.stack([TRUE_P[c.query] for c in ctxs]), np.tile(self.cost_mean_, (len(ctxs), 1))


class Noise(Informative):
    """Predicts a pseudo-random probability per (query, agent), unrelated to the outcomes."""

    name = "test-noise"

    def _predict_columns(self, ctxs: Sequence[RouteContext]) -> tuple[np.ndarray, np.ndarray]:
        def draw(q: str) -> np.ndarray:
            seed = int.from_bytes(hashlib.blake2b(q.encode(), digest_size=4).digest(), "little")
            return np.random.default_rng(seed).uniform(0.05, 0.95, len(self.columns_))

        return np.stack([draw(c.query) for c in ctxs]), np.tile(self.cost_mean_, (len(ctxs), 1))


def synthetic_table(n: int = 800, seed: int = 0) -> OutcomeTable:
    rng = np.random.default_rng(seed)
    queries = [f"synthetic query {i}" for i in range(n)]
    p = rng.uniform(0.05, 0.95, (n, 2))
    for q, row in zip(queries, p, strict=True):
        TRUE_P[q] = row
    return OutcomeTable(
        query_ids=[f"s{i}" for i in range(n)], queries=queries, models=["weak", "strong"],
        scores=(rng.random((n, 2)) < p).astype(float), costs=np.tile([1e-4, 1e-2], (n, 1)),
    )  # fmt: skip


def test_weights_favour_the_informative_base_over_the_noise_base():
    table = synthetic_table()
    router = StackRouter(bases=[Noise(), Informative()]).fit(table)
    noise, informative = router.weight_[:, 0], router.weight_[:, 1]
    assert np.all(informative > 0.7), router.weight_  # ≈ 1: the true logits, uncalibrated by nothing
    assert np.all(noise < 0.1), router.weight_
    loss = router.validation_loss_
    assert loss["stack"] < loss["test-noise"] - 0.05
    assert loss["stack"] <= loss["test-informative"] + 0.005
    assert [type(b) for b in router.bases_] == [Noise, Informative]  # refitted copies, not the templates


def test_fit_combiner_is_non_negative_and_falls_back_to_the_average_without_signal():
    rng = np.random.default_rng(1)
    good = rng.normal(0, 2, 500)
    y = (rng.random(500) < 1 / (1 + np.exp(-good))).astype(float)
    anti = -good + rng.normal(0, 0.1, 500)  # informative but reversed: a non-negative weight cannot use it
    w, _ = fit_combiner(np.column_stack([good, anti]), y, np.ones(500), l2=1.0)
    assert w[0] > 0.5 and w[1] < 0.05  # the reversed base is all but dropped
    w, b = fit_combiner(np.column_stack([good, anti]), np.ones(500), np.ones(500), l2=1.0)
    assert w.tolist() == [0.5, 0.5] and b == 0.0  # one class only: the prior


def test_bases_are_validated():
    table = sample_outcomes()
    with pytest.raises(ConfigurationError, match="not a utility router"):
        StackRouter(bases="cheapest").fit(table)
    with pytest.raises(ConfigurationError, match="l2"):
        StackRouter(bases="per-task", l2=-1).fit(table)
    with pytest.raises(ConfigurationError, match="validation_fraction"):
        StackRouter(bases="per-task", validation_fraction=1.5).fit(table)


# -- real fits of the default bases: serving bases use all of train; save/load ---------------------
@pytest.fixture(scope="module")
def fitted_default() -> tuple[StackRouter, OutcomeTable]:
    table = sample_outcomes(n=120)
    return StackRouter(seed=0).fit(table), table


def test_default_bases_are_refitted_on_all_of_train(fitted_default):
    router, table = fitted_default
    assert router.base_names() == ["per-task", "knn", "logreg", "mlp", "mf"]
    knn = router.bases_[1]
    assert len(knn.embeddings_) == len(table)  # the serving bases saw every training row
    assert router.weight_.shape == (3, 5) and np.all(router.weight_ >= 0)
    assert set(router.validation_loss_) == {"per-task", "knn", "logreg", "mlp", "mf", "stack"}


def test_costs_come_from_the_per_task_base(fitted_default):
    router, table = fitted_default
    ctxs = contexts(table, subsets=False)
    _, cost = router.predict(ctxs)
    assert np.array_equal(cost, router.bases_[0].predict(ctxs)[1])


def test_save_load_round_trip_gives_identical_decisions(fitted_default, tmp_path):
    router, table = fitted_default
    ctxs = contexts(table, subsets=True)
    loaded = Router.load(router.save(tmp_path / "stack"))
    assert isinstance(loaded, StackRouter) and loaded.base_names() == router.base_names()
    full = contexts(table, subsets=False)
    assert np.array_equal(router.predict(full)[0], loaded.predict(full)[0])
    for lam in (0.0, 0.1, 1.0, KNOB_GRID[-1]):
        router.set_params(cost_weight=lam)
        loaded.set_params(cost_weight=lam)
        assert [router.route(c).agent.key for c in ctxs] == [loaded.route(c).agent.key for c in ctxs]
    router.set_params(cost_weight=0.0)


def test_seeded_fits_are_identical():
    table = sample_outcomes(n=60)
    a = StackRouter(bases="per-task,knn,logreg", seed=3).fit(table)
    b = make_router("stack", bases=["per-task", "knn", "logreg"], seed=3).fit(table)
    assert np.array_equal(a.weight_, b.weight_) and np.array_equal(a.bias_, b.bias_)


# -- a RouterBench slice -----------------------------------------------------------------------------
def test_routerbench_slice_is_no_worse_than_its_worst_base(data_dir):
    """Fitted on 600 rows of RouterBench train, scored on 400 other train rows (never the test split)."""
    datasets = pytest.importorskip("agentroute.eval.datasets")
    if not (data_dir / "routerbench").is_dir():
        pytest.skip("no RouterBench data")
    ds = datasets.load_routerbench(data_dir / "routerbench")
    order = np.random.default_rng(0).permutation(len(ds.train))
    train, test = ds.train.rows(np.sort(order[:600])), ds.train.rows(np.sort(order[600:1000]))
    router = StackRouter(bases="per-task,logreg").fit(train)
    agents = [Agent(model=m) for m in test.models]
    ctxs = [RouteContext(query=q, candidates=agents) for q in test.queries]
    weights = (~np.isnan(test.scores)).astype(float).ravel()
    y = np.nan_to_num(test.scores).ravel()

    def loss(r: UtilityRouter) -> float:
        return cross_entropy(r.predict(ctxs)[0].ravel(), y, weights)

    stacked, bases = loss(router), [loss(b) for b in router.bases_]
    assert np.all((router.predict(ctxs)[0] > 0) & (router.predict(ctxs)[0] < 1))
    assert stacked <= max(bases) + 1e-9, (stacked, bases)


def test_one_validation_split_instead_of_folds():
    table = synthetic_table(n=400, seed=2)
    router = StackRouter(bases=[Noise(), Informative()], folds=1, validation_fraction=0.3, l2=1.0).fit(table)
    assert router.l2_ == 1.0 and np.all(router.weight_[:, 1] > router.weight_[:, 0])
    parts = router.held_out_parts(len(table))
    assert len(parts) == 1 and len(parts[0][1]) == 120  # 30% of 400 held out, once

"""Routing while another thread refits the router (a service that retrains in place).

Every :class:`~agentroute.routers.utility.UtilityRouter` learns on a fresh instance and swaps the
state in whole (``UtilityRouter._refit_aside``); ``route`` and ``predict`` read one version of it.
Before, routes during a refit onto a table with a new model column raised (IndexError, broadcast
ValueError: the new columns against the old arrays) — knn, logreg and stack since helper-43, mlp,
mf, per-task and graph-router until helper-47.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from agentroute.outcomes import OutcomeTable
from agentroute.routers import make_router
from agentroute.types import Agent, RouteContext

#: Small settings so that a refit takes a fraction of a second.
PARAMS: dict[str, dict[str, Any]] = {
    "knn": {},
    "logreg": {},
    "per-task": {},
    "mlp": {"epochs": 3, "hidden": 8},
    "mf": {"epochs": 3, "dim": 8},
    "graph-router": {"epochs": 3, "hidden": 8, "queries_per_step": 16, "pool": "default"},
    "kg-gnn": {"epochs": 2, "hidden_channels": 8, "num_layers": 1, "descriptors": {m: f"model {m}" for m in ("m1", "m2", "m3")}},
}


def _table(n: int, models: list[str], seed: int) -> OutcomeTable:
    rng = np.random.default_rng(seed)
    return OutcomeTable(
        query_ids=[f"q{i}" for i in range(n)],
        queries=[f"question {i} from log {seed}" for i in range(n)],
        models=models,
        scores=rng.integers(0, 2, (n, len(models))).astype(float),
        costs=np.tile(np.linspace(1.0, 0.1, len(models)), (n, 1)),
        task_types=["a" if i % 2 else "b" for i in range(n)],
    )


AGENTS = [Agent(model=m) for m in ("m1", "m2", "m3")]


def _ctx(n: int) -> RouteContext:
    return RouteContext(
        query=f"question {n % 40} from log 1", candidates=AGENTS, stage="execute",
        costs={a.key: 1.0 for a in AGENTS},
    )  # fmt: skip


OLD, NEW = _table(30, ["m1", "m2"], 1), _table(50, ["m1", "m2", "m3"], 2)


def _serve_during_refits(name: str, call: Callable[[Any, int], None], seconds: float = 2.0) -> tuple[Any, int, Counter[str]]:
    """Call ``call(router, n)`` in a loop while another thread refits the router, alternating an
    old table (two models) and a new one (a third model column): (router, refits, errors by message)."""
    old, new = OLD, NEW
    router = make_router(name, **PARAMS[name]).fit(old)
    stop = threading.Event()
    fits = [0]

    def refit() -> None:
        while not stop.is_set():
            router.fit(new if fits[0] % 2 == 0 else old)
            fits[0] += 1

    thread = threading.Thread(target=refit)
    thread.start()
    errors: Counter[str] = Counter()
    deadline, n = time.monotonic() + seconds, 0
    try:
        while time.monotonic() < deadline or fits[0] < 4:
            try:
                call(router, n)
            except Exception as exc:
                errors[f"{type(exc).__name__}: {exc}"] += 1
            n += 1
    finally:
        stop.set()
        thread.join()
    return router, fits[0], errors


@pytest.mark.parametrize("name", list(PARAMS))
def test_routes_during_refits_see_one_model_never_half_of_two(name: str) -> None:
    chosen: Counter[str] = Counter()

    def route(router: Any, n: int) -> None:  # was: IndexError / broadcast ValueError
        chosen[router.route(_ctx(n)).agent.model] += 1

    router, fits, errors = _serve_during_refits(name, route)
    assert fits >= 4 and not errors, dict(errors)
    assert sum(chosen.values()) > 0
    # the last refit learned what a fresh fit on its table learns: parameters (seeds, graph-router's
    # pool) carried over to the fresh instance, the old torch modules and arrays did not
    last = NEW if fits % 2 else OLD
    fresh = make_router(name, **PARAMS[name]).fit(last)
    assert router.get_params() == fresh.get_params() and router.columns_ == fresh.columns_
    ctxs = [_ctx(n) for n in range(6)]
    for a, b in zip(router.predict(ctxs), fresh.predict(ctxs), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["mlp", "per-task"])
def test_batch_predictions_during_refits_are_whole(name: str) -> None:
    """``predict`` (the harness's batch path) reads one version too: every row is finite and the
    cost matrix has one column per candidate."""

    def predict(router: Any, n: int) -> None:
        score, cost = router.predict([_ctx(n + i) for i in range(8)])
        assert score.shape == cost.shape == (8, 3) and np.isfinite(score).all() and np.isfinite(cost).all()

    _, fits, errors = _serve_during_refits(name, predict, seconds=1.5)
    assert fits >= 4 and not errors, dict(errors)


def test_a_refit_that_fails_midway_leaves_the_router_as_it_was() -> None:
    """A refit that fails after it began learning (here mlp's validation split, onto a table with a
    new column) leaves the old model whole (was: the new columns against the old network)."""
    router = make_router("mlp", **PARAMS["mlp"]).fit(OLD)
    before = router.predict([_ctx(0)])
    router.validation_fraction = 2.0  # set_params refuses it at once; a fit must still fail cleanly
    with pytest.raises(Exception, match="validation_fraction"):
        router.fit(NEW)
    assert router.columns_ == ["m1", "m2"]
    for a, b in zip(router.predict([_ctx(0)]), before, strict=True):
        np.testing.assert_array_equal(a, b)

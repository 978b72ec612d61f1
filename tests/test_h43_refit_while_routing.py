"""Routing while another thread refits the router (a service that retrains in place)."""

from __future__ import annotations

import threading
import time
from collections import Counter

import numpy as np
import pytest

from agentroute.outcomes import OutcomeTable
from agentroute.routers import make_router
from agentroute.types import Agent, RouteContext


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


@pytest.mark.parametrize("name", ["logreg", "knn"])
def test_routes_during_refits_see_one_model_never_half_of_two(name: str) -> None:
    old, new = _table(30, ["m1", "m2"], 1), _table(50, ["m1", "m2", "m3"], 2)
    router = make_router(name).fit(old)
    agents = [Agent(model=m) for m in ("m1", "m2", "m3")]
    stop = threading.Event()
    fits = [0]

    def refit() -> None:
        while not stop.is_set():
            router.fit(new if fits[0] % 2 == 0 else old)
            fits[0] += 1

    thread = threading.Thread(target=refit)
    thread.start()
    errors: Counter[str] = Counter()
    chosen: Counter[str] = Counter()
    deadline, n = time.monotonic() + 3.0, 0
    try:
        while time.monotonic() < deadline or fits[0] < 4:
            ctx = RouteContext(
                query=f"question {n % 40} from log 1", candidates=agents, stage="execute",
                costs={a.key: 1.0 for a in agents},
            )  # fmt: skip
            try:  # was: IndexError / broadcast ValueError from the new columns against the old arrays
                chosen[router.route(ctx).agent.model] += 1
            except Exception as exc:
                errors[f"{type(exc).__name__}: {exc}"] += 1
            n += 1
    finally:
        stop.set()
        thread.join()
    assert fits[0] >= 4 and not errors, dict(errors)
    assert sum(chosen.values()) == n


"""A router of one's own (the README's kind) in ``evaluate``: scored in serving mode, its explore
mode as its own row, and handed back in the mode it came in."""

from __future__ import annotations

import hashlib
from typing import ClassVar

import numpy as np
import pytest

from agentroute.eval.datasets import RoutingDataset
from agentroute.eval.harness import evaluate
from agentroute.outcomes import OutcomeTable
from agentroute.routers import Router
from agentroute.routers.base import Mode, decide
from agentroute.types import Decision, RouteContext


class CheapOrCoin(Router):
    """Serves the cheapest candidate; explores by a seeded coin over the candidates."""

    name = "cheap-or-coin"
    explores: ClassVar[bool] = True
    default_mode: ClassVar[Mode] = "explore"

    def route(self, ctx: RouteContext) -> Decision:
        cheapest = min(range(len(ctx.candidates)), key=ctx.cost_of)
        if not self.exploring:
            return decide(self, ctx, cheapest, why="cheapest")
        draw = int.from_bytes(hashlib.blake2b(ctx.query.encode(), digest_size=4).digest(), "little")
        return decide(self, ctx, draw % len(ctx.candidates), why="coin")


def _dataset(n: int = 40) -> RoutingDataset:
    rng = np.random.default_rng(0)

    def table(prefix: str) -> OutcomeTable:
        return OutcomeTable(
            query_ids=[f"{prefix}{i}" for i in range(n)], queries=[f"{prefix} question {i}" for i in range(n)],
            models=["small", "big"], scores=np.c_[rng.random(n) < 0.4, rng.random(n) < 0.9].astype(float),
            costs=np.tile([1e-4, 1e-2], (n, 1)),
        )  # fmt: skip

    return RoutingDataset(name="own", train=table("tr"), test=table("te"))


@pytest.mark.parametrize("start", ["explore", "serve", "train"])
def test_evaluate_scores_serving_reports_explore_apart_and_gives_the_router_back_in_its_mode(start: str) -> None:
    router = CheapOrCoin().set_mode(start)  # type: ignore[arg-type]
    result = evaluate(_dataset(), [router, "cheapest"], seed=0, n_boot=0, peers=False, progress=False, explore=True)
    rows = {r.name: r for r in result.routers}
    assert rows["cheap-or-coin"].mode == "serve" and rows["cheap-or-coin [explore]"].mode == "explore"
    assert rows["cheap-or-coin"].aiq == rows["cheapest"].aiq  # serving: the cheapest, as routed
    assert rows["cheap-or-coin [explore]"].curve != rows["cheap-or-coin"].curve
    assert router.mode == start  # was: left in the last sweep's mode ("explore", or "serve" without --explore)
    assert router.exploring == (start != "serve")


class Pick(Router):
    """Always the candidate at ``index`` (two instances: two routers of one name)."""

    name = "pick"

    def __init__(self, *, index: int = 0):
        self.index = index

    def route(self, ctx: RouteContext) -> Decision:
        return decide(self, ctx, self.index, why=f"candidate {self.index}")


def test_two_routers_of_one_name_get_their_own_rows_and_intervals() -> None:
    """Before, both rows were named 'pick' and the bootstrap read the second's outcomes for both:
    the first router's interval was the second's."""
    result = evaluate(_dataset(), [Pick(index=0), Pick(index=1)], seed=0, n_boot=50, peers=False, progress=False)
    first, second = result.routers
    assert (first.name, second.name) == ("pick", "pick #2")
    assert result.router("pick #2") is second
    assert first.aiq != second.aiq
    for r in (first, second):
        assert r.vs_zero is not None
        assert r.vs_zero[0] == pytest.approx(r.aiq - result.zero_router_aiq, abs=1e-9)


def test_a_tuned_instance_of_a_peer_class_is_not_taken_for_the_peer() -> None:
    """Before, ``evaluate(data, [make_router("per-task", prior_strength=50.0)])`` took the user's
    tuned router for the per-task reference (the peer was not added, and its Δ vs best ref compared
    it with the references chosen among itself); a spec ``per-task:prior_strength=50`` did add it."""
    from agentroute.routers import make_router

    tuned = make_router("per-task", prior_strength=50.0)
    result = evaluate(_dataset(), [tuned], seed=0, n_boot=20, progress=False)
    names = [r.name for r in result.routers]
    # named as the spec per-task:prior_strength=50.0 would be; the reference keeps the plain name
    assert names == ["per-task:prior_strength=50.0", "per-task", "knn", "logreg"], names
    assert "per-task" in result.peers and names[0] not in result.peers
    assert result.router("per-task").params.get("prior_strength") != 50.0
    plain = evaluate(_dataset(), [make_router("per-task")], seed=0, n_boot=0, progress=False)
    assert [r.name for r in plain.routers] == ["per-task", "knn", "logreg"] and "per-task" in plain.peers

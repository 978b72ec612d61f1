"""Tier baselines of agentic routing (BoPO, arXiv:2602.21227): always-small, always-large,
first-step-large and a random mix.

Tiers are read from the candidates' model cards (``small`` < ``medium`` < ``large``; ties by
card-priced worst-case cost). The candidates are already legal and affordable, so when the
preferred tier has been masked by the budget every router here falls back to the cheapest
candidate (budget-constrained decoding).
"""

from __future__ import annotations

import hashlib

import numpy as np

from agentroute.errors import ConfigurationError
from agentroute.routers.base import Router, check_range, decide, register, require_candidates
from agentroute.routers.baselines import cost_order
from agentroute.types import Decision, RouteContext

_RANK = {"small": 0, "medium": 1, "large": 2}


def tier_rank(ctx: RouteContext, index: int) -> int:
    """The card tier of candidate ``index`` as 0 (small), 1 (medium) or 2 (large)."""
    card = ctx.cards.get(ctx.candidates[index].model)
    return _RANK.get(getattr(card, "tier", "small"), 0)


def _largest(ctx: RouteContext) -> int | None:
    """The cheapest candidate of tier ``large``, or None when the budget masked every large one."""
    large = [i for i in cost_order(ctx) if tier_rank(ctx, i) == 2]
    return large[0] if large else None


@register
class AlwaysSmallRouter(Router):
    """The small boundary policy: the lowest card tier among the candidates (cheapest on ties)."""

    name = "always-small"

    def route(self, ctx: RouteContext) -> Decision:
        require_candidates(self, ctx)
        best = min(cost_order(ctx), key=lambda i: tier_rank(ctx, i))
        return decide(self, ctx, best, why="always the smallest tier")


@register
class AlwaysLargeRouter(Router):
    """The large boundary policy: a ``large`` card when affordable, else the cheapest candidate."""

    name = "always-large"

    def route(self, ctx: RouteContext) -> Decision:
        require_candidates(self, ctx)
        large = _largest(ctx)
        if large is None:
            return decide(self, ctx, cost_order(ctx)[0], why="large tier unaffordable: cheapest")
        return decide(self, ctx, large, why="always the large tier")


@register
class FirstStepLargeRouter(Router):
    """Large on the task's first step, small afterwards — BoPO's strong heuristic under strict budgets."""

    name = "first-step-large"

    def route(self, ctx: RouteContext) -> Decision:
        require_candidates(self, ctx)
        if ctx.step_index == 0 and not ctx.history:
            large = _largest(ctx)
            if large is not None:
                return decide(self, ctx, large, why="first step: large tier")
        best = min(cost_order(ctx), key=lambda i: tier_rank(ctx, i))
        return decide(self, ctx, best, why="later step (or large unaffordable): smallest tier")


@register
class RandomMixRouter(Router):
    """The large tier with probability ``p_large`` (when affordable), else the smallest tier.

    Seeded per (seed, task, step, attempt), so decisions are reproducible. Set ``p_large`` to
    another router's share of large calls to compare with it at matched cost.
    """

    name = "random-mix"
    any_seed = True  # keys hashed draws
    knob = "p_large"
    knob_grid = tuple(float(x) for x in np.round(np.linspace(0.0, 1.0, 21), 2))

    def __init__(self, *, p_large: float = 0.5, seed: int = 0):
        self.p_large = p_large
        self.seed = seed

    def _check_params(self) -> None:
        super()._check_params()
        check_range(self, "p_large", low=0, high=1)

    def route(self, ctx: RouteContext) -> Decision:
        require_candidates(self, ctx)
        if not 0 <= self.p_large <= 1:
            raise ConfigurationError(f"random-mix: p_large must be in [0, 1] (got {self.p_large})")
        key = f"{self.seed}|{ctx.task_id}|{ctx.step_index}|{len(ctx.attempts)}|{ctx.query_id or ctx.query}"
        draw = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") / 2**64
        large = _largest(ctx)
        if draw < self.p_large and large is not None:
            return decide(self, ctx, large, why=f"random mix: large (p={self.p_large:g})")
        best = min(cost_order(ctx), key=lambda i: tier_rank(ctx, i))
        return decide(self, ctx, best, why=f"random mix: small (p={self.p_large:g})")

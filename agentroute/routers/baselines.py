"""Baseline routers: fixed, random, cheapest, strongest and a threshold cascade.

They need no training, but ``strongest`` and ``cascade`` use logged quality when fitted: without
data, strength is read from the model cards (tier, then price, then strategy samples).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any, Self, cast

import numpy as np

from agentroute.errors import ConfigurationError, did_you_mean
from agentroute.outcomes import find_column
from agentroute.routers.base import Router, check_range, decide, fit_table, register, require_candidates
from agentroute.strategies import get_strategy
from agentroute.types import Agent, Decision, RouteContext, Step

_TIER_RANK = {"small": 0, "medium": 1, "large": 2}


def card_strength(ctx: RouteContext, index: int) -> tuple[float, float, int]:
    """A prior of an agent's strength from its card: (tier, price, strategy samples)."""
    agent = ctx.candidates[index]
    card = ctx.cards.get(agent.model)
    tier = _TIER_RANK.get(getattr(card, "tier", "small"), 0)
    price = (getattr(card, "input_price", 0) or 0) + (getattr(card, "output_price", 0) or 0)
    return (tier, price, get_strategy(agent.strategy).samples)


def cost_order(ctx: RouteContext) -> list[int]:
    """Candidate indices from cheapest to dearest (ties: weaker card first)."""
    return sorted(range(len(ctx.candidates)), key=lambda i: (ctx.cost_of(i), card_strength(ctx, i)))


def cheapest(ctx: RouteContext) -> int:
    """``cost_order(ctx)[0]`` in one pass, without sorting: card strengths only break a tie."""
    costs, low, ties = ctx.costs, math.inf, []
    for i, agent in enumerate(ctx.candidates):
        cost = costs.get(agent.key, 0.0)
        if cost < low:
            low, ties = cost, [i]
        elif cost == low:
            ties.append(i)
    return ties[0] if len(ties) == 1 else min(ties, key=lambda i: card_strength(ctx, i))


class _MeanQuality:
    """Mean logged score per agent column, learned by ``fit`` (shared by strongest and cascade)."""

    quality_: dict[str, float]

    def _fit_quality(self, data: Any) -> None:
        from agentroute.routers.utility import weighted_mean

        table = fit_table(cast(Router, self), data)  # a mixin of Router subclasses (strongest, cascade)
        means = weighted_mean(table.scores, table.weights)  # importance-weighted for bandit logs
        self.quality_ = {m: float(q) for m, q in zip(table.models, means, strict=True) if not np.isnan(q)}

    def known_agents(self) -> list[str] | None:
        quality = getattr(self, "quality_", None)
        return list(quality) if quality else None

    def get_state(self) -> dict[str, Any]:
        return {"quality": getattr(self, "quality_", {})}

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("quality"):
            self.quality_ = {str(k): float(v) for k, v in state["quality"].items()}

    def _quality(self, ctx: RouteContext, index: int) -> tuple[float, ...]:
        quality = getattr(self, "quality_", {})
        j = find_column(ctx.candidates[index], list(quality)) if quality else None
        learned = list(quality.values())[j] if j is not None else None
        return ((learned if learned is not None else -1.0), *card_strength(ctx, index))


@register
class FixedRouter(Router):
    """Always the same model (and strategy, if given); the cheapest candidate for a step where it is
    not legal or affordable. A model the pool does not offer is a :class:`ConfigurationError` naming
    the pool's models: at ``compile`` (:meth:`check_agents`), else at the first route."""

    name = "fixed"

    def __init__(self, *, model: str = "", strategy: str | None = None):
        self.model = model
        self.strategy = strategy

    def _check_params(self) -> None:
        super()._check_params()
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigurationError(
                "fixed: 'model' is required: the model id to always route to (fixed:model=ID)"
            )

    def check_agents(self, agents: Sequence[Agent], among: str = "the pool") -> None:
        """Refuse ``agents`` none of which plays the model (in the strategy, if given): every step
        would go to the cheapest one."""
        if any(a.model == self.model and self.strategy in (None, a.strategy) for a in agents):
            return
        offered = sorted({a.model for a in agents})
        if self.model in offered:
            strategies = sorted({a.strategy for a in agents if a.model == self.model})
            raise ConfigurationError(
                f"fixed: model {self.model!r} has no strategy {self.strategy!r} (it has: {', '.join(strategies)})"
            )
        raise self._not_offered(offered, among)

    def _not_offered(self, offered: Sequence[str], among: str) -> ConfigurationError:
        return ConfigurationError(
            f"fixed: model {self.model!r} is not in {among}{did_you_mean(self.model, list(offered))}; "
            f"its models: {', '.join(offered)}"
        )

    def route(self, ctx: RouteContext) -> Decision:
        require_candidates(self, ctx)
        for i, agent in enumerate(ctx.candidates):
            if agent.model == self.model and (self.strategy is None or agent.strategy == self.strategy):
                return decide(self, ctx, i, why=f"fixed to {self.model}")
        if ctx.cards and self.model not in ctx.cards:  # the pool's cards: not a model of the pool at all
            raise self._not_offered(sorted(ctx.cards), "the pool")
        return decide(self, ctx, cheapest(ctx), why=f"{self.model!r} not legal or affordable: cheapest")


@register
class RandomRouter(Router):
    """Uniformly random; seeded per (seed, task, step, query) so decisions are reproducible."""

    name = "random"
    any_seed = True  # keys hashed draws

    def __init__(self, *, seed: int = 0):
        self.seed = seed

    def route(self, ctx: RouteContext) -> Decision:
        require_candidates(self, ctx)
        key = f"{self.seed}|{ctx.task_id}|{ctx.step_index}|{ctx.query_id or ctx.query}|{len(ctx.attempts)}"
        draw = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
        return decide(self, ctx, draw % len(ctx.candidates), why="uniform random")


@register
class CheapestRouter(Router):
    """The candidate with the lowest card-priced worst-case cost."""

    name = "cheapest"

    def route(self, ctx: RouteContext) -> Decision:
        require_candidates(self, ctx)
        return decide(self, ctx, cheapest(ctx), why="cheapest worst case")


@register
class StrongestRouter(_MeanQuality, Router):
    """The candidate with the best logged mean score when fitted, else the strongest card."""

    name = "strongest"

    def fit(self, data: Any) -> Self:
        self._fit_quality(data)
        return self

    def route(self, ctx: RouteContext) -> Decision:
        require_candidates(self, ctx)
        best = max(range(len(ctx.candidates)), key=lambda i: (self._quality(ctx, i), -ctx.cost_of(i)))
        return decide(self, ctx, best, why="strongest")


@register
class CascadeRouter(_MeanQuality, Router):
    """Cheap first; escalate to the next dearer agent while the confidence signal is below ``threshold``.

    The confidence of a finished step is ``confidence_fn(step)`` when given, else ``step.confidence``
    (the local backend's mean token probability, a self-consistency vote's agreement). A failed step
    always escalates. When fitted, agents that are both dearer and no better on the logged data than a
    cheaper one are skipped (FrugalGPT-style ordering, https://arxiv.org/abs/2305.05176).
    """

    name = "cascade"
    knob = "threshold"
    knob_grid = tuple(float(x) for x in np.linspace(0.0, 1.0, 31))

    def __init__(
        self, *, threshold: float = 0.5, confidence_fn: Callable[[Step], float | None] | None = None
    ):
        self.threshold = threshold
        self.confidence_fn = confidence_fn

    def _check_params(self) -> None:
        super()._check_params()
        check_range(self, "threshold", low=0, high=1)

    def fit(self, data: Any) -> Self:
        self._fit_quality(data)
        return self

    def _ladder(self, ctx: RouteContext) -> list[int]:
        ladder: list[int] = []
        best = -np.inf
        for i in cost_order(ctx):
            quality = self._quality(ctx, i)[0]
            if not ladder or quality > best or quality < 0:
                ladder.append(i)
                best = max(best, quality)
        return ladder

    def route(self, ctx: RouteContext) -> Decision:
        require_candidates(self, ctx)
        tried = {s.agent.key for s in ctx.attempts}
        ladder = self._ladder(ctx)
        for rung, i in enumerate(ladder):
            if ctx.candidates[i].key not in tried:
                return decide(self, ctx, i, why=f"cascade rung {rung + 1}/{len(ladder)}")
        return decide(self, ctx, ladder[-1], why="cascade exhausted: top rung")

    def escalate(self, ctx: RouteContext, step: Step) -> bool:
        if step.status != "ok":
            return True
        confidence = self.confidence_fn(step) if self.confidence_fn else step.confidence
        if confidence is None or confidence >= self.threshold:
            return False
        tried = {s.agent.key for s in ctx.attempts} | {step.agent.key}
        return any(ctx.candidates[i].key not in tried for i in self._ladder(ctx))

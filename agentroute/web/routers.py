"""Routing policies of the web agent: which agents act, chosen how, with how many fallbacks.

Five presets name the policies of agentic routing (BoPO, arXiv:2602.21227) on the web pool
(the $0 DOM skill, then the pool's models from cheapest to strongest):

==================  =====================================================================
``always-skill``    the DOM skill alone (a failed step stays failed)
``always-small``    the cheapest model agent alone (SmolLM2 direct in the default pool)
``always-large``    the strongest model agent alone (SmolLM2 cot in the default pool)
``first-step-large`` the strongest model on an episode's first step, the cheapest after
``cascade``         skill first; a failed step (the skill at a loss, an illegal action)
                    escalates to the next dearer agent within the same step
==================  =====================================================================

Any other name is a registered router or a directory written by ``Router.save`` (trained
routers), run over every agent with up to two fallbacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentroute.errors import UnknownNameError
from agentroute.pool.pool import ModelPool
from agentroute.routers.base import Router, decide, require_candidates
from agentroute.routers.baselines import CascadeRouter, FixedRouter, cost_order
from agentroute.strategies import get_strategy
from agentroute.types import Agent, Decision, RouteContext
from agentroute.web.skill import SKILL_MODEL

PRESETS = ("always-skill", "always-small", "always-large", "first-step-large", "cascade")
_TIER = {"small": 0, "medium": 1, "large": 2}


@dataclass(frozen=True)
class WebPolicy:
    """A router plus the models a step may use and the fallbacks allowed within a step."""

    name: str
    router: Router
    models: tuple[str, ...] | None = None
    max_fallbacks: int = 2


def model_agents(pool: ModelPool, role: str) -> tuple[Agent, Agent]:
    """(cheapest, strongest) model agent of the pool, the skill left out."""
    agents = [a for a in pool.agents(role) if a.model != SKILL_MODEL]
    if not agents:
        raise ValueError("the web pool has no model besides the DOM skill")

    def price(a: Agent) -> float:
        c = pool.card(a.model)
        s = get_strategy(a.strategy)
        return ((c.input_price or 0) + (c.output_price or 0)) * s.samples * s.max_tokens_factor

    def strength(a: Agent) -> tuple[int, float, int, float]:
        c, s = pool.card(a.model), get_strategy(a.strategy)
        return (_TIER.get(c.tier, 0), price(a), s.samples, s.max_tokens_factor)

    return min(agents, key=lambda a: (price(a), strength(a))), max(agents, key=strength)


class FirstStepLargeWebRouter(Router):
    """The ``large`` agent on an episode's first step, the ``small`` one afterwards (BoPO's heuristic)."""

    name = "first-step-large-web"

    def __init__(self, *, small: str = "", large: str = ""):
        self.small = small
        self.large = large

    def route(self, ctx: RouteContext) -> Decision:
        require_candidates(self, ctx)
        want = self.large if ctx.step_index == 0 and not ctx.history else self.small
        for i, agent in enumerate(ctx.candidates):
            if agent.key == want:
                return decide(self, ctx, i, why=f"{'first step: large' if want == self.large else 'small'}")
        return decide(self, ctx, cost_order(ctx)[0], why=f"{want} unaffordable: cheapest")


def web_policy(name: str, pool: ModelPool, *, role: str = "navigator", **params: Any) -> WebPolicy:
    """The :class:`WebPolicy` named ``name`` over ``pool`` (a preset, a router name or a saved router)."""
    if name in ("always-skill", "always-small", "always-large", "first-step-large"):
        small, large = model_agents(pool, role)
        if name == "always-skill":
            return WebPolicy(name, FixedRouter(model=SKILL_MODEL), (SKILL_MODEL,), 0)
        if name == "always-small":
            return WebPolicy(name, FixedRouter(model=small.model, strategy=small.strategy), (small.model,), 0)
        if name == "always-large":
            return WebPolicy(name, FixedRouter(model=large.model, strategy=large.strategy), (large.model,), 0)
        models = tuple(dict.fromkeys((small.model, large.model)))
        return WebPolicy(name, FirstStepLargeWebRouter(small=small.key, large=large.key), models, 0)
    if name == "cascade":
        # threshold 0: escalate on failure only (the browser, not the model's confidence, is the judge)
        return WebPolicy(name, CascadeRouter(threshold=float(params.get("threshold", 0.0))), None, 2)
    from agentroute.loading import load_router

    try:
        return WebPolicy(name, load_router(name, **params), None, 2)
    except UnknownNameError as exc:  # the web presets are names too: suggest and list them
        if exc.kind != "router" or exc.name != name:
            raise
        raise UnknownNameError("router", name, sorted({*exc.known, *PRESETS})) from None

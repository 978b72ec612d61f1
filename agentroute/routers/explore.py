"""ε-greedy exploration around any router, with the propensities that off-policy evaluation needs.

The wrapper asks its ``base`` router (in serving mode) for its choice ``g(x)`` among the ``K``
legal, affordable candidates, then plays

    π(a | x) = (1 − ε)·1[a = g(x)] + ε / K

(Langford & Zhang, "The Epoch-Greedy Algorithm for Contextual Multi-armed Bandits", NeurIPS 2007;
the logging policy of Dudík, Langford & Li, "Doubly Robust Policy Evaluation and Learning",
arXiv 1103.4601). Every decision logs, in ``Decision.evidence``:

- ``propensity``: π(chosen | x), the probability with which the chosen agent was picked;
- ``probabilities``: π(a | x) of every candidate, by agent key;
- ``costs``: the candidates' card-priced worst-case costs (what a router saw), so that another
  router can be replayed on the logged context (:mod:`agentroute.eval.counterfactual`);
- ``greedy``: the base router's choice, and ``explored``: whether the draw overrode it.

Draws are keyed by (seed, task id, step, query, attempt), so a rerun of the same tasks (same
task ids) makes the same choices in any order and under any concurrency; tasks with new ids (the
default: a fresh id per task) draw afresh. In ``serve`` mode the wrapper decides as its base does
(propensity 1). ``fit``, ``observe`` and ``escalate`` go to the base router.
"""

from __future__ import annotations

import hashlib
import os
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from agentroute.errors import ConfigurationError
from agentroute.routers.base import (
    Mode,
    Router,
    check_each,
    check_fit_data,
    check_range,
    get_router_class,
    make_router,
    register,
    require_candidates,
)
from agentroute.types import Decision, RouteContext, Step, Task

__all__ = ["ExploreRouter"]


def _unit(key: str) -> float:
    """A uniform draw in [0, 1) from a key (blake2b)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") / 2.0**64


@register
class ExploreRouter(Router):
    """ε-greedy over a base router; logs every candidate's probability (module docstring).

    Args:
        base: a registered router name or a directory saved by ``Router.save`` (a trained router).
        epsilon: exploration rate ε in [0, 1]: with probability ε the agent is drawn uniformly
            among the candidates (the base's choice included).
        seed: seed of the draws.
        base_params: keyword parameters of the base router (with a name).
    """

    name = "explore"
    any_seed = True  # keys hashed draws
    explores: ClassVar[bool] = True
    default_mode: ClassVar[Mode] = "explore"

    def __init__(
        self,
        *,
        base: str | Router = "cheapest",
        epsilon: float = 0.1,
        seed: int = 0,
        base_params: dict[str, Any] | None = None,
    ):
        self.base = base
        self.epsilon = epsilon
        self.seed = seed
        self.base_params = base_params

    def _check_params(self) -> None:
        super()._check_params()

        def base() -> None:
            if isinstance(self.base, str) and not _saved_router(self.base):
                if self.base == self.name:
                    raise ConfigurationError("explore: the base router is itself an exploring wrapper")
                try:
                    get_router_class(self.base).check_params(self.base_params or {})
                except ConfigurationError as exc:  # an unknown name lists the routers
                    raise ConfigurationError(f"explore: 'base' {self.base!r}: {exc}") from None

        check_each(self, {"base": base, "epsilon": partial(check_range, self, "epsilon", low=0, high=1)})

    # -- the base router ------------------------------------------------------------------------
    @property
    def base_(self) -> Router:
        router = self.__dict__.get("_base")
        if router is None:
            check_range(self, "epsilon", low=0, high=1)
            if isinstance(self.base, Router):
                router = self.base
            elif _saved_router(str(self.base)):
                router = Router.load(str(self.base))
            else:
                router = make_router(str(self.base), **(self.base_params or {}))
            if isinstance(router, ExploreRouter):
                raise ConfigurationError("explore: the base router is itself an exploring wrapper")
            router.serve()
            self.__dict__["_base"] = router
        return router

    @property
    def learned(self) -> bool:  # type: ignore[override]
        return self.base_.learned

    @property
    def inductive(self) -> bool:  # type: ignore[override]
        return self.base_.inductive

    def known_agents(self) -> list[str] | None:
        return self.base_.known_agents()

    def unseen_treatment(self) -> str | None:
        return self.base_.unseen_treatment()

    @property
    def is_fitted(self) -> bool:
        return self.base_.is_fitted

    def check_fitted(self) -> None:
        self.base_.check_fitted()

    def fit(self, data: Any) -> Self:
        self.base_.fit(check_fit_data(self, data))
        self.fitted_ = True
        return self

    def observe(self, step: Step, task: Task | None = None) -> None:
        self.base_.observe(step, task)

    def escalate(self, ctx: RouteContext, step: Step) -> bool:
        return self.base_.escalate(ctx, step)

    # -- routing --------------------------------------------------------------------------------
    def probabilities(self, ctx: RouteContext, greedy: int) -> np.ndarray:
        """π(· | x) over ``ctx.candidates`` given the base's choice ``greedy``."""
        k = len(ctx.candidates)
        eps = float(self.epsilon) if self.mode != "serve" else 0.0
        p = np.full(k, eps / k)
        p[greedy] += 1.0 - eps
        return p

    def route(self, ctx: RouteContext) -> Decision:
        require_candidates(self, ctx)
        base = self.base_.route(ctx)
        keys = [a.key for a in ctx.candidates]
        greedy = keys.index(base.agent.key) if base.agent.key in keys else 0
        p = self.probabilities(ctx, greedy)
        key = f"{self.seed}|{ctx.task_id}|{ctx.step_index}|{ctx.query_id or ctx.query}|{len(ctx.attempts)}"
        u = _unit(key)
        explored = u < float(self.epsilon) and self.mode != "serve"
        chosen = min(int(_unit("pick|" + key) * len(keys)), len(keys) - 1) if explored else greedy
        evidence = {
            "propensity": float(p[chosen]),
            "probabilities": {k: float(v) for k, v in zip(keys, p, strict=True)},
            "costs": {k: float(ctx.costs.get(k, 0.0)) for k in keys},
            "greedy": keys[greedy],
            "explored": bool(explored),
            "base": self.base_.name,
        }
        why = f"explored (ε={self.epsilon}): uniform draw" if explored else f"{self.base_.name}: {base.why}"
        return Decision.model_construct(
            agents=[ctx.candidates[chosen]], weights=[1.0], router=self.name, why=why,
            scores=dict(base.scores), evidence=evidence,
        )  # fmt: skip

    # -- persistence ----------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        params = super().get_params()
        if isinstance(params["base"], Router):
            params["base"] = params["base"].name
        return params

    def get_state(self) -> dict[str, Any]:
        base = self.base_
        return {"base": base.name, "params": _plain(base.get_params()), "state": base.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        if not state:
            return
        router = make_router(state["base"], **state.get("params", {}))
        router.set_state(state.get("state", {}))
        router.fitted_ = True
        router.serve()
        self.__dict__["_base"] = router

    def get_arrays(self) -> dict[str, np.ndarray]:
        return {f"base__{k}": v for k, v in self.base_.get_arrays().items()}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        inner = {k.removeprefix("base__"): v for k, v in arrays.items() if k.startswith("base__")}
        if inner:
            self.base_.set_arrays(inner)


def _saved_router(base: str) -> bool:
    """Whether ``base`` names a saved router's folder rather than a registered router: an existing
    folder, or a path (router names hold no ``/``). A folder moved since is not checked by name:
    a loaded wrapper's base comes from its saved state, and a fresh one's from :meth:`Router.load`,
    whose error names the path."""
    return Path(base).is_dir() or "/" in base or (os.sep in base)


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    import json

    out = {}
    for key, value in params.items():
        try:
            json.dumps(value)
        except TypeError:
            continue
        out[key] = value
    return out

"""The router conformance kit: one contract that every registered router passes.

Use it from pytest::

    import pytest
    from agentroute.testing import router_checks

    @pytest.mark.parametrize("name, check", router_checks(), ids=lambda x: getattr(x, "__name__", x))
    def test_router_conformance(name, check):
        check(name)

The checks: no side effects at construction, ``fit`` returns ``self``, routing before ``fit``
raises :class:`~agentroute.errors.NotFittedError` (learned routers), decisions stay within the legal
affordable candidates, seeded determinism, ``save``/``load`` giving identical decisions, and the
mode contract (``train``/``serve``/``explore``: switching returns the router and keeps its learned
state, the mode is not a parameter and is not saved, serving decisions are repeatable and never
depend on the sampling seed, and an exploring router's ``explore`` mode does sample). Each
router is built by name with the parameters in :data:`KIT_PARAMS` and fitted on
:func:`sample_outcomes`, a small seeded logged-outcome table. :func:`missing_from_kit` lists
registered routers the kit does not know, so a meta-test can fail on them.
"""

from __future__ import annotations

import inspect
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from agentroute.errors import ConfigurationError, NotFittedError
from agentroute.outcomes import OutcomeTable, column_agent
from agentroute.pool.card import ModelCard
from agentroute.routers.base import MODES, Router, get_router_class, router_names
from agentroute.types import RouteContext

#: Parameters the kit passes when it builds a router by name (routers not listed: defaults).
KIT_PARAMS: dict[str, dict[str, Any]] = {
    "graph-planner": {"episodes": 32, "episodes_per_update": 32},
    "explore": {"base": "knn", "epsilon": 0.3},
    "stack": {"bases": ["per-task", "knn", "logreg"]},
    "fixed": {"model": "mid"},
    "graph-router": {"epochs": 40, "queries_per_step": 64},
    "kg-gnn": {
        "descriptors": {
            "small": "a small, cheap model.",
            "mid": "a medium-sized model.",
            "large": "a large, expensive model.",
        },
        "epochs": 10,
    },
    "bopo": {
        "config": {
            "iterations": 3,
            "sft_epochs": 5,
            "boundary_rollouts": 2,
            "sweep": 4,
            "group_size": 4,
            "tasks_per_iteration": 16,
        }
    },
}
#: Routers the kit covers. A registered router missing here fails the meta-test.
KIT_ROUTERS: set[str] = {"fixed", "random", "cheapest", "strongest", "cascade", "ant-colony"}
KIT_ROUTERS |= {"bopo", "always-small", "always-large", "first-step-large", "random-mix"}
KIT_ROUTERS |= {"kg-gnn"}
KIT_ROUTERS |= {"oracle", "best-single", "per-task", "knn", "mlp", "mf", "graph-router", "logreg"}
KIT_ROUTERS |= {"graph-planner", "explore", "stack"}

_MODELS = ("small", "mid", "large")
_TOPICS = {
    "math": ["What is {a} plus {b}?", "Compute {a} times {b}.", "Is {a} a prime number?"],
    "code": ["Write a Python function that returns {a} squared.", "Fix the bug in: print({a}+'{b}')"],
    "facts": ["Who wrote book number {a}?", "Which river flows through city {b}?"],
}


def sample_outcomes(n: int = 90, seed: int = 0) -> OutcomeTable:
    """A small seeded logged-outcome table over three models of rising cost and skill.

    For contract checks only (not quality): scores depend on the topic so learned routers have a
    signal to pick up.
    """
    rng = np.random.default_rng(seed)
    topics = list(_TOPICS)
    # "mid" is the best model here, unlike the card prior (tier, price): a router that forgets what
    # it learned on save/load decides differently after loading, and the kit notices.
    skill = {"math": (0.2, 0.9, 0.5), "code": (0.1, 0.8, 0.7), "facts": (0.6, 0.8, 0.7)}
    queries, scores, costs = [], [], []
    types: list[str | None] = []
    for i in range(n):
        topic = topics[i % len(topics)]
        template = _TOPICS[topic][i % len(_TOPICS[topic])]
        queries.append(template.format(a=int(rng.integers(2, 999)), b=int(rng.integers(2, 999))))
        types.append(topic)
        scores.append([float(rng.random() < p) for p in skill[topic]])
        costs.append([1e-5 * (1 + rng.random()), 1e-4 * (1 + rng.random()), 1e-3 * (1 + rng.random())])
    return OutcomeTable(
        query_ids=[f"q{i}" for i in range(n)],
        queries=queries,
        models=list(_MODELS),
        scores=np.array(scores),
        costs=np.array(costs),
        task_types=types,
        responses=[[f"answer of {m}" for m in _MODELS] for _ in range(n)],
    )


def sample_cards() -> dict[str, ModelCard]:
    tiers = {"small": "small", "mid": "medium", "large": "large"}
    prices = {"small": 0.1, "mid": 1.0, "large": 10.0}
    return {
        m: ModelCard(id=m, backend="replay", input_price=prices[m], output_price=prices[m], tier=tiers[m])  # type: ignore[arg-type]
        for m in _MODELS
    }


def contexts(table: OutcomeTable, *, subsets: bool = True, seed: int = 0) -> list[RouteContext]:
    """Route contexts over the table's queries; with ``subsets``, random candidate subsets too."""
    rng = np.random.default_rng(seed)
    cards = sample_cards()
    pool = {
        m: cards[m] for m in table.models if m in cards
    }  # a context holds the pool's cards, as the dispatcher's do
    agents = [column_agent(m) for m in table.models]
    mean_cost = np.nanmean(table.costs, axis=0)
    out = []
    for i, query in enumerate(table.queries):
        pick = list(range(len(agents)))
        if subsets and i % 3 == 1:
            pick = sorted(rng.choice(len(agents), size=int(rng.integers(1, len(agents))), replace=False))
        cands = [agents[j] for j in pick]
        out.append(
            RouteContext(
                query=query,
                query_id=table.query_ids[i],
                candidates=cands,
                task_id=f"t{i}",
                costs={agents[j].key: float(mean_cost[j]) for j in pick},
                cards=pool,
                remaining={"usd": 1.0},
                budget={"usd": 1.0},
            )
        )
    return out


def build(name: str, **overrides: Any) -> Router:
    """Build a registered router with the kit's parameters (and a seed when it takes one)."""
    cls = get_router_class(name)
    params = dict(KIT_PARAMS.get(name, {}))
    if "seed" in inspect.signature(cls.__init__).parameters:
        params.setdefault("seed", 0)
    params.update(overrides)
    return cls(**params)


def _fitted(name: str) -> Router:
    return build(name).fit(sample_outcomes())


def _keys(router: Router, ctxs: list[RouteContext]) -> list[tuple[str, ...]]:
    return [tuple(a.key for a in router.route(c).agents) for c in ctxs]


# -- the checks ----------------------------------------------------------------------------------
def check_construction_has_no_side_effects(name: str) -> None:
    """``__init__`` only stores parameters: no files written, no fitted state, params round-trip."""
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            router = build(name)
        finally:
            os.chdir(cwd)
        assert not any(Path(tmp).iterdir()), f"{name}: construction wrote files"
    params = router.get_params()
    assert type(router)(**params).get_params() == params, f"{name}: get_params does not round-trip"
    fitted = [a for a in vars(router) if a.endswith("_") and not a.startswith("_")]
    assert not fitted, f"{name}: construction set fitted attributes {fitted}"


def check_fit_returns_self(name: str) -> None:
    router = build(name)
    assert router.fit(sample_outcomes()) is router, f"{name}: fit must return self"
    assert router.is_fitted


def check_unfitted_route_raises(name: str) -> None:
    router = build(name)
    if not router.learned:
        router.route(contexts(sample_outcomes(6), subsets=False)[0])
        return
    try:
        router.route(contexts(sample_outcomes(6), subsets=False)[0])
    except NotFittedError:
        return
    raise AssertionError(f"{name}: routing before fit must raise NotFittedError")


def check_decisions_within_candidates(name: str) -> None:
    router = _fitted(name)
    for ctx in contexts(sample_outcomes()):
        decision = router.route(ctx)
        assert decision.agents, f"{name}: empty decision"
        legal = {a.key for a in ctx.candidates}
        chosen = {a.key for a in decision.agents}
        assert chosen <= legal, f"{name}: chose {chosen - legal} outside the candidates {legal}"
        if decision.weights:
            assert len(decision.weights) == len(decision.agents), f"{name}: weights do not match agents"


def check_seeded_determinism(name: str) -> None:
    ctxs = contexts(sample_outcomes())
    assert _keys(_fitted(name), ctxs) == _keys(_fitted(name), ctxs), f"{name}: same seed, different decisions"


def check_save_load_identical(name: str) -> None:
    router = _fitted(name)
    ctxs = contexts(sample_outcomes())
    with tempfile.TemporaryDirectory() as tmp:
        router.save(tmp)
        loaded = type(router).load(tmp)
        again = Router.load(tmp)
    assert _keys(router, ctxs) == _keys(loaded, ctxs) == _keys(again, ctxs), f"{name}: load changed decisions"


def check_mode_contract(name: str) -> None:
    """train/serve/explore switch the mode only; serving is repeatable and seed-free; explore samples."""
    router = build(name)
    cls = type(router)
    assert router.mode == cls.default_mode and router.mode in MODES, f"{name}: starts in {router.mode!r}"
    assert "mode" not in router.get_params(), f"{name}: the mode must not be a parameter"
    for switch, mode in ((router.train, "train"), (router.explore, "explore"), (router.serve, "serve")):
        assert switch() is router and router.mode == mode, (
            f"{name}: {mode}() must return the router in {mode!r} mode"
        )
    try:
        router.set_mode("bogus")  # type: ignore[arg-type]
    except ConfigurationError:
        pass
    else:
        raise AssertionError(f"{name}: set_mode accepted an unknown mode")
    router.train().fit(sample_outcomes())
    ctxs = contexts(sample_outcomes())
    served = _keys(router.serve(), ctxs)
    assert _keys(router, ctxs) == served, f"{name}: serving decisions are not repeatable"
    explored = _keys(router.explore(), ctxs)
    assert _keys(router.serve(), ctxs) == served, f"{name}: exploring changed what it serves"
    if not router.explores:
        assert explored == served, f"{name}: explores = False but explore mode decides differently"
    else:
        assert explored != served, f"{name}: explores = True but explore mode never samples"
        if "seed" in router.get_params():
            router.set_params(seed=int(router.get_params()["seed"]) + 1)
            assert _keys(router.serve(), ctxs) == served, f"{name}: serving depends on the sampling seed"
    with tempfile.TemporaryDirectory() as tmp:
        router.save(tmp)
        assert type(router).load(tmp).mode == cls.default_mode, (
            f"{name}: a loaded router must start in its default mode"
        )


CHECKS: tuple[Callable[[str], None], ...] = (
    check_construction_has_no_side_effects,
    check_fit_returns_self,
    check_unfitted_route_raises,
    check_decisions_within_candidates,
    check_seeded_determinism,
    check_save_load_identical,
    check_mode_contract,
)


def router_checks(names: list[str] | None = None) -> Iterator[tuple[str, Callable[[str], None]]]:
    """(router name, check) pairs for ``pytest.mark.parametrize``."""
    for name in sorted(names or KIT_ROUTERS):
        for check in CHECKS:
            yield name, check


def missing_from_kit() -> list[str]:
    """Registered routers the kit does not cover."""
    return sorted(set(router_names()) - KIT_ROUTERS)

"""Agentic evaluation: routers rolled through k-step tasks of a dataset's test split under budgets.

The environment (:class:`~agentroute.agentic.env.AgenticEnv`) is built from the test split, with
worst-case costs from the train split; learned routers are fitted on the train split only. Each
test task is run once on its anchor queries (deterministic), every call through the task's
:class:`~agentroute.budget.Ledger`. Reported per router: success rate, mean cost (USD per task),
mean large calls per task and budget violations (tasks whose logged spending exceeded the cap —
zero by construction of the ledger, and counted independently from the logged charges).

``random-mix`` with no ``p_large`` given is matched to the first BoPO router of the same run:
its ``p_large`` is BoPO's share of large calls, so the two compare at (about) the same cost.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from agentroute import budget as budgets
from agentroute.agentic.env import AgenticEnv, SuccessRule, summarize
from agentroute.budget import Budget
from agentroute.errors import ConfigurationError
from agentroute.eval.datasets import check_seed
from agentroute.routers.base import Router

#: The small and large tiers used on RouterBench: Mixtral-8x7B is the cheap model with the best
#: accuracy per dollar of the logged pool (ARC 0.85, Winogrande 0.68, MBPP 0.54 on train at ~1/17
#: of GPT-4's cost); GPT-4-1106 is the strongest (0.95 / 0.86 / 0.69).
ROUTERBENCH_TIERS = ("mistralai/mixtral-8x7b-chat", "gpt-4-1106-preview")


def default_tiers(dataset: Any) -> tuple[str, ...] | None:
    """RouterBench's (Mixtral, GPT-4) when the dataset has both, else None (cheapest, best)."""
    models = set(dataset.train.models)
    return ROUTERBENCH_TIERS if set(ROUTERBENCH_TIERS) <= models else None


@dataclass
class AgenticRow:
    """One router's figures on the agentic test tasks."""

    name: str
    success_rate: float
    mean_cost: float
    mean_large_calls: float
    budget_violations: int
    budget_exhausted: int = 0
    mean_calls: float = 0.0
    episodes: int = 0
    truncated_calls: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AgenticEvalResult:
    dataset: str
    steps: int
    tiers: list[str]
    budget: dict[str, float]
    success_rule: str
    tasks: int
    rows: list[AgenticRow]
    notes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rows"] = [r.to_dict() for r in self.rows]
        return out


def build_env(
    dataset: Any,
    *,
    steps: int = 3,
    tiers: Sequence[str] | None = None,
    success_rule: SuccessRule = "all",
    split: Literal["train", "test"] = "test",
    seed: int = 0,
    **options: Any,
) -> AgenticEnv:
    """The evaluation environment on ``split`` (worst cases from train), one anchor draw per task."""
    tiers = tuple(tiers) if tiers else default_tiers(dataset)
    return AgenticEnv.from_dataset(
        dataset,
        split,
        steps=steps,
        tiers=tiers,
        success_rule=success_rule,
        seed=seed,
        **options,  # type: ignore[arg-type]
    )


def make_agentic_router(
    spec: str | Router,
    dataset: Any,
    *,
    steps: int,
    tiers: Sequence[str],
    success_rule: SuccessRule = "all",
    feedback: bool = False,
    max_attempts: int = 1,
    seed: int = 0,
    bopo_config: Mapping[str, Any] | None = None,
) -> tuple[str, Router]:
    """(display name, fitted router) from a name spec (``"bopo:threshold=0.4"``), a saved router
    directory or an instance. BoPO trains with this environment's steps, tiers, success rule,
    feedback and attempts per step."""
    from agentroute.eval.harness import make_eval_router

    if isinstance(spec, str) and Path(spec).is_dir():
        router = Router.load(spec)
        return f"{router.name}@{spec}", router
    name, router = make_eval_router(spec, seed=seed)
    if router.name == "bopo" and not router.is_fitted:
        from agentroute.routers.bopo import BoPORouter

        assert isinstance(router, BoPORouter)
        config = router.resolved_config().to_dict() | dict(bopo_config or {})
        config.update(
            steps=steps,
            tiers=list(tiers),
            success_rule=success_rule,
            feedback=feedback,
            max_attempts=max_attempts,
        )
        router.config = config
    if not (router.learned and router.is_fitted):
        router.fit(dataset)  # learned: train split only; baselines: their logged means, if any
    return name, router


def run_router(env: AgenticEnv, name: str, router: Router, budget: Budget | None = None) -> AgenticRow:
    """Roll ``router`` once through every task of ``env`` (anchor queries) under ``budget``."""
    start = time.perf_counter()
    summary = summarize(env.run(router, budget=budget))
    knob = {router.knob: getattr(router, router.knob)} if router.knob else {}
    return AgenticRow(
        name=name,
        success_rate=summary["success_rate"],
        mean_cost=summary["mean_cost"],
        mean_large_calls=summary["mean_large_calls"],
        budget_violations=int(summary["budget_violations"]),
        budget_exhausted=int(summary["budget_exhausted"]),
        mean_calls=summary["mean_calls"],
        episodes=int(summary["episodes"]),
        truncated_calls=int(summary["truncated_calls"]),
        params=knob,
        seconds=round(time.perf_counter() - start, 3),
    )


def make_budget(cap_large: float | None = None, budget_usd: float | None = None) -> Budget | None:
    """A per-task hard budget from ``eval --agentic``'s ``--cap-large`` and ``--budget-usd`` (None when
    neither is given): :func:`agentroute.budget.make_budget`, whose errors name the option."""
    return budgets.make_budget(budget_usd, large_calls=cap_large, options={"large_calls": "--cap-large"})


def evaluate_agentic(
    dataset: Any,
    routers: str | Sequence[str | Router],
    *,
    steps: int = 3,
    tiers: Sequence[str] | None = None,
    budget: Budget | None = None,
    success_rule: SuccessRule = "all",
    feedback: bool = False,
    max_attempts: int = 1,
    seed: int = 0,
    bopo_config: Mapping[str, Any] | None = None,
) -> AgenticEvalResult:
    """Fit each router on train and roll it through the agentic test tasks (see the module docstring).

    ``feedback`` shows step outcomes to the routers and ``max_attempts`` > 1 lets them escalate a
    step (a cascade needs both); by default outcomes are known only at the end of a task.
    """
    if isinstance(routers, str):  # as --routers reads it: comma-separated
        routers = [r.strip() for r in routers.split(",") if r.strip()]
    if not routers:
        raise ConfigurationError("evaluate_agentic: no routers given")
    check_seed(seed)
    env = build_env(
        dataset, steps=steps, tiers=tiers, success_rule=success_rule, seed=seed,
        feedback=feedback, max_attempts=max_attempts,
    )  # fmt: skip
    tiers = env.tiers
    rows: dict[int, AgenticRow] = {}
    deferred: list[int] = []
    for k, spec in enumerate(routers):
        if isinstance(spec, str) and spec.strip() == "random-mix":
            deferred.append(k)
            continue
        name, router = make_agentic_router(
            spec, dataset, steps=steps, tiers=tiers, success_rule=success_rule, feedback=feedback,
            max_attempts=max_attempts, seed=seed, bopo_config=bopo_config,
        )  # fmt: skip
        rows[k] = run_router(env, name, router, budget)
    for k in deferred:
        from agentroute.routers.tiers import RandomMixRouter

        bopo = next((r for r in rows.values() if r.name.startswith("bopo")), None)
        p = bopo.mean_large_calls / bopo.mean_calls if bopo and bopo.mean_calls else 0.5
        row = run_router(env, "random-mix", RandomMixRouter(p_large=round(p, 4), seed=seed), budget)
        row.params["matched_to"] = bopo.name if bopo else None
        rows[k] = row
    return AgenticEvalResult(
        dataset=getattr(dataset, "name", "?"),
        steps=steps,
        tiers=list(tiers),
        budget=budget.limits() if budget else {},
        success_rule=str(success_rule),
        tasks=len(env.tasks),
        rows=[rows[k] for k in sorted(rows)],
        notes={
            "rows_left_over": env.left_over,
            "worst_case": "train max cost per (model, task type) x 1.1",
            "feedback": feedback,
            "max_attempts": max_attempts,
        },
    )


__all__ = [
    "ROUTERBENCH_TIERS",
    "AgenticEvalResult",
    "AgenticRow",
    "build_env",
    "default_tiers",
    "evaluate_agentic",
    "make_agentic_router",
    "make_budget",
    "run_router",
]

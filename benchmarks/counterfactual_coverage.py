"""Coverage of the counterfactual intervals (agentroute.eval.counterfactual) on logs with a known truth.

Each seed draws ``--tasks`` one-step tasks of two task types (``math``, ``chat``) over three models
with known success rates and costs, logged by ε-greedy around ``cheapest`` (the propensities the
``explore`` router logs), and estimates target routers with :func:`estimate_router`:

- ``fixed:large``, ``fixed:mid``, ``cheapest`` (the greedy choice itself);
- ``by-type`` (a context-dependent policy: large on math, small on chat);
- ``strongest`` fitted on a small full-information sample drawn afresh per seed (a learned router;
  its truth is the true value of the model it learned to pick).

With ``--fallbacks``, ``small``'s call always fails (billed nothing) and the dispatcher's fallback
routes again, ε-greedy around ``cheapest`` among ``mid`` and ``large``, logged as a second routed
step with its propensity: ``cheapest`` then falls back to ``mid`` (targets ``fixed:large``,
``fixed:mid``, ``cheapest``).

Truth is the policy's expected score and cost under the simulation. Printed: for IPS, SNIPS and DR,
score and cost, the share of seeds whose 95% and 90% intervals hold the truth, the bias and the RMSE.

    python benchmarks/counterfactual_coverage.py            # 300 seeds × 200 tasks: ≈ 2 min of CPU
    python benchmarks/counterfactual_coverage.py --constant-cost --seeds 200
    python benchmarks/counterfactual_coverage.py --fallbacks --seeds 200
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from agentroute.eval.counterfactual import LoggedStep, LoggedTask, estimate_router
from agentroute.outcomes import OutcomeTable
from agentroute.routers import make_router
from agentroute.routers.base import Router, decide, require_candidates
from agentroute.types import Agent, Decision, RouteContext

MODELS = ("small", "mid", "large")
COST = {"small": 0.001, "mid": 0.003, "large": 0.01}  # mean cost; drawn ×U(0.5, 1.5) unless constant
RATE = {"math": {"small": 0.35, "mid": 0.6, "large": 0.85}, "chat": {"small": 0.7, "mid": 0.75, "large": 0.8}}
TYPES = ("math", "chat")
P_TYPE = (0.5, 0.5)


class ByType(Router):
    """Large on math, small on chat (a context-dependent target policy)."""

    name = "by-type"

    def route(self, ctx: RouteContext) -> Decision:
        require_candidates(self, ctx)
        want = "large" if ctx.metadata.get("task_type") == "math" else "small"
        return decide(self, ctx, [a.model for a in ctx.candidates].index(want), why="by type")


def truth(choice: dict[str, str]) -> tuple[float, float]:
    """Expected (score, cost) of the policy that picks ``choice[type]``."""
    score = sum(p * RATE[t][choice[t]] for t, p in zip(TYPES, P_TYPE, strict=True))
    cost = sum(p * COST[choice[t]] for t, p in zip(TYPES, P_TYPE, strict=True))
    return score, cost


def _greedy_step(
    rng: np.random.Generator, i: int, kind: str, models: tuple[str, ...], epsilon: float, index: int
) -> LoggedStep:
    """One decision, ε-greedy around the cheapest of ``models``, with the propensities ``explore`` logs."""
    candidates = [Agent(model=m) for m in models]
    k, cheapest = len(models), models[0]
    probabilities = {a.key: epsilon / k + (1 - epsilon) * (a.model == cheapest) for a in candidates}
    model = models[int(rng.integers(k))] if rng.random() < epsilon else cheapest
    ctx = RouteContext(
        query=f"query {i}", candidates=candidates, costs={a.key: COST[a.model] for a in candidates},
        task_id=f"t{i:05d}", query_id=f"q{i:05d}", step_index=index, metadata={"task_type": kind},
    )  # fmt: skip
    chosen = Agent(model=model).key
    return LoggedStep(ctx, chosen, probabilities[chosen], probabilities)


def simulate(
    rng: np.random.Generator, n: int, epsilon: float, constant_cost: bool, fallbacks: bool = False
) -> list[LoggedTask]:
    tasks = []
    for i in range(n):
        kind = TYPES[int(rng.random() < P_TYPE[1])]
        steps = [_greedy_step(rng, i, kind, MODELS, epsilon, 0)]
        if fallbacks and steps[0].chosen == Agent(model="small").key:  # small failed: routed again
            steps.append(_greedy_step(rng, i, kind, MODELS[1:], epsilon, 1))
        model = _agent_model(steps[-1].chosen)
        score = float(rng.random() < RATE[kind][model])
        cost = COST[model] * (1.0 if constant_cost else rng.uniform(0.5, 1.5))
        tasks.append(LoggedTask(f"t{i:05d}", kind, score, cost, steps))
    return tasks


def _agent_model(key: str) -> str:
    return key.split(":")[1]


def learned_strongest(rng: np.random.Generator, n: int = 30) -> tuple[Router, str]:
    """``strongest`` fitted on ``n`` full-information rows; returns it and the model it picks."""
    kinds = [TYPES[int(rng.random() < P_TYPE[1])] for _ in range(n)]
    scores = np.array([[float(rng.random() < RATE[t][m]) for m in MODELS] for t in kinds])
    costs = np.array([[COST[m] for m in MODELS] for _ in kinds])
    table = OutcomeTable([f"f{i}" for i in range(n)], [f"fit {i}" for i in range(n)], list(MODELS), scores, costs, kinds)
    router = make_router("strongest").fit(table)
    router.serve()
    ctx = RouteContext(query="x", candidates=[Agent(model=m) for m in MODELS], costs={})
    return router, router.route(ctx).agent.model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=300)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--epsilon", type=float, default=0.3)
    parser.add_argument("--boot", type=int, default=200)
    parser.add_argument("--constant-cost", action="store_true", help="every model's cost is its mean (no noise)")
    parser.add_argument("--fallbacks", action="store_true", help="small always fails; the fallback is routed again")
    args = parser.parse_args()
    start, cpu = time.perf_counter(), time.process_time()
    fixed_targets: dict[str, tuple[Router, dict[str, str]]] = {
        "fixed:large": (make_router("fixed", model="large"), {"math": "large", "chat": "large"}),
        "fixed:mid": (make_router("fixed", model="mid"), {"math": "mid", "chat": "mid"}),
        "cheapest": (make_router("cheapest"), {"math": "small", "chat": "small"}),
        "by-type": (ByType(), {"math": "large", "chat": "small"}),
    }
    hits: dict[tuple[str, str, str, float], int] = {}
    errors: dict[tuple[str, str, str], list[float]] = {}
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        tasks = simulate(rng, args.tasks, args.epsilon, args.constant_cost, args.fallbacks)
        if args.fallbacks:  # cheapest falls back to mid, the cheapest left
            targets = {k: fixed_targets[k] for k in ("fixed:large", "fixed:mid")}
            targets["cheapest"] = (fixed_targets["cheapest"][0], {"math": "mid", "chat": "mid"})
        else:
            strongest, pick = learned_strongest(rng)
            targets = dict(fixed_targets) | {"strongest (learned)": (strongest, {"math": pick, "chat": pick})}
        for name, (router, choice) in targets.items():
            true = dict(zip(("score", "cost"), truth(choice), strict=True))
            for level in (0.95, 0.90):
                # the resamples' own seed: the simulation's stream reused would tie resamples to the data
                est = estimate_router(router, tasks, n_boot=args.boot, level=level, seed=10**6 + seed)
                for what in ("score", "cost"):
                    for how in ("ips", "snips", "dr"):
                        lo, hi = est.intervals[f"{what}_{how}"]
                        tol = 1e-9 * max(1.0, abs(true[what]))  # a degenerate interval holds its value
                        key = (name, what, how, level)
                        hits[key] = hits.get(key, 0) + int(lo - tol <= true[what] <= hi + tol)
                        if level == 0.95:
                            value = getattr(est, what)[how]
                            errors.setdefault((name, what, how), []).append(float(value) - true[what])
    print(
        f"{args.seeds} seeds × {args.tasks} tasks, ε = {args.epsilon} around cheapest over 3 models, "
        f"{args.boot} bootstrap resamples{', constant costs' if args.constant_cost else ''}"
        f"{', small fails and is routed again' if args.fallbacks else ''}; "
        f"{time.perf_counter() - start:.0f} s ({time.process_time() - cpu:.0f} s CPU)"
    )
    print("| target | what | estimator | 95% coverage | 90% coverage | bias | RMSE |")
    print("|---|---|---|---|---|---|---|")
    for (name, what, how), errs in errors.items():
        e = np.array(errs)
        scale = 1.0 if what == "score" else 1e3  # costs in $/1000 tasks
        print(
            f"| {name} | {what}{'' if what == 'score' else ' ($/1k)'} | {how.upper()} | "
            f"{hits[(name, what, how, 0.95)] / args.seeds:.3f} | {hits[(name, what, how, 0.90)] / args.seeds:.3f} | "
            f"{scale * e.mean():+.4f} | {scale * np.sqrt((e**2).mean()):.4f} |"
        )


if __name__ == "__main__":
    main()

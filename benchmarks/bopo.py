"""BoPO on the offline agentic environment of the RouterBench subset: baselines, hard caps, frontier.

    python benchmarks/bopo.py [--data DIR] [--steps 3 5] [--lams 0.1 0.6] [--out benchmarks/figures]

For each k: BoPO (recipe ``training/bopo.yaml``, trained on the train split with that k) and its
BoSFT init against always-small, always-large, first-step-large and a random mix matched to BoPO's
mean cost (bisection on P(large)), on the test split's tasks (anchor queries, one run each); then
under strict caps — 1, 2, 3 large calls per task, and USD caps at 25/50/75% of always-large's mean
task cost — with budget violations counted from the logged charges; BoPO appears at each λ trained
(the default λ = 0.3 trades success for cost, λ = 0.1 spends up to the cap).

A second table per budget runs an environment that *shows* step outcomes (an agent environment
reporting a failed action) and allows 2 attempts per step: the threshold cascade (cheap first,
escalate a failed step) needs it, and BoPO is trained for it too (``feedback: true``,
``max_attempts: 2``). Without feedback the RouterBench steps are QA answers whose correctness a
deployment does not see. The success–cost frontier (BoPO over λ, random mix over
P(large), the boundary policies) goes to ``<out>/bopo_frontier.png``; all figures to
``<out>/bopo_results.json``. Citation: Zhang et al., arXiv:2602.21227.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from agentroute.agentic import AgenticEnv
from agentroute.budget import Budget
from agentroute.eval.agentic import ROUTERBENCH_TIERS, AgenticRow, build_env, run_router
from agentroute.eval.datasets import data_root, load_dataset
from agentroute.routers import CascadeRouter, Router
from agentroute.routers.bopo import BoPORouter
from agentroute.routers.tiers import (
    AlwaysLargeRouter,
    AlwaysSmallRouter,
    FirstStepLargeRouter,
    RandomMixRouter,
)

ROOT = Path(__file__).resolve().parents[1]


def recipe_config(steps: int, **overrides: Any) -> dict[str, Any]:
    recipe = yaml.safe_load((ROOT / "training" / "bopo.yaml").read_text())
    return recipe["params"]["config"] | {"steps": steps} | overrides


def matched_mix(env: AgenticEnv, target_cost: float, budget: Budget | None = None) -> RandomMixRouter:
    """A random mix whose mean cost on ``env`` matches ``target_cost`` (bisection on P(large))."""
    lo, hi = 0.0, 1.0
    for _ in range(20):
        mid = (lo + hi) / 2
        cost = run_router(env, "rm", RandomMixRouter(p_large=mid), budget).mean_cost
        lo, hi = (mid, hi) if cost < target_cost else (lo, mid)
    return RandomMixRouter(p_large=round((lo + hi) / 2, 4))


def row_dict(row: AgenticRow) -> dict[str, Any]:
    keep = (
        "name",
        "success_rate",
        "mean_cost",
        "mean_large_calls",
        "budget_violations",
        "budget_exhausted",
        "params",
    )
    return {k: getattr(row, k) for k in keep}


def table(rows: list[dict[str, Any]], title: str) -> str:
    lines = [
        f"\n{title}",
        "| router | success | mean cost $ | large calls | violations | exhausted |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['success_rate']:.3f} | {r['mean_cost']:.5f} | {r['mean_large_calls']:.2f} "
            f"| {r['budget_violations']} | {r['budget_exhausted']} |"
        )
    return "\n".join(lines)


def run_k(data: Any, steps: int, lams: list[float], seed: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    env = build_env(data, steps=steps, seed=seed)
    feedback_env = build_env(data, steps=steps, seed=seed, feedback=True, max_attempts=2)
    default_lam = recipe_config(steps)["lam"]
    fits: dict[float, BoPORouter] = {}
    fit_seconds: dict[str, float] = {}
    for lam in dict.fromkeys([default_lam, *lams]):
        start = time.perf_counter()
        fits[lam] = BoPORouter(config=recipe_config(steps, lam=lam), seed=seed).fit(data)
        fit_seconds[f"lam={lam}"] = round(time.perf_counter() - start, 1)
    bopo = fits[default_lam]
    start = time.perf_counter()
    sft = BoPORouter(config=recipe_config(steps, iterations=0), seed=seed).fit(data)
    fit_seconds["sft"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    # the feedback recipe: outcomes shown, 2 attempts per step, more exploration (entropy 0.03)
    fb_config = recipe_config(steps, feedback=True, max_attempts=2, entropy_coef=0.03)
    bopo_fb = BoPORouter(config=fb_config, seed=seed).fit(data)
    fit_seconds["feedback"] = round(time.perf_counter() - start, 1)
    cascade = CascadeRouter().fit(data)

    free = run_router(env, "bopo", bopo)
    mix = matched_mix(env, free.mean_cost)
    routers: dict[str, Router] = {
        "always-small": AlwaysSmallRouter(),
        "always-large": AlwaysLargeRouter(),
        "first-step-large": FirstStepLargeRouter(),
        f"random-mix (p={mix.p_large:g}, cost-matched)": mix,
        "bopo-sft (BoSFT init)": sft,
    }
    routers |= {
        f"bopo lam={lam}" + (" (default)" if lam == default_lam else ""): r for lam, r in sorted(fits.items())
    }
    with_feedback: dict[str, Router] = {
        "always-large": AlwaysLargeRouter(),
        "first-step-large": FirstStepLargeRouter(),
        "cascade (escalates a failed step)": cascade,
        "bopo (feedback, may escalate)": bopo_fb,
    }
    large_cost = run_router(env, "always-large", AlwaysLargeRouter()).mean_cost
    budgets: dict[str, Budget | None] = {"none": None}
    budgets |= {f"large_calls<={c}": Budget(large_calls=c) for c in (1, 2, 3)}
    budgets |= {
        f"usd<={int(f * 100)}% of always-large ({f * large_cost:.5f})": Budget(usd=f * large_cost)
        for f in (0.25, 0.5, 0.75)
    }
    out: dict[str, Any] = {"steps": steps, "tasks": len(env.tasks), "tiers": list(env.tiers), "budgets": {}}
    out["feedback"] = {}
    for label, budget in budgets.items():
        rows = [row_dict(run_router(env, name, r, budget)) for name, r in routers.items()]
        out["budgets"][label] = rows
        print(table(rows, f"k={steps}, budget {label} ({len(env.tasks)} test tasks)"), flush=True)
        fb_rows = [row_dict(run_router(feedback_env, name, r, budget)) for name, r in with_feedback.items()]
        out["feedback"][label] = fb_rows
        print(
            table(fb_rows, f"k={steps}, budget {label}, step outcomes shown, 2 attempts per step"), flush=True
        )

    frontier: dict[str, list[dict[str, Any]]] = {"bopo": [], "random-mix": [], "points": [], "feedback": []}
    for lam, router in sorted(fits.items()):
        frontier["bopo"].append(row_dict(run_router(env, f"bopo lam={lam}", router)))
    for p in np.round(np.linspace(0, 1, 11), 2):
        frontier["random-mix"].append(
            row_dict(run_router(env, f"random-mix p={p}", RandomMixRouter(p_large=float(p))))
        )
    for name in ("always-small", "always-large", "first-step-large", "bopo-sft (BoSFT init)"):
        frontier["points"].append(row_dict(run_router(env, name, routers[name])))
    frontier["feedback"] = out["feedback"]["none"][2:]
    out["frontier"] = frontier

    large = next(r for r in out["budgets"]["none"] if r["name"] == "always-large")
    headline = []
    for r in frontier["bopo"] + frontier["feedback"]:
        headline.append({
            "name": r["name"],
            "success_vs_always_large": round(r["success_rate"] - large["success_rate"], 4),
            "large_calls_saved": round(1 - r["mean_large_calls"] / large["mean_large_calls"], 4),
        })  # fmt: skip
    out["headline"] = headline
    print(
        f"\nk={steps} headline (always-large: success {large['success_rate']:.3f}, "
        f"{large['mean_large_calls']:g} large calls per task):"
    )
    for h in headline:
        saved, gap = h["large_calls_saved"], h["success_vs_always_large"]
        print(f"  {h['name']}: success {gap:+.3f}, large calls saved {saved:.0%}")
    out["training"] = {
        "fit_seconds": fit_seconds,
        "taxonomy": bopo.report_["taxonomy"],
        "sft_examples": bopo.report_["sft"]["examples"],
        "messages": bopo.report_["messages"],
    }
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def plot(results: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.2 * len(results), 4.6), squeeze=False)
    for ax, res in zip(axes[0], results, strict=True):
        fr = res["frontier"]
        rm = fr["random-mix"]
        ax.plot(
            [r["mean_cost"] for r in rm],
            [r["success_rate"] for r in rm],
            "o--",
            color="0.55",
            ms=4,
            label="random mix (P(large) 0…1)",
        )
        bp = sorted(fr["bopo"], key=lambda r: r["mean_cost"])
        ax.plot(
            [r["mean_cost"] for r in bp],
            [r["success_rate"] for r in bp],
            "s-",
            color="tab:red",
            label="BoPO (λ sweep)",
        )
        for r in bp:
            ax.annotate(
                r["name"].split()[-1],
                (r["mean_cost"], r["success_rate"]),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=7,
                color="tab:red",
            )
        markers = {
            "always-small": ("v", "tab:blue"),
            "always-large": ("^", "tab:blue"),
            "first-step-large": ("D", "tab:green"),
            "bopo-sft (BoSFT init)": ("x", "tab:purple"),
        }
        for r, m in zip(fr.get("feedback", []), ("P", "*"), strict=False):
            ax.plot(
                r["mean_cost"],
                r["success_rate"],
                m,
                color="tab:orange",
                ms=10,
                label=f"{r['name']} [step feedback]",
            )
        for r in fr["points"]:
            m, c = markers[r["name"]]
            ax.plot(r["mean_cost"], r["success_rate"], m, color=c, ms=8, label=r["name"])
        ax.set_title(f"RouterBench subset, test split: k = {res['steps']} steps, {res['tasks']} tasks")
        ax.set_xlabel("mean cost per task (USD)")
        ax.set_ylabel("task success rate (all steps right)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Success–cost frontier: tiers {' < '.join(results[0]['tiers'])}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=data_root() / "routerbench")
    parser.add_argument("--steps", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--lams", type=float, nargs="*", default=[0.1, 0.6])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "figures")
    args = parser.parse_args()
    data = load_dataset(f"routerbench:{args.data}")
    if not set(ROUTERBENCH_TIERS) <= set(data.train.models):
        raise SystemExit(f"{args.data}: expected the models {ROUTERBENCH_TIERS}")
    results = [run_k(data, k, args.lams, args.seed) for k in args.steps]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bopo_results.json").write_text(json.dumps(results, indent=1))
    print(f"\nfigure: {plot(results, args.out / 'bopo_frontier.png')}")
    print(f"figures: {args.out / 'bopo_results.json'}")


if __name__ == "__main__":
    main()

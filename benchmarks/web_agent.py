"""The web agent on MiniWoB++ in headless Chromium: success, cost and steps per router; frontier.

    python benchmarks/web_agent.py                                   # the full size below
    python benchmarks/web_agent.py --seeds 20 --model-seeds 2 --train-seeds 5 --train-model-seeds 1

Full size: 12 tasks × 20 evaluation seeds (0 … 19) for every router, the trained router fitted on
the logs of held-out training seeds (1000 …). ``--model-seeds K`` evaluates the routers that call
the local model at every step (always-small, always-large, first-step-large, strongest) on the
first K seeds only: on a shared 2-core CPU a SmolLM2-135M step takes 5–25 s. Each row reports its
own episode count and, for a matched comparison, the DOM skill's success on the same episodes.

Routers: the presets of :mod:`agentroute.web.routers` (always-skill = the DOM skill alone,
always-small = SmolLM2 direct alone, always-large = SmolLM2 cot alone, first-step-large,
cascade = skill then escalate a failed step), the registered ``cheapest`` and ``strongest`` (up to
two fallbacks within a step), and ``per-task`` trained from the memory's logged web episodes
(``fit(trajectories)``: each ok step scored by its episode's MiniWoB reward).

Writes ``--out`` (JSON: per-router figures with 95% bootstrap intervals, browser step latency,
episodes per minute) and ``--figure`` (success vs mean cost per episode).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from agentroute.budget import Budget
from agentroute.memory import open_memory
from agentroute.web.agent import EpisodeResult, WebAgent

TASKS = (
    "click-test,click-button,click-link,click-dialog,click-tab,click-option,click-checkboxes,"
    "enter-text,enter-password,login-user,choose-list,navigate-tree"
)
ROUTERS = "always-skill,cheapest,cascade,always-small,always-large,first-step-large,strongest"
MODEL_HEAVY = {"always-small", "always-large", "first-step-large", "strongest"}
TRAIN_OFFSET = 1000
ROOT = Path(__file__).resolve().parent


def bootstrap(values: list[float], *, reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95% percentile-bootstrap interval."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return (float("nan"),) * 3  # type: ignore[return-value]
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(reps, len(x)))].mean(axis=1)
    return float(x.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


async def play(
    agent: WebAgent, episodes: list[tuple[str, int]], concurrency: int, label: str
) -> tuple[list[EpisodeResult], float]:
    if agent.policy.models is None or any(m != "dom-skill" for m in agent.policy.models):
        await agent.preload()
    started = time.perf_counter()
    done = 0

    def tick(r: EpisodeResult) -> None:
        nonlocal done
        done += 1
        if done % 10 == 0 or done == len(episodes):
            print(
                f"  {label}: {done}/{len(episodes)} episodes, {time.perf_counter() - started:.0f}s",
                flush=True,
            )

    results = await agent.run_many(episodes, concurrency=concurrency, on_done=tick)
    return results, time.perf_counter() - started


def summarize(
    name: str, results: list[EpisodeResult], wall: float, skill_success: dict[tuple[str, int], bool]
) -> dict[str, Any]:
    success = bootstrap([float(r.success) for r in results])
    cost = bootstrap([r.cost_usd for r in results])
    agents: Counter[str] = Counter()
    for r in results:
        agents.update(r.agents)
    calls = sum(agents.values())
    model_calls = sum(v for k, v in agents.items() if k != "dom-skill")
    browser = [ms for r in results for ms in r.browser_ms]
    matched = [float(skill_success[(r.task, r.seed)]) for r in results if (r.task, r.seed) in skill_success]
    per_task: dict[str, dict[str, float]] = {}
    for task in dict.fromkeys(r.task for r in results):
        rs = [r for r in results if r.task == task]
        per_task[task] = {
            "episodes": len(rs),
            "success": statistics.fmean(r.success for r in rs),
            "mean_reward": statistics.fmean(r.reward for r in rs),
            "mean_cost_usd": statistics.fmean(r.cost_usd for r in rs),
            "mean_steps": statistics.fmean(r.steps for r in rs),
        }
    return {
        "router": name,
        "episodes": len(results),
        "success": success[0],
        "success_ci": success[1:],
        "mean_reward": statistics.fmean(r.reward for r in results),
        "mean_cost_usd": cost[0],
        "cost_ci": cost[1:],
        "mean_steps": statistics.fmean(r.steps for r in results),
        "calls_per_episode": calls / len(results),
        "model_calls_per_episode": model_calls / len(results),
        "failed_step_share": sum(r.failed_steps for r in results) / max(1, calls),
        "agent_mix": {k: v / max(1, calls) for k, v in agents.most_common()},
        "status": dict(Counter(r.status for r in results)),
        "skill_success_same_episodes": statistics.fmean(matched) if matched else None,
        "wall_s": wall,
        "episodes_per_min": 60 * len(results) / wall if wall else None,
        "browser_step_ms_median": statistics.median(browser) if browser else None,
        "browser_step_ms_p90": float(np.percentile(browser, 90)) if browser else None,
        "model_step_ms_median": _median(
            [ms for r in results for ms, m in zip(r.step_ms, r.step_models, strict=True) if m != "dom-skill"]
        ),
        "skill_step_ms_median": _median(
            [ms for r in results for ms, m in zip(r.step_ms, r.step_models, strict=True) if m == "dom-skill"]
        ),
        "per_task": per_task,
    }


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def frontier(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    groups: dict[tuple[float, float], list[dict[str, Any]]] = {}
    for row in rows:  # routers with the same figures share one point and one label
        groups.setdefault((round(row["mean_cost_usd"] * 1e6, 4), round(row["success"] * 100, 2)), []).append(
            row
        )
    for k, ((x, y), same) in enumerate(sorted(groups.items())):
        row = same[0]
        xerr = [[x - row["cost_ci"][0] * 1e6], [row["cost_ci"][1] * 1e6 - x]]
        yerr = [[y - row["success_ci"][0] * 100], [row["success_ci"][1] * 100 - y]]
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", capsize=3)
        label = " = ".join(r["router"] for r in same) + f" (n={row['episodes']})"
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(-40, 8 + 11 * (k % 4)), fontsize=8)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("mean cost per episode (µ$, symlog)")
    ax.set_ylabel("success rate (%)")
    ax.set_title("MiniWoB++ web agent: success vs cost per router (95% bootstrap)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    tasks = [t for t in args.tasks.split(",") if t]
    routers = [r for r in args.routers.split(",") if r]
    memory_url = args.memory or f"sqlite:///{tempfile.mkdtemp(prefix='web-bench-')}/memory.db"
    store = open_memory(memory_url)
    budget = Budget(calls=args.budget_calls) if args.budget_calls else None
    eval_seeds = list(range(args.seeds))
    rows: list[dict[str, Any]] = []
    skill_success: dict[tuple[str, int], bool] = {}

    async def evaluate(name: str, router: Any, seeds: list[int], concurrency: int) -> list[EpisodeResult]:
        agent = WebAgent(
            router=router, memory=store, budget=budget, max_steps=args.max_steps, max_tokens=args.max_tokens
        )
        episodes = [(t, s) for t in tasks for s in seeds]
        print(f"{name}: {len(episodes)} episodes", flush=True)
        try:
            results, wall = await play(agent, episodes, concurrency, name)
        finally:
            await agent.aclose()
        if name == "always-skill":
            skill_success.update({(r.task, r.seed): r.success for r in results})
        row = summarize(name, results, wall, skill_success)
        rows.append(row)
        print(
            f"  → success {row['success']:.2f} [{row['success_ci'][0]:.2f}, {row['success_ci'][1]:.2f}], "
            f"cost ${row['mean_cost_usd']:.2e}, steps {row['mean_steps']:.2f}, {row['episodes_per_min']:.1f} ep/min",
            flush=True,
        )
        return results

    for name in routers:
        heavy = name in MODEL_HEAVY
        seeds = eval_seeds[: args.model_seeds] if heavy else eval_seeds
        await evaluate(name, name, seeds, args.model_concurrency if heavy else args.concurrency)

    if args.trained:
        # training logs on held-out seeds: the skill everywhere, SmolLM2 direct on a few seeds
        train = [TRAIN_OFFSET + i for i in range(args.train_seeds)]
        for name, seeds in (("always-skill", train), ("always-small", train[: args.train_model_seeds])):
            agent = WebAgent(
                router=name, memory=store, budget=budget, max_steps=args.max_steps, max_tokens=args.max_tokens
            )
            print(f"train logs · {name}: {len(tasks) * len(seeds)} episodes", flush=True)
            try:
                await play(
                    agent,
                    [(t, s) for t in tasks for s in seeds],
                    args.model_concurrency if name in MODEL_HEAVY else args.concurrency,
                    f"train {name}",
                )
            finally:
                await agent.aclose()
        logs = [
            t
            for t in store.trajectories(graph="web_agent")
            if int(t.task.metadata.get("seed", -1)) >= TRAIN_OFFSET
        ]
        from agentroute.routers import make_router

        router = make_router(args.trained, cost_weight=args.cost_weight).fit(logs)
        print(f"{args.trained}: fitted on {len(logs)} logged training episodes", flush=True)
        await evaluate(f"{args.trained} (trained)", router, eval_seeds, args.concurrency)

    store.close()
    return {
        "tasks": tasks,
        "eval_seeds": eval_seeds,
        "model_seeds": eval_seeds[: args.model_seeds],
        "max_steps": args.max_steps,
        "max_tokens": args.max_tokens,
        "budget_calls": args.budget_calls,
        "memory": memory_url,
        "machine": f"{os.cpu_count()} CPUs (shared)",
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| router | episodes | success [95% CI] | skill on same episodes | mean cost $ [95% CI] | steps | model calls/ep | episodes/min |",
        "|---|---:|---|---:|---|---:|---:|---:|",
    ]
    for r in result["rows"]:
        skill = (
            f"{r['skill_success_same_episodes']:.2f}" if r["skill_success_same_episodes"] is not None else "-"
        )
        lines.append(
            f"| {r['router']} | {r['episodes']} | {r['success']:.2f} [{r['success_ci'][0]:.2f}, {r['success_ci'][1]:.2f}] | {skill} | "
            f"{r['mean_cost_usd']:.2e} [{r['cost_ci'][0]:.1e}, {r['cost_ci'][1]:.1e}] | {r['mean_steps']:.2f} | "
            f"{r['model_calls_per_episode']:.2f} | {r['episodes_per_min']:.1f} |"
        )
    return "\n".join(lines)


def merge(paths: list[Path]) -> dict[str, Any]:
    """One result from several runs (e.g. the fast and the model-heavy routers run side by side)."""
    parts = [json.loads(p.read_text()) for p in paths]
    merged = dict(parts[0])
    seen: set[str] = set()
    merged["rows"] = [
        r for part in parts for r in part["rows"] if not (r["router"] in seen or seen.add(r["router"]))
    ]
    merged["runs"] = [{k: v for k, v in part.items() if k != "rows"} for part in parts]
    return merged


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default=TASKS)
    p.add_argument("--routers", default=ROUTERS)
    p.add_argument("--seeds", type=int, default=20, help="evaluation seeds per task (0 … N-1)")
    p.add_argument(
        "--model-seeds",
        type=int,
        default=20,
        help="evaluation seeds for routers that call the model every step",
    )
    p.add_argument("--trained", default="per-task", help="router trained on logged episodes ('' to skip)")
    p.add_argument(
        "--cost-weight", type=float, default=1000.0, help="the trained router's λ (score − λ·cost, cost in $)"
    )
    p.add_argument("--train-seeds", type=int, default=10)
    p.add_argument("--train-model-seeds", type=int, default=10)
    p.add_argument("--max-steps", type=int, default=4)
    p.add_argument(
        "--max-tokens", type=int, default=48, help="model output limit per call (direct uses half)"
    )
    p.add_argument("--budget-calls", type=int, default=None, help="per-episode calls budget")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument(
        "--model-concurrency", type=int, default=2, help="episodes at once for model-heavy routers (batching)"
    )
    p.add_argument("--memory", default=None, help="memory URL (default: a temporary SQLite file)")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "web_agent.json")
    p.add_argument("--figure", type=Path, default=ROOT / "figures" / "web_agent_frontier.png")
    p.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        help="only merge these result files into --out/--figure",
    )
    args = p.parse_args()
    result = merge(args.merge) if args.merge else asyncio.run(main(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    frontier(result["rows"], args.figure)
    print(markdown(result))
    print(f"wrote {args.out} and {args.figure}")

"""The web agent on MiniWoB++ in headless Chromium: success, cost and steps per router; frontier.

    OMP_NUM_THREADS=1 python benchmarks/web_agent.py                 # the full size below
    python benchmarks/web_agent.py --seeds 20 --model-seeds 2 --train-seeds 5 --train-model-seeds 1
    OMP_NUM_THREADS=1 python benchmarks/web_agent.py --profile       # one SmolLM2 step, measured

Full size: 10 tasks × 20 evaluation seeds (0 … 19) for every router, the trained routers fitted on
the logs of held-out training seeds (1000 …). ``--model-seeds K`` evaluates the routers that call
the local model at every step (always-small, always-large, first-step-large, strongest) on the
first K seeds only. Each row reports its own episode count and, for a matched comparison, the DOM
skill's success on the same episodes.

Resumable: every finished episode is appended to ``--state DIR``/episodes.jsonl (the memory that
trains the routers lives there too), and a rerun with the same ``--state`` skips the episodes it
holds; ``--out`` and ``--figure`` are rewritten after every router, from that log.

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
import dataclasses
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
from agentroute.web.env import check_tasks

TASKS = (
    "click-test,click-button,click-link,click-dialog,click-tab,click-option,click-checkboxes,"
    "enter-text,choose-list,navigate-tree"
)
# cheap ones first: a run cut short still holds the skill-led rows
ROUTERS = "always-skill,cascade,cheapest,explore,always-small,always-large,first-step-large,strongest"
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


def record(phase: str, router: str, r: EpisodeResult) -> dict[str, Any]:
    """One line of the episode log."""
    d = dataclasses.asdict(r)
    d["agents"] = dict(r.agents)
    return {"phase": phase, "router": router, **d}


def from_record(d: dict[str, Any]) -> EpisodeResult:
    fields = {f.name for f in dataclasses.fields(EpisodeResult)}
    r = EpisodeResult(**{k: v for k, v in d.items() if k in fields})
    r.agents = Counter(r.agents)
    return r


def load_log(path: Path) -> dict[tuple[str, str, str, int], dict[str, Any]]:
    """The finished episodes of a log, by (phase, router, task, seed); a torn last line is skipped."""
    done: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                continue
            done[(d["phase"], d["router"], d["task"], int(d["seed"]))] = d
    return done


def summarize(
    name: str, results: list[EpisodeResult], skill_success: dict[tuple[str, int], bool]
) -> dict[str, Any]:
    wall = sum(r.seconds for r in results)  # episode time (browser reset included), resume-proof
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
    for (x, y), same in sorted(groups.items()):
        row = same[0]
        xerr = [[x - row["cost_ci"][0] * 1e6], [row["cost_ci"][1] * 1e6 - x]]
        yerr = [[y - row["success_ci"][0] * 100], [row["success_ci"][1] * 100 - y]]
        label = " = ".join(r["router"] for r in same) + f" (n={row['episodes']})"
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", capsize=3, label=label)
    ax.legend(fontsize=8, loc="center left")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("mean cost per episode (µ$, symlog)")
    ax.set_ylabel("success rate (%)")
    ax.set_title("MiniWoB++ web agent: success vs cost per router (95% bootstrap)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    tasks = check_tasks([t for t in args.tasks.split(",") if t])
    routers = [r for r in args.routers.split(",") if r]
    args.state.mkdir(parents=True, exist_ok=True)
    log_path = args.state / "episodes.jsonl"
    memory_url = args.memory or f"sqlite:///{args.state / 'memory.db'}"
    store = open_memory(memory_url)
    budget = Budget(calls=args.budget_calls) if args.budget_calls else None
    eval_seeds = list(range(args.seeds))
    done = load_log(log_path)
    print(f"{len(done)} episodes already in {log_path}", flush=True)
    rows: dict[str, dict[str, Any]] = {}
    skill_success: dict[tuple[str, int], bool] = {}

    def result() -> dict[str, Any]:
        return {
            "tasks": tasks,
            "eval_seeds": eval_seeds,
            "model_seeds": eval_seeds[: args.model_seeds],
            "train_seeds": [TRAIN_OFFSET + i for i in range(args.train_seeds)],
            "max_steps": args.max_steps,
            "max_tokens": args.max_tokens,
            "budget_calls": args.budget_calls,
            "memory": memory_url,
            "episode_log": str(log_path),
            "machine": f"{os.cpu_count()} CPUs (shared), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}",
            "rows": list(rows.values()),
        }

    async def play(
        label: str, router: Any, seeds: list[int], concurrency: int, phase: str
    ) -> list[EpisodeResult]:
        todo = [(t, s) for t in tasks for s in seeds if (phase, label, t, s) not in done]
        total = len(tasks) * len(seeds)
        print(f"{phase} · {label}: {total} episodes, {len(todo)} to play", flush=True)
        if todo:
            agent = WebAgent(
                router=router,
                memory=store,
                budget=budget,
                max_steps=args.max_steps,
                max_tokens=args.max_tokens,
            )
            started, count = time.perf_counter(), 0

            def finished(r: EpisodeResult) -> None:
                nonlocal count
                d = record(phase, label, r)
                with log_path.open("a") as f:
                    f.write(json.dumps(d) + "\n")
                done[(phase, label, r.task, r.seed)] = d
                count += 1
                if count % 10 == 0 or count == len(todo):
                    print(f"  {label}: {count}/{len(todo)}, {time.perf_counter() - started:.0f}s", flush=True)

            try:
                await agent.run_many(todo, concurrency=concurrency, on_done=finished)
            finally:
                await agent.aclose()
        return [from_record(done[(phase, label, t, s)]) for t in tasks for s in seeds]

    def report(label: str, results: list[EpisodeResult]) -> None:
        if label == "always-skill":
            skill_success.update({(r.task, r.seed): r.success for r in results})
        row = rows[label] = summarize(label, results, skill_success)
        print(
            f"  → {label}: success {row['success']:.2f} [{row['success_ci'][0]:.2f}, {row['success_ci'][1]:.2f}], "
            f"cost ${row['mean_cost_usd']:.2e}, steps {row['mean_steps']:.2f}, {row['episodes_per_min']:.1f} ep/min",
            flush=True,
        )
        write(result(), args.out, args.figure)

    heavy = [r for r in routers if r in MODEL_HEAVY]
    for name in [r for r in routers if r not in MODEL_HEAVY]:  # skill-led first
        report(name, await play(name, name, eval_seeds, args.concurrency, "eval"))

    trained = [t for t in args.trained.split(",") if t]
    if trained:
        # training logs on held-out seeds: the skill everywhere, SmolLM2 direct and cot on a few
        train = [TRAIN_OFFSET + i for i in range(args.train_seeds)]
        for name, seeds in (
            ("always-skill", train),
            ("always-small", train[: args.train_model_seeds]),
            ("always-large", train[: args.train_model_seeds]),
        ):
            await play(
                name,
                name,
                seeds,
                args.model_concurrency if name in MODEL_HEAVY else args.concurrency,
                "train",
            )
        from agentroute.routers import make_router

        for name in trained:
            label = f"{name} (trained)"
            if all(("eval", label, t, s) in done for t in tasks for s in eval_seeds):
                report(label, await play(label, None, eval_seeds, args.concurrency, "eval"))
                continue
            logs = [
                t
                for t in store.trajectories(graph="web_agent")
                if int(t.task.metadata.get("seed", -1)) >= TRAIN_OFFSET
            ]
            try:
                router = make_router(name, cost_weight=args.cost_weight).fit(logs)
            except Exception as exc:  # a router that cannot fit here is reported, the run goes on
                print(
                    f"{label}: could not fit on {len(logs)} episodes: {type(exc).__name__}: {exc}", flush=True
                )
                continue
            print(f"{label}: fitted on {len(logs)} logged training episodes", flush=True)
            report(label, await play(label, router, eval_seeds, args.concurrency, "eval"))

    for name in heavy:
        seeds = eval_seeds[: args.model_seeds]
        report(name, await play(name, name, seeds, args.model_concurrency, "eval"))

    store.close()
    return result()


def write(result: dict[str, Any], out: Path, figure: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    if result["rows"]:
        frontier(result["rows"], figure)


def profile(args: argparse.Namespace) -> None:
    """One SmolLM2 web step, measured: prompt tokens, prefill and whole-call time, output tokens, and
    how often the answer parses, is legal, and equals the DOM skill's action, with the worked
    examples as chat turns (``shots``) and without. Pages: the first ≤ 3 pages of seeds 500–502 of
    each task, played by the DOM skill (its action is the reference)."""
    import torch

    from agentroute.pool.backends.local import DEFAULT_GGUF, LocalModel
    from agentroute.strategies import get_strategy
    from agentroute.types import CompletionRequest
    from agentroute.web.actions import ActionError, check_action, parse_action
    from agentroute.web.agent import PROMPT, with_shots
    from agentroute.web.dom import render
    from agentroute.web.env import MiniWoBSession
    from agentroute.web.skill import dom_policy

    pages = []
    for task in check_tasks([t for t in args.tasks.split(",") if t]):
        with MiniWoBSession(task) as session:
            for seed in (500, 501, 502):
                page, history = session.reset(seed), []
                for _ in range(3):
                    p = page.with_history(history)
                    act = dom_policy(p)
                    pages.append((task, p, str(act) if act else None))
                    if act is None:
                        break
                    outcome = session.execute(act)
                    history.append(str(act))
                    if outcome.done or outcome.page is None:
                        break
                    page = outcome.page
    # one page per (task, first page or later): 17 pages over the 12 default tasks of issue 15
    seen: set[tuple[str, bool]] = set()
    picked = [
        x
        for x in pages
        if not ((x[0], len(x[1].history) > 0) in seen or seen.add((x[0], len(x[1].history) > 0)))
    ]
    model = LocalModel.shared(DEFAULT_GGUF)
    out = []
    for shots in (False, True):
        for name in ("direct", "cot"):
            strategy = get_strategy(name)
            limit = max(1, int(args.max_tokens * strategy.max_tokens_factor))
            counts = Counter()
            tin, tout, pre, call = [], [], [], []
            for _task, page, ref in picked:
                req = CompletionRequest(
                    model="m",
                    messages=[
                        {"role": "system", "content": strategy.system_prompt(PROMPT)},
                        {"role": "user", "content": render(page) + "\nAnswer:"},
                    ],
                    max_tokens=limit,
                )
                ids = model.prompt_ids((with_shots(req) if shots else req).messages)
                t0 = time.perf_counter()
                with torch.inference_mode():
                    model.model(torch.tensor([ids]))
                pre.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                (g,) = model.generate([ids], [limit], 0.0)
                call.append(time.perf_counter() - t0)
                tin.append(g.tokens_in)
                tout.append(g.tokens_out)
                try:
                    action = check_action(parse_action(g.text), page.refs, page.typeable_refs)
                    counts["legal"] += 1
                    counts["same as skill"] += int(str(action) == ref)
                except ActionError as exc:
                    counts[str(exc).split(":")[0]] += 1
            row = {
                "shots": shots,
                "strategy": name,
                "pages": len(picked),
                "max_tokens": limit,
                "outcomes": dict(counts),
                "parsed": len(picked) - counts["unparsable action"],
                "prompt_tokens_median": statistics.median(tin),
                "output_tokens_mean": statistics.fmean(tout),
                "prefill_ms_median": 1000 * statistics.median(pre),
                "call_ms_median": 1000 * statistics.median(call),
                "decode_ms_per_token": 1000
                * (statistics.fmean(call) - statistics.fmean(pre))
                / max(1.0, statistics.fmean(tout)),
            }
            out.append(row)
            print(json.dumps(row), flush=True)
    path = args.out.with_name("web_agent_profile.json")
    path.write_text(
        json.dumps(
            {
                "machine": f"{os.cpu_count()} CPUs (shared), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}",
                "rows": out,
            },
            indent=2,
        )
    )
    print(f"wrote {path}")


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
    p.add_argument(
        "--trained",
        default="per-task,knn",
        help="routers trained on logged episodes, comma-separated ('' to skip)",
    )
    p.add_argument(
        "--cost-weight", type=float, default=1000.0, help="the trained router's λ (score − λ·cost, cost in $)"
    )
    p.add_argument("--train-seeds", type=int, default=10)
    p.add_argument("--train-model-seeds", type=int, default=3)
    p.add_argument("--max-steps", type=int, default=3)
    p.add_argument(
        "--max-tokens", type=int, default=32, help="model output limit per call (direct uses half)"
    )
    p.add_argument("--budget-calls", type=int, default=4, help="per-episode calls budget (0: none)")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument(
        "--model-concurrency",
        type=int,
        default=1,
        help="episodes at once for model-heavy routers (>1 batches their calls, but each step waits longer)",
    )
    p.add_argument(
        "--state", type=Path, default=Path(tempfile.gettempdir()) / "web-bench", help="episode log + memory"
    )
    p.add_argument("--memory", default=None, help="memory URL (default: STATE/memory.db)")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "web_agent.json")
    p.add_argument("--figure", type=Path, default=ROOT / "figures" / "web_agent_frontier.png")
    p.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        help="only merge these result files into --out/--figure",
    )
    p.add_argument("--profile", action="store_true", help="only profile SmolLM2 web steps (see profile())")
    args = p.parse_args()
    if args.profile:
        profile(args)
        raise SystemExit(0)
    result = merge(args.merge) if args.merge else asyncio.run(main(args))
    write(result, args.out, args.figure)
    print(markdown(result))
    print(f"wrote {args.out} and {args.figure}")

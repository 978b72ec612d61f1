"""Router-R1 on held-out HotpotQA: EM, F1, cost, route calls and format-valid rate.

Compares the think/route policy (untrained SmolLM2-135M, after the SFT warm-up, after GRPO) with
each single agent of the recipe's pool answering directly and with the knn router choosing one
agent per question (fitted on the same agents' outcomes on the training questions). Every call is
a real local-model call through the dispatcher under the recipe's per-task budget; the routed
agents get no retrieval skill (closed-book).

    .venv/bin/python benchmarks/router_r1.py --n 50 --sft runs/router_r1/sft --grpo runs/router_r1/policy \\
        --summary runs/router_r1/summary.json --png benchmarks/router_r1_training.png
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _score(pred: str | None, gold: str) -> tuple[float, float]:
    from agentroute.routers.router_r1.rewards import exact_match, token_f1

    return exact_match(pred, [gold]), token_f1(pred, [gold])


async def single_agents(pool, router, rows, budget, max_tokens) -> dict[str, list[dict[str, Any]]]:
    from agentroute.dispatch.dispatcher import Dispatcher
    from agentroute.routers.router_r1.prompts import AGENT_PROMPT

    dispatcher = Dispatcher(pool, router)
    sem = asyncio.Semaphore(8)
    out: dict[str, list[dict[str, Any]]] = {}
    for card in pool:
        async def one(row, card=card):
            run = dispatcher.start(row["question"], budget=budget, graph="single")
            async with sem:
                step = await dispatcher.step(run, role="executor", stage="route", prompt=AGENT_PROMPT,
                                             input=row["question"], models=[card.id], max_tokens=max_tokens)
            ans = step.output.strip() if step is not None and step.status == "ok" else None
            dispatcher.finish(run, answer=ans)
            em, f1 = _score(ans, row["answer"])
            return {"em": em, "f1": f1, "cost": step.cost_usd if step else 0.0, "calls": 1 if step else 0, "valid": None}
        out[card.id] = list(await asyncio.gather(*(one(r) for r in rows)))
    return out


async def knn_routed(pool, train_outcomes, train_rows, rows, budget, max_tokens) -> list[dict[str, Any]]:
    from agentroute.dispatch.dispatcher import Dispatcher
    from agentroute.outcomes import OutcomeTable, agent_column
    from agentroute.routers.knn import KNNRouter
    from agentroute.routers.router_r1.prompts import AGENT_PROMPT
    from agentroute.types import Agent

    cards = list(pool)
    table = OutcomeTable(
        query_ids=[r["id"] for r in train_rows], queries=[r["question"] for r in train_rows],
        models=[agent_column(Agent(model=c.id, strategy=c.strategies[0])) for c in cards],
        scores=np.array([[train_outcomes[c.id][i]["f1"] for c in cards] for i in range(len(train_rows))]),
        costs=np.array([[train_outcomes[c.id][i]["cost"] for c in cards] for i in range(len(train_rows))]),
    )
    router = KNNRouter(k=10).fit(table)
    dispatcher = Dispatcher(pool, router)
    sem = asyncio.Semaphore(8)

    async def one(row):
        run = dispatcher.start(row["question"], budget=budget, graph="knn")
        async with sem:
            step = await dispatcher.step(run, role="executor", stage="route", prompt=AGENT_PROMPT,
                                         input=row["question"], max_tokens=max_tokens)
        ans = step.output.strip() if step is not None and step.status == "ok" else None
        dispatcher.finish(run, answer=ans)
        em, f1 = _score(ans, row["answer"])
        return {"em": em, "f1": f1, "cost": step.cost_usd if step else 0.0, "calls": 1 if step else 0, "valid": None,
                "agent": step.agent.model if step else None}

    return list(await asyncio.gather(*(one(r) for r in rows)))


async def router_r1(policy_spec, pool, router, settings, rows, budget, batch=8) -> list[dict[str, Any]]:
    from agentroute.dispatch.dispatcher import Dispatcher
    from agentroute.routers.router_r1.agent import ThinkRouteLoop
    from agentroute.training.lm_policy import HFPolicy

    loop = ThinkRouteLoop(HFPolicy.load(policy_spec), pool, settings)
    dispatcher = Dispatcher(pool, router)
    out = []
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        eps = [loop.episode(r["question"], dispatcher.start(r["question"], budget=budget, graph="router_r1")) for r in chunk]
        await loop.run(eps, dispatcher)
        for ep, row in zip(eps, chunk, strict=True):
            fallback = ep.answer if ep.answer is not None else ep.run.best_answer
            dispatcher.finish(ep.run, answer=fallback)
            em, f1 = _score(ep.answer, row["answer"])
            em_fb, _ = _score(fallback, row["answer"])
            out.append({"em": em, "f1": f1, "em_fallback": em_fb, "cost": sum(s.cost_usd for s in ep.run.steps),
                        "calls": ep.route_calls, "valid": ep.format_valid, "turns": len(ep.turns), "text": ep.text})
    return out


def summarize(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    valid = [r["valid"] for r in rows if r["valid"] is not None]
    return {
        "system": name, "n": len(rows),
        "EM": float(np.mean([r["em"] for r in rows])), "F1": float(np.mean([r["f1"] for r in rows])),
        "EM_fallback": float(np.mean([r.get("em_fallback", r["em"]) for r in rows])),
        "cost_usd_per_q": float(np.mean([r["cost"] for r in rows])),
        "route_calls_per_q": float(np.mean([r["calls"] for r in rows])),
        "format_valid": float(np.mean(valid)) if valid else None,
    }


def plot_training(summary_path: Path, png: Path) -> list[dict[str, float]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = json.loads(summary_path.read_text())["grpo"]["log_history"]
    rows = [{"step": h["step"], "reward": h["reward"], "format_valid": h.get("rewards/format_valid_reward/mean", float("nan"))}
            for h in hist if "reward" in h]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["step"] for r in rows], [r["reward"] for r in rows], marker="o", label="GRPO reward (mean)")
    ax.plot([r["step"] for r in rows], [r["format_valid"] for r in rows], marker="s", label="format-valid rate")
    ax.set_xlabel("GRPO step")
    ax.set_ylim(-1.05, 1.05)
    ax.axhline(0, color="grey", lw=0.5)
    ax.legend()
    ax.set_title("Router-R1 GRPO on CPU (SmolLM2-135M policy)")
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="training/router_r1.yaml")
    ap.add_argument("--n", type=int, default=50, help="held-out questions (the data has 100: 50 train, 50 held out)")
    ap.add_argument("--sft", default=None, help="policy directory after the SFT warm-up")
    ap.add_argument("--grpo", default=None, help="policy directory after GRPO")
    ap.add_argument("--no-untrained", action="store_true")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--summary", default=None, help="summary.json of a training run: plot reward / format-valid per step")
    ap.add_argument("--png", default="benchmarks/router_r1_training.png")
    ap.add_argument("--out", default=None, help="write the table and per-question rows as JSON")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from agentroute.budget import Budget
    from agentroute.loading import load_router
    from agentroute.routers.router_r1.agent import LoopSettings
    from agentroute.routers.router_r1.data import load_hotpotqa, split
    from agentroute.routers.router_r1.trainer import RouterR1TrainConfig

    cfg = RouterR1TrainConfig.from_yaml(args.recipe)
    pool, router = cfg.make_pool(), load_router(cfg.router)
    settings = LoopSettings(**cfg.loop)
    budget = Budget(**cfg.budget) if cfg.budget else None
    train_rows, held = split(load_hotpotqa(cfg.data.get("path")), int(cfg.data.get("train", 50)))
    rows = held[: args.n]
    print(f"{len(rows)} held-out HotpotQA questions (of {len(held)}); pool {[c.id for c in pool]}; budget {cfg.budget}")
    table, per_q, seconds = [], {}, {}

    def record(name, result, started):
        seconds[name] = time.perf_counter() - started
        per_q[name] = result
        table.append({**summarize(name, result), "seconds": round(seconds[name], 1)})
        print(json.dumps(table[-1]), flush=True)

    if not args.no_baselines:
        started = time.perf_counter()
        singles = asyncio.run(single_agents(pool, router, rows, budget, settings.route_max_tokens))
        for name, res in singles.items():
            record(f"single:{name}", res, started)
        started = time.perf_counter()
        train_out = asyncio.run(single_agents(pool, router, train_rows, budget, settings.route_max_tokens))
        record("knn (one agent per question)", asyncio.run(knn_routed(pool, train_out, train_rows, rows, budget, settings.route_max_tokens)), started)
    for label, spec, skip in (("router-r1 untrained", None, args.no_untrained), ("router-r1 SFT", args.sft, not args.sft), ("router-r1 SFT+GRPO", args.grpo, not args.grpo)):
        if skip:
            continue
        started = time.perf_counter()
        record(label, asyncio.run(router_r1(spec, pool, router, settings, rows, budget)), started)

    print("\n| system | n | EM | F1 | EM (fallback) | $ / question | route calls / q | format-valid |")
    print("|---|---|---|---|---|---|---|---|")
    for t in table:
        fv = "–" if t["format_valid"] is None else f"{t['format_valid']:.2f}"
        print(f"| {t['system']} | {t['n']} | {t['EM']:.3f} | {t['F1']:.3f} | {t['EM_fallback']:.3f} | {t['cost_usd_per_q']:.2e} | {t['route_calls_per_q']:.2f} | {fv} |")
    curve = None
    if args.summary:
        curve = plot_training(Path(args.summary), Path(args.png))
        print(f"\nGRPO curve → {args.png}: {curve}")
    if args.out:
        Path(args.out).write_text(json.dumps({"table": table, "per_question": per_q, "curve": curve}, indent=1))


if __name__ == "__main__":
    main()

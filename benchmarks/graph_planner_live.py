"""GraphPlanner in the live local environment: the planner graph run for real on SmolLM2-135M.

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python benchmarks/graph_planner_live.py \\
        --train-per-task 50 --test-per-task 50 --episodes 512 --per-update 32 --lambdas 0,0.3 \\
        --budgets 0.7,1.5,3,6 --train-fixed --memory-effect --out /tmp/gp_live.json

Questions: multiple-choice ARC-Challenge, OpenBookQA and CommonsenseQA (``$AGENTROUTE_DATA/llmrouter``
query data): ``--train-per-task`` of each from the train file, ``--test-per-task`` of each from the
test file (held out). Pool: SmolLM2-135M as ``smol-direct`` and ``smol-cot``
(:func:`~agentroute.routers.graph_planner.live_env.live_pool`). Every method runs the planner graph
through the dispatcher; the pool is wrapped by the response cache kept in a SQLite memory
(``--cache``) with ``charge_hits``: a prompt already answered costs no compute and is charged
what its first call cost, so costs and budgets read as live.

1. Execute-only with each agent on the train questions, into a SQL memory with gold-score
   feedback: the single-round routers' training table, GraphPlanner's first historical rows and
   cost_scale (the mean cost of the costliest agent).
2. GraphPlanner per λ: a fresh policy trained live by PPO (``--episodes`` episodes through the
   graph, sampled actions, reward = gold score − λ·cost/cost_scale), evaluated greedy on the
   held-out questions with the memory of step 1 and its training episodes as historical memory.
3. Fixed workflows on the held-out questions: execute-only and plan→execute→summarize with each agent.
4. Single-round routers (per-task, knn, graph-router) fitted on step 1's table, picking the
   agent of the execute-only workflow, over their knob grid (AIQ over the two agents' cost range).
5. Hard budgets: the first λ's policy under ``--budgets`` (multiples of cost_scale): violations
   and the mask rate.

``--train-fixed`` also runs the fixed workflows on the train questions (what the policy could learn);
``--memory-effect`` evaluates each policy again with no historical memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentroute.budget import Budget  # noqa: E402
from agentroute.eval.harness import knob_values  # noqa: E402
from agentroute.eval.metrics import aiq  # noqa: E402
from agentroute.memory import open_memory  # noqa: E402
from agentroute.outcomes import OutcomeTable, agent_column  # noqa: E402
from agentroute.routers import make_router  # noqa: E402
from agentroute.routers.graph_planner.graph import build_planner_graph  # noqa: E402
from agentroute.routers.graph_planner.live import with_response_cache  # noqa: E402
from agentroute.routers.graph_planner.live_env import (  # noqa: E402
    FixedWorkflowRouter,
    init_policy,
    live_pool,
    load_mcq,
    role_actions,
    run_questions,
    summarize,
    train_live,
)
from agentroute.routers.graph_planner.router import GraphPlannerRouter  # noqa: E402
from agentroute.types import Agent  # noqa: E402

AGENTS = ("smol-direct:direct", "smol-cot:cot")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Live:
    """The cached pool, the graph settings and the hit/miss counters."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.pool = live_pool(direct_tokens=args.direct_tokens, cot_tokens=args.cot_tokens)
        self.cache = open_memory(f"sqlite:///{args.cache}")
        self.caches = with_response_cache(self.pool, self.cache, charge_hits=True)
        self.graph_kw = {"max_planner_calls": args.max_planner_calls, "max_subqueries": args.max_subqueries,
                         "max_tokens": {"planner": args.planner_tokens}, "memory_rows": 0}

    def counters(self) -> tuple[int, int]:
        c = self.caches["local"]
        return c.hits, c.misses

    def app(self, router: Any, *, greedy: bool = True, memory: Any = None) -> Any:
        return build_planner_graph(greedy=greedy, **self.graph_kw).compile(
            pool=self.pool, router=router, memory=memory, allow_new_agents=True)

    async def run(self, name: str, router: Any, questions: list[dict], *, budget_usd: float | None = None,
                  memory: Any = None) -> tuple[dict, list[dict]]:
        h0, m0 = self.counters()
        t0 = time.perf_counter()
        done = [0]

        def tick(row: dict) -> None:
            done[0] += 1
            if done[0] % 25 == 0 or done[0] == len(questions):
                log(f"  {name}: {done[0]}/{len(questions)} ({self.counters()[1] - m0} model calls)")

        rows = await run_questions(self.app(router, memory=memory), questions,
                                   budget=Budget(usd=budget_usd) if budget_usd is not None else None,
                                   concurrency=self.args.concurrency, on_done=tick)
        res = summarize(rows, budget_usd)
        h1, m1 = self.counters()
        res.update(hits=h1 - h0, misses=m1 - m0, seconds=time.perf_counter() - t0, actions=role_actions(rows))
        log(f"{name}: acc {res['accuracy']:.3f} cost ${res['cost']:.3g} steps {res['steps']:.2f} planned "
            f"{res['planned']:.2f} mask rate {res['mask_rate']:.3f} exhausted {res['exhausted']} "
            f"({res['misses']} calls, {res['hits']} cached, {res['seconds']:.0f}s)")
        return res, rows


def outcome_table(questions: list[dict], rows: dict[str, list[dict]]) -> OutcomeTable:
    cols = [agent_column(Agent(model=a.split(":")[0], strategy=a.split(":")[1])) for a in AGENTS]
    return OutcomeTable(
        query_ids=[q["id"] for q in questions], queries=[q["question"] for q in questions], models=cols,
        scores=np.array([[rows[a][i]["score"] for a in AGENTS] for i in range(len(questions))], float),
        costs=np.array([[rows[a][i]["cost"] for a in AGENTS] for i in range(len(questions))], float),
        task_types=[q["task"] for q in questions],
    )


async def main(args: argparse.Namespace) -> dict:
    report: dict[str, Any] = {"command": " ".join(sys.argv), "args": vars(args)}
    train_q = load_mcq("train", args.train_per_task)
    test_q = load_mcq("test", args.test_per_task)
    log(f"{len(train_q)} train / {len(test_q)} held-out questions; cache {args.cache}")
    live = Live(args)
    t0 = time.perf_counter()
    await live.pool.preload()
    log(f"pool loaded in {time.perf_counter() - t0:.1f}s")
    tmp = Path(tempfile.mkdtemp(prefix="gp_live_"))

    # 1. execute-only on the train questions: the routers' table, the first historical rows, cost_scale
    seeds: dict[str, list[dict]] = {}
    seed_memories = []
    for lam_i in range(len(args.lambdas)):
        mem = open_memory(f"sqlite:///{tmp}/train_{lam_i}.db")
        seed_memories.append(mem)
        for a in AGENTS:
            _, seeds[a] = await live.run(f"train execute-only {a} → memory {lam_i}", FixedWorkflowRouter(a), train_q, memory=mem)
    table = outcome_table(train_q, seeds)
    cost_scale = float(max(table.costs.mean(0)))
    report["train"] = {a: {"accuracy": float(table.scores[:, j].mean()), "cost": float(table.costs[:, j].mean())}
                       for j, a in enumerate(AGENTS)}
    report["cost_scale"] = cost_scale
    log(f"train: {report['train']}; cost_scale ${cost_scale:.3g}")

    # 2. GraphPlanner: PPO episodes through the live graph, then greedy on the held-out questions
    report["graph_planner"], planners = {}, {}
    for lam_i, lam in enumerate(args.lambdas):
        router = init_policy(GraphPlannerRouter(cost_weight=lam, lr_policy=args.lr, lr_value=2 * args.lr,
                                                episodes_per_update=args.per_update, seed=args.seed), AGENTS, cost_scale)
        h0, m0 = live.counters()

        def progress(row: dict, lam: float = lam, m0: int = m0) -> None:
            log(f"  λ={lam} ep {row['episodes']}: reward {row['reward']:.3f} score {row['score']:.3f} cost ${row['cost']:.3g} "
                f"planned {row['planned']:.2f} steps {row['steps']:.2f} exhausted {row['exhausted']} violations "
                f"{row['violations']} memory {row['history_rows']} rows; calls {live.counters()[1] - m0} ({row['seconds']:.0f}s)")

        train_log = await train_live(router, live.app(router, greedy=False, memory=seed_memories[lam_i]), train_q,
                                     episodes=args.episodes, per_update=args.per_update, concurrency=args.concurrency,
                                     memory=seed_memories[lam_i], seed=args.seed, progress=progress)
        h1, m1 = live.counters()
        router.attach_memory(seed_memories[lam_i], limit=10_000)  # train questions only: the held-out ones never enter it
        res, rows = await live.run(f"GraphPlanner λ={lam}", router, test_q)
        res.update(train_seconds=router.train_seconds_, train_calls=m1 - m0, train_hits=h1 - h0,
                   history_rows=len(router.history) if router.history is not None else 0, train_log=train_log)
        report["graph_planner"][str(lam)] = res
        planners[lam] = router
        router.save(tmp / f"policy_{lam}")
        report["graph_planner"][str(lam)]["examples"] = [r for r in rows if r["steps"] > 1][:3]
        if args.memory_effect:  # the same policy with no historical memory
            history = router.history
            router.attach_memory(None)
            res0, _ = await live.run(f"GraphPlanner λ={lam}, no historical memory", router, test_q)
            report["graph_planner"][str(lam)]["without_memory"] = {k: res0[k] for k in ("accuracy", "cost", "steps", "planned")}
            router.attach_memory(history)

    # 3. fixed workflows
    report["fixed"], singles = {}, []
    for a in AGENTS:
        for plan in (False, True):
            name = f"{'plan→execute→summarize' if plan else 'execute-only'} {a}"
            res, _ = await live.run(name, FixedWorkflowRouter(a, plan=plan), test_q)
            report["fixed"][name] = res
            if not plan:
                singles.append([res["cost"], res["accuracy"]])
    if args.train_fixed:  # what the policy could learn: the fixed workflows on its own training questions
        report["fixed_train"] = {}
        for a in AGENTS:
            for plan in (False, True):
                name = f"{'plan→execute→summarize' if plan else 'execute-only'} {a}"
                report["fixed_train"][name], _ = await live.run(f"train {name}", FixedWorkflowRouter(a, plan=plan), train_q)
    singles_arr = np.asarray(singles)
    report["zero_router_aiq"] = aiq(singles_arr, singles_arr)
    for res in report["fixed"].values():
        res["aiq"] = aiq([[res["cost"], res["accuracy"]]], singles_arr)
    for res in report["graph_planner"].values():
        res["aiq"] = aiq([[res["cost"], res["accuracy"]]], singles_arr)
    pts = [[r["cost"], r["accuracy"]] for r in report["graph_planner"].values()]
    report["graph_planner_curve_aiq"] = aiq(pts, singles_arr)

    # 4. single-round routers over the execute-only workflow
    report["single_round"] = {}
    for name in [r for r in args.routers.split(",") if r]:
        params = {"epochs": 200} if name == "graph-router" else {}
        t0 = time.perf_counter()
        router = make_router(name, **params).fit(table)
        fit_s = time.perf_counter() - t0
        points = []
        for value in knob_values(router):
            if value is not None:
                router.set_params(**{str(router.knob): value})
            res, _ = await live.run(f"{name} ({router.knob}={value})", router, test_q)
            points.append({"knob": value, "accuracy": res["accuracy"], "cost": res["cost"], "actions": res["actions"]})
        best = max(points, key=lambda p: (p["accuracy"], -p["cost"]))
        report["single_round"][name] = {"aiq": aiq([[p["cost"], p["accuracy"]] for p in points], singles_arr),
                                        "best": best, "points": points, "fit_seconds": fit_s}

    # 5. hard budgets
    base = planners[args.lambdas[0]]
    report["budgets"] = {}
    for mult in args.budgets:
        usd = cost_scale * mult
        res, rows = await live.run(f"GraphPlanner λ={args.lambdas[0]} budget ${usd:.3g}", base, test_q, budget_usd=usd)
        report["budgets"][f"{usd:.3g}"] = res
    await live.pool.aclose()
    for mem in seed_memories:
        mem.close()
    live.cache.close()
    report["cache"] = dict(zip(("hits", "misses"), live.counters(), strict=True))
    return report


def table_md(report: dict) -> str:
    lines = ["| method | accuracy | cost $/query | AIQ | steps | planned |", "|---|---|---|---|---|---|"]
    for lam, r in report["graph_planner"].items():
        lines.append(f"| GraphPlanner λ = {lam} (live PPO) | {r['accuracy']:.3f} | {r['cost']:.3g} | {r['aiq']:.3f} | "
                     f"{r['steps']:.2f} | {r['planned']:.2f} |")
    if len(report["graph_planner"]) > 1:
        lines.append(f"| GraphPlanner, curve of the λ | | | {report['graph_planner_curve_aiq']:.3f} | | |")
    for name, r in report["fixed"].items():
        lines.append(f"| {name} | {r['accuracy']:.3f} | {r['cost']:.3g} | {r['aiq']:.3f} | {r['steps']:.2f} | {r['planned']:.2f} |")
    for name, r in report["single_round"].items():
        b = r["best"]
        lines.append(f"| {name} (execute-only, knob sweep; best point) | {b['accuracy']:.3f} | {b['cost']:.3g} | {r['aiq']:.3f} | | |")
    lines.append(f"| zero router (the two agents' hull) | | | {report['zero_router_aiq']:.3f} | | |")
    return "\n".join(lines)


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-per-task", type=int, default=15)
    ap.add_argument("--test-per-task", type=int, default=35)
    ap.add_argument("--episodes", type=int, default=256, help="live PPO episodes per λ")
    ap.add_argument("--per-update", type=int, default=16, help="episodes per PPO update")
    ap.add_argument("--lambdas", type=lambda s: [float(x) for x in s.split(",")], default=[0.0, 0.3])
    ap.add_argument("--lr", type=float, default=5e-4, help="policy learning rate (value: twice it)")
    ap.add_argument("--routers", default="per-task,knn,graph-router")
    ap.add_argument("--budgets", type=lambda s: [float(x) for x in s.split(",") if x], default=[0.3, 1.0, 3.0],
                    help="budget sweep, multiples of cost_scale")
    ap.add_argument("--max-planner-calls", type=int, default=1)
    ap.add_argument("--max-subqueries", type=int, default=2)
    ap.add_argument("--planner-tokens", type=int, default=48)
    ap.add_argument("--direct-tokens", type=int, default=16, help="smol-direct's card limit (the strategy halves it)")
    ap.add_argument("--cot-tokens", type=int, default=64)
    ap.add_argument("--train-fixed", action="store_true", help="also run the fixed workflows on the train questions")
    ap.add_argument("--memory-effect", action="store_true", help="also evaluate each policy without historical memory")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "gp_live_cache.db"),
                    help="SQLite memory of the response cache (kept between runs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    return ap.parse_args()


if __name__ == "__main__":
    args = parse()
    started = time.perf_counter()
    report = asyncio.run(main(args))
    report["wall_seconds"] = time.perf_counter() - started
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1, default=str))
    print(table_md(report))
    print(json.dumps({k: report[k] for k in ("train", "cost_scale", "budgets", "cache", "wall_seconds")}, indent=1, default=str))

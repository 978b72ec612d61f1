"""GraphPlanner on the offline RouterBench environment: quality, cost, budgets, memory, latency.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/graph_planner.py --episodes 12000 --lr 5e-4 \\
        --lambdas 0,0.1,0.3,1 --out /tmp/graph_planner.json

What it measures (test split of the RouterBench subset under ``$AGENTROUTE_DATA``; training on the
train split only):

1. GraphPlanner (greedy policy, historical memory = 10k rows of the SQL memory) for each λ, against
   fixed workflows in the same environment — execute-only and plan→execute→summarize with the
   cheapest and the strongest agent (by train accuracy) — and against single-round routers
   (per-task, knn, graph-router) choosing the agent of the execute-only workflow (their AIQ over
   their knob sweep; the GraphPlanner curve is its λ points).
2. λ = 0 (the reference reward) vs λ > 0: accuracy and cost.
3. Budget sweep: accuracy, mean cost, violations (cost > budget) and the mask rate (legal actions
   masked by the budget, over legal actions).
4. Memory effect: the same policy (λ = ``--base-lambda``) given 0, 1k and 10k historical rows read from the SQL memory,
   with the agents' learned ids, and with every agent seen as unknown (a new pool: only the cost
   features and the memory's rows tell the agents apart).
5. Training time on this CPU and decision latency p50/p99 (``act``: embeddings cached, memory lookup,
   features, policy forward).
6. The planner graph (LangGraph, dispatcher, replay backend over the test split) on a few test
   queries with a budget: statuses and violations.

What is real and what is composed in the offline environment: ``agentroute.routers.graph_planner.env``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentroute.budget import Budget  # noqa: E402
from agentroute.eval.datasets import load_dataset  # noqa: E402
from agentroute.eval.harness import build_contexts, sweep_router  # noqa: E402
from agentroute.eval.metrics import aiq, single_model_points  # noqa: E402
from agentroute.memory import open_memory  # noqa: E402
from agentroute.routers.base import make_router  # noqa: E402
from agentroute.routers.graph_planner.env import OfflineEnv  # noqa: E402
from agentroute.routers.graph_planner.mdp import EXECUTE, PLAN, SUMMARIZE  # noqa: E402
from agentroute.routers.graph_planner.memory import HistoryMemory  # noqa: E402
from agentroute.routers.graph_planner.router import GraphPlannerRouter  # noqa: E402
from agentroute.routers.graph_planner.trainer import run_episode  # noqa: E402
from agentroute.routers.utility import embed_texts  # noqa: E402
from agentroute.types import Agent, Step, Task  # noqa: E402


def fill_memory(memory, table, rows: int, seed: int = 0) -> int:
    """Write ``rows`` logged train outcomes into the SQL memory as one-step tasks (memory API only)."""
    rng = np.random.default_rng(seed)
    q_idx, m_idx = np.nonzero(~np.isnan(table.scores))
    pick = rng.permutation(len(q_idx))[:rows]
    for p in pick:
        i, j = int(q_idx[p]), int(m_idx[p])
        task = Task(query=table.queries[i], graph="logged", metadata={"query_id": table.query_ids[i]})
        memory.start_task(task)
        cost = float(table.costs[i, j])
        memory.record_step(Step(task_id=task.id, index=0, stage="execute", agent=Agent(model=table.models[j]),
                                input=table.queries[i], output="", cost_usd=cost, score=float(table.scores[i, j])))
        task.status, task.score, task.cost_usd = "done", float(table.scores[i, j]), cost
        memory.finish_task(task)
    memory.flush()
    return len(pick)


def evaluate_policy(router: GraphPlannerRouter, env: OfflineEnv, emb: np.ndarray, history, budget: float | None,
                    *, hide_ids: bool = False) -> dict:
    """Greedy episodes over the whole split; ``hide_ids``: every agent seen as a new, unknown one."""
    ids = router._agent_ids(env.agents)
    if hide_ids:
        ids = np.full_like(ids, len(router.agents_))
    eps = [
        run_episode(router.net_, env, i, query_emb=emb, agent_id=ids, history=history, rows=None, budget=budget,
                    cost_weight=float(router.cost_weight), cost_scale=router.cost_scale_, k=router.memory_k,
                    tau=router.memory_tau, greedy=True)
        for i in range(len(env))
    ]
    return summarize(eps, budget)


def summarize(eps, budget: float | None) -> dict:
    out = {
        "accuracy": float(np.mean([e.score for e in eps])),
        "cost": float(np.mean([e.cost for e in eps])),
        "steps": float(np.mean([len(e.workflow.actions) for e in eps])),
        "planned": float(np.mean([any(a[1] == "planner" for a in e.workflow.actions) for e in eps])),
        "exhausted": float(np.mean([e.exhausted for e in eps])),
        "mask_rate": float(sum(e.masked for e in eps) / max(1, sum(e.legal for e in eps))),
    }
    if budget is not None:
        out["violations"] = int(sum(e.cost > budget + 1e-12 for e in eps))
    return out


def fixed_workflow(env: OfflineEnv, j: int, plan: bool) -> dict:
    """Execute-only, or plan→execute every sub-query→summarize, all with agent ``j``."""
    g = len(env.agents)

    class Ep:  # the fields summarize() reads
        pass

    eps = []
    for i in range(len(env)):
        wf = env.new(i)
        spent = env.step(wf, i, (PLAN if plan else EXECUTE) * g + j)
        while not wf.done:
            role = SUMMARIZE if wf.legal_roles()[2] else EXECUTE
            spent += env.step(wf, i, role * g + j)
        ep = Ep()
        ep.score, ep.cost, ep.workflow, ep.exhausted, ep.masked, ep.legal = env.score(wf), spent, wf, False, 0, 0
        eps.append(ep)
    return summarize(eps, None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="routerbench")
    ap.add_argument("--episodes", type=int, default=2000)
    ap.add_argument("--lambdas", default="0,0.3")
    ap.add_argument("--memory-rows", type=int, default=10_000)
    ap.add_argument("--graph-queries", type=int, default=30)
    ap.add_argument("--routers", default="per-task,knn,graph-router")
    ap.add_argument("--base-lambda", type=float, default=0.1, help="the λ of the budget sweep and memory runs")
    ap.add_argument("--lr", type=float, default=1e-4, help="policy learning rate (value: twice it)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    report: dict = {"command": " ".join(sys.argv), "episodes": args.episodes}
    ds = load_dataset(args.dataset)
    train, test = ds.train, ds.test
    test_emb = embed_texts(test.queries).astype(np.float32)
    env = OfflineEnv(test)
    print(f"{args.dataset}: {len(train)} train / {len(test)} test queries, {len(env.agents)} agents", flush=True)

    # -- historical memory: the SQL interaction memory, filled with train outcomes -----------------
    tmp = tempfile.mkdtemp(prefix="gp_bench_")
    memory = open_memory(f"sqlite:///{tmp}/memory.db")
    t0 = time.perf_counter()
    written = fill_memory(memory, train, args.memory_rows, args.seed)
    report["memory_fill_s"] = time.perf_counter() - t0
    histories = {}
    for n in (0, 1000, args.memory_rows):
        t0 = time.perf_counter()
        histories[n] = HistoryMemory.from_store(memory, limit=n) if n else None
        print(f"memory rows {n}: read in {time.perf_counter() - t0:.1f}s", flush=True)
    full = histories[args.memory_rows]
    report["memory_rows_written"] = written

    # -- GraphPlanner per λ -----------------------------------------------------------------------
    planners = {}
    report["graph_planner"] = {}
    for lam in [float(x) for x in args.lambdas.split(",")]:
        router = GraphPlannerRouter(cost_weight=lam, episodes=args.episodes, lr_policy=args.lr, lr_value=2 * args.lr, seed=args.seed)
        last = [0.0]

        def progress(row, lam=lam, last=last):
            if time.perf_counter() - last[0] > 30:
                last[0] = time.perf_counter()
                print(f"  λ={lam} ep {row['episodes']}: reward {row['reward']:.3f} score {row['score']:.3f} "
                      f"cost {row['cost']:.5f} mask {row['mask_rate']:.3f} steps {row['steps']:.2f}", flush=True)

        router.fit(train, progress=progress)
        planners[lam] = router
        res = evaluate_policy(router, env, test_emb, full, None)
        res["train_seconds"] = router.train_seconds_
        res["action_counts"] = router.action_counts_
        report["graph_planner"][str(lam)] = res
        print(f"GraphPlanner λ={lam}: {res} (trained in {router.train_seconds_:.0f}s)", flush=True)

    # -- fixed workflows ------------------------------------------------------------------------------
    train_acc = np.nanmean(train.scores, axis=0)
    train_cost = np.nanmean(train.costs, axis=0)
    cheapest, strongest = int(np.argmin(train_cost)), int(np.argmax(train_acc))
    report["fixed"] = {
        f"execute-only cheapest ({env.agents[cheapest]})": fixed_workflow(env, cheapest, False),
        f"execute-only strongest ({env.agents[strongest]})": fixed_workflow(env, strongest, False),
        f"plan→execute→summarize cheapest ({env.agents[cheapest]})": fixed_workflow(env, cheapest, True),
        f"plan→execute→summarize strongest ({env.agents[strongest]})": fixed_workflow(env, strongest, True),
    }
    for name, res in report["fixed"].items():
        print(f"{name}: {res}", flush=True)

    # -- AIQ over the single models' cost range -----------------------------------------------------
    singles = single_model_points(test.scores, test.costs)
    report["zero_router_aiq"] = aiq(singles, singles)
    gp_points = [[r["cost"], r["accuracy"]] for r in report["graph_planner"].values()]
    report["graph_planner_aiq"] = aiq(gp_points, singles)
    for res in report["fixed"].values():
        res["aiq"] = aiq([[res["cost"], res["accuracy"]]], singles)

    # -- single-round routers picking the execute-only agent ------------------------------------------
    report["single_round"] = {}
    ctxs, _ = build_contexts(ds, "test")
    for name in [r for r in args.routers.split(",") if r]:
        t0 = time.perf_counter()
        params = {"epochs": 300} if name == "graph-router" else {}
        router = make_router(name, **params).fit(ds)
        sw = sweep_router(router, ctxs, test)
        pts = np.stack([sw.costs.mean(1), sw.scores.mean(1)], 1)
        best = int(np.argmax(pts[:, 1]))
        report["single_round"][name] = {
            "aiq": aiq(pts, singles), "accuracy_at_best": float(pts[best, 1]), "cost_at_best": float(pts[best, 0]),
            "seconds": time.perf_counter() - t0,
        }
        print(f"{name}: {report['single_round'][name]}", flush=True)

    # -- budget sweep (λ = --base-lambda) ----------------------------------------------------------------
    base = planners.get(args.base_lambda, planners[next(iter(planners))])
    report["base_lambda"] = float(base.cost_weight)
    report["budget_sweep"] = {}
    for mult in (0.01, 0.03, 0.1, 0.3, 1.0, 3.0):
        usd = base.cost_scale_ * mult
        res = evaluate_policy(base, env, test_emb, full, usd)
        report["budget_sweep"][f"{usd:.3g}"] = res
        print(f"budget ${usd:.3g}: {res}", flush=True)

    # -- memory effect ----------------------------------------------------------------------------
    report["memory_effect"] = {}
    for hide in (False, True):
        for n, hist in histories.items():
            res = evaluate_policy(base, env, test_emb, hist, None, hide_ids=hide)
            label = f"{n} rows" + (", agent ids hidden (a new pool)" if hide else "")
            report["memory_effect"][label] = res
            print(f"memory {label}: {res}", flush=True)

    # -- decision latency (act: memory lookup + features + forward; embeddings cached) ---------------
    base.attach_memory(full)
    g = len(env.agents)
    lat = []
    for i in range(min(300, len(env))):
        wf = env.new(i)
        avail = np.r_[np.ones(2 * g, bool), np.zeros(g, bool)] & np.tile(env.available[i], 3)
        t0 = time.perf_counter()
        base.act(wf, agents=env.agents, action_cost=env.action_cost(i), available=avail, remaining=None, budget=None)
        lat.append(time.perf_counter() - t0)
    report["decision_latency_ms"] = {"p50": 1000 * float(np.percentile(lat, 50)), "p99": 1000 * float(np.percentile(lat, 99))}
    print(f"decision latency: {report['decision_latency_ms']}", flush=True)

    # -- the planner graph through the dispatcher (replay backend over the test split) ---------------
    if args.graph_queries:
        from agentroute.routers.graph_planner.graph import build_planner_graph

        app = build_planner_graph().compile(pool=ds.replay_pool("test"), router=base)
        usd = base.cost_scale_ * 0.3
        statuses, violations, t0 = {}, 0, time.perf_counter()
        for i in range(args.graph_queries):
            res = app.run(test.queries[i], query_id=test.query_ids[i], budget=Budget(usd=usd))
            statuses[res.status] = statuses.get(res.status, 0) + 1
            violations += res.cost_usd > usd + 1e-12
        report["graph"] = {"budget": usd, "statuses": statuses, "violations": int(violations),
                           "seconds_per_task": (time.perf_counter() - t0) / args.graph_queries}
        print(f"planner graph: {report['graph']}", flush=True)
    memory.close()
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1, default=str))
    print(json.dumps({k: v for k, v in report.items() if k != "graph_planner"}, indent=1, default=str)[:4000])


if __name__ == "__main__":
    main()

"""Every router trains from the memory: ant-colony, kg-gnn, graph-router and bopo, trained on what
an exploring router logged (bandit feedback, no recipe, no task labels) vs trained on the full table.

    python benchmarks/learning_from_memory.py                      # RouterBench, whole splits
    python benchmarks/learning_from_memory.py --limit 300 --fast   # quick look

1. **The memory.** An exploring router (:class:`~agentroute.routers.explore.ExploreRouter`,
   ε-greedy around ``--base``) serves the RouterBench *train* split through a one-step graph and the
   real dispatcher, on the replay pool of all 11 models, into a fresh SQLite memory. Requests carry
   no task type. BoPO routes between two tiers (Mixtral < GPT-4), so a second memory logs its
   explorations: the two-tier replay pool served by a uniform explorer (ε = 1), every train query
   ``--bopo-repeat`` times, so that some queries ran on both tiers.
2. **From the memory alone** (``memory.trajectories()``), each router is fitted: ant-colony infers
   its task types (k-means on the query embeddings, k by silhouette), kg-gnn and graph-router
   describe agents from the pool's model cards (``fit(trajectories, cards=pool)``, no descriptor
   recipe), bopo keeps the queries explored on both tiers and builds its boundary taxonomy.
3. **Full table**: the same router fitted on the train split's full table (every model's outcome
   on every query, and the task labels).
4. **Test**: ant-colony, kg-gnn, graph-router on the test split through the evaluation harness
   (knob sweep → AIQ) and at their default knob through the one-step graph on the test replay
   pool (accuracy, mean cost per query); the exploring router and the untrained colony as
   references. bopo on the agentic test tasks (3 steps, Mixtral/GPT-4; success, cost, large calls),
   with always-small and always-large.

``--out`` gets the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from agentroute import AgentGraph
from agentroute.eval.datasets import RoutingDataset, load_dataset
from agentroute.memory import SQLMemory
from agentroute.outcomes import OutcomeTable
from agentroute.pool.pool import ModelPool
from agentroute.routers import Router, make_router
from agentroute.routers.explore import ExploreRouter

TIERS = ("mistralai/mixtral-8x7b-chat", "gpt-4-1106-preview")


def data_dir() -> Path:
    return Path(os.environ.get("AGENTROUTE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def keep_models(data: RoutingDataset, models: tuple[str, ...]) -> RoutingDataset:
    """The dataset restricted to ``models`` (columns in that order)."""

    def cut(t: OutcomeTable) -> OutcomeTable:
        idx = [t.models.index(m) for m in models]
        responses = [[r[j] for j in idx] for r in t.responses] if t.responses is not None else None
        return OutcomeTable(list(t.query_ids), list(t.queries), list(models), t.scores[:, idx], t.costs[:, idx],
                            list(t.task_types), responses, t.gold, dict(t.metadata))  # fmt: skip

    return RoutingDataset(f"{data.name}[{','.join(models)}]", cut(data.train), cut(data.test), notes=dict(data.notes),
                          prices={m: data.prices[m] for m in models if m in data.prices},
                          token_counter=data.token_counter, output_tokens=data.output_tokens)  # fmt: skip


def items(table: OutcomeTable) -> list[dict[str, Any]]:
    """Requests as a deployment sees them: the query and its id (for the replay backend), no task type."""
    return [{"query": q, "query_id": i} for q, i in zip(table.queries, table.query_ids, strict=True)]


def fill_memory(graph: AgentGraph, pool: ModelPool, router: Router, requests: list[dict[str, Any]], url: str) -> list[Any]:
    """Serve ``requests`` with ``router`` into the memory at ``url``; its scored trajectories.

    Tasks get fixed ids, so an exploring router (its draws are keyed by task id) logs the same
    choices on every run."""
    requests = [{"task_id": f"log-{n}", **r} for n, r in enumerate(requests)]
    with SQLMemory(url) as memory:
        app = graph.compile(pool=pool, router=router, memory=memory)
        asyncio.run(app.arun_many(requests, concurrency=32))
        memory.flush()
        return memory.trajectories(with_score=True)


def replay(
    graph: AgentGraph, pool: ModelPool, router: Router, requests: list[dict[str, Any]], *, serve: bool = True
) -> tuple[float, float]:
    """Mean score and mean cost of ``router`` (serving mode unless not ``serve``) on ``requests``."""
    if serve:
        router.serve()
    requests = [{"task_id": f"test-{n}", **r} for n, r in enumerate(requests)]  # the same draws every run
    results = asyncio.run(graph.compile(pool=pool, router=router).arun_many(requests, concurrency=32))
    return float(np.mean([r.task.score or 0.0 for r in results])), float(np.mean([r.cost_usd for r in results]))


def aiq_of(data: RoutingDataset, routers: dict[str, Router]) -> dict[str, float]:
    """AIQ of each already-fitted router on the test split: the harness's knob sweep (serving mode,
    no refit) and :func:`agentroute.eval.metrics.aiq`, as ``agentroute eval`` computes it."""
    from agentroute.eval import metrics as M
    from agentroute.eval.harness import build_contexts, sweep_router

    ctxs, _ = build_contexts(data, "test")
    singles = M.single_model_points(data.test.scores, data.test.costs)
    out = {"zero router": float(M.aiq(singles, singles))}
    for name, router in routers.items():
        knob0 = getattr(router, router.knob) if router.knob else None
        router.serve()
        try:
            sweep = sweep_router(router, ctxs, data.test)
        finally:
            if router.knob:
                router.set_params(**{router.knob: knob0})
        points = np.column_stack([sweep.costs.mean(axis=1), sweep.scores.mean(axis=1)])
        out[name] = float(M.aiq(points, singles, M.anchor_index(singles, sweep.choices)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=None, help="default routerbench:$AGENTROUTE_DATA/routerbench")
    parser.add_argument("--limit", type=int, default=None, help="at most N queries per split (seeded)")
    parser.add_argument("--base", default="cheapest")
    parser.add_argument("--epsilon", type=float, default=0.5)
    parser.add_argument("--bopo-repeat", type=int, default=2)
    parser.add_argument("--routers", default="ant-colony,kg-gnn,graph-router,bopo")
    parser.add_argument("--fast", action="store_true", help="short trainings (kg-gnn 10 epochs, graph-router 300 steps, bopo 60 iterations)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    data = load_dataset(args.dataset or f"routerbench:{data_dir() / 'routerbench'}", limit=args.limit, seed=0)
    graph = AgentGraph("logged").add_role("executor", prompt="answer")
    train_pool, test_pool = data.replay_pool("train"), data.replay_pool("test")
    names = [r for r in args.routers.split(",") if r]
    params: dict[str, dict[str, Any]] = {
        "ant-colony": {},
        "kg-gnn": {"epochs": 10} if args.fast else {},
        "graph-router": {"epochs": 300} if args.fast else {},
        "bopo": {"config": {"steps": 3, "tiers": list(TIERS), **({"iterations": 60} if args.fast else {})}},
    }
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        t0 = time.perf_counter()
        explorer = ExploreRouter(base=args.base, epsilon=args.epsilon, seed=0)
        trajectories = fill_memory(graph, train_pool, explorer, items(data.train), f"sqlite:///{tmp}/memory.db")
        print(f"{data.name}: the exploring router (ε={args.epsilon} around {args.base}) served {len(trajectories)} "
              f"train queries (no task type) into the memory in {time.perf_counter() - t0:.1f}s; test split: "
              f"{len(data.test)} queries", flush=True)  # fmt: skip
        test_items = items(data.test)
        explore_truth = replay(graph, test_pool, ExploreRouter(base=args.base, epsilon=args.epsilon, seed=1), test_items, serve=False)
        print(f"  the exploring router itself on test: accuracy {explore_truth[0]:.3f}, cost ${explore_truth[1]:.6f}")
        rows.append({"router": "explore", "trained": "-", "accuracy": explore_truth[0], "cost": explore_truth[1]})
        for name in (n for n in names if n != "bopo"):
            p = params.get(name, {})
            fitted: dict[str, Router] = {}
            t0 = time.perf_counter()
            fit_kw = {"cards": train_pool} if name in ("kg-gnn", "graph-router") else {}
            fitted["memory"] = make_router(name, **p).fit(trajectories, **fit_kw)
            mem_s = time.perf_counter() - t0
            print(f"\n{name}: from the memory in {mem_s:.1f}s — {fitted['memory'].fit_summary()}", flush=True)
            t0 = time.perf_counter()
            fitted["full table"] = make_router(name, **p).fit(data)
            print(f"{name}: on the full table in {time.perf_counter() - t0:.1f}s — {fitted['full table'].fit_summary()}", flush=True)
            if name == "ant-colony":
                fitted["untrained"] = make_router(name, **p, warm_start=False).fit(trajectories)
            aiqs = aiq_of(data, {f"{name} [{k}]": r for k, r in fitted.items()})
            for how, router in fitted.items():
                acc, cost = replay(graph, test_pool, router, test_items)
                aiq = aiqs.get(f"{name} [{how}]")
                rows.append({"router": name, "trained": how, "accuracy": acc, "cost": cost, "aiq": aiq})
                print(f"  {name:13s} {how:10s} accuracy {acc:.3f}  cost ${cost:.6f}  AIQ {aiq:.4f}", flush=True)
            print(f"  (zero router AIQ {aiqs['zero router']:.4f})")
        if "bopo" in names:
            rows += bopo_rows(data, graph, tmp, args, params["bopo"])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1))


def bopo_rows(data: RoutingDataset, graph: AgentGraph, tmp: Path, args: argparse.Namespace, p: dict[str, Any]) -> list[dict[str, Any]]:
    from agentroute.eval.agentic import build_env, run_router
    from agentroute.routers.tiers import AlwaysSmallRouter

    tiers = keep_models(data, TIERS)
    t0 = time.perf_counter()
    explorer = ExploreRouter(base="cheapest", epsilon=1.0, seed=0)
    trajectories = fill_memory(graph, tiers.replay_pool("train"), explorer, items(tiers.train) * args.bopo_repeat,
                               f"sqlite:///{tmp}/memory-tiers.db")  # fmt: skip
    print(f"\nbopo: a uniform explorer over {' < '.join(TIERS)} served every train query {args.bopo_repeat}× "
          f"({len(trajectories)} tasks) in {time.perf_counter() - t0:.1f}s", flush=True)  # fmt: skip
    fitted = {}
    t0 = time.perf_counter()
    fitted["memory"] = make_router("bopo", **p).fit(trajectories)
    print(f"bopo from the memory in {time.perf_counter() - t0:.1f}s:\n{fitted['memory'].fit_summary()}", flush=True)
    t0 = time.perf_counter()
    fitted["full table"] = make_router("bopo", **p).fit(data)
    print(f"bopo on the full table in {time.perf_counter() - t0:.1f}s:\n{fitted['full table'].fit_summary()}", flush=True)
    env = build_env(data, steps=3)
    rows = []
    refs = {"always-small": AlwaysSmallRouter(), "always-large": make_router("always-large")}
    for how, router in {**fitted, **refs}.items():
        row = run_router(env, how, router)
        rows.append({"router": "bopo" if how in fitted else how, "trained": how if how in fitted else "-",
                     "success": row.success_rate, "cost": row.mean_cost, "large_calls": row.mean_large_calls,
                     "violations": row.budget_violations})  # fmt: skip
        print(f"  {how:13s} success {row.success_rate:.3f}  cost ${row.mean_cost:.6f}  large calls {row.mean_large_calls:.2f}  "
              f"({row.episodes} test tasks of 3 steps)", flush=True)  # fmt: skip
    return rows


if __name__ == "__main__":
    main()

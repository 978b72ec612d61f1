"""The learning loop on replay traffic: counterfactual estimates from the memory against the truth.

    python benchmarks/learning_loop.py                        # RouterBench test split × 2 = 1,906 tasks, 5 seeds
    python benchmarks/learning_loop.py --seeds 1 --repeat 1   # quick

1. An exploring router (:class:`~agentroute.routers.explore.ExploreRouter`, ε-greedy around
   ``--base``, ε = ``--epsilon``) serves RouterBench replay traffic — every test query ``--repeat``
   times — through a one-step graph and the real dispatcher into a fresh SQLite memory. Each
   task's score is the replayed model's logged outcome; each step logs its propensity.
2. From the memory alone, :mod:`agentroute.eval.counterfactual` estimates each candidate router's
   mean score and cost (IPS, SNIPS, doubly robust; percentile-bootstrap intervals at ``--level``):
   cheapest, strongest, random, always GPT-4 and knn / per-task fitted on the dataset's *train*
   split (full table; they never saw the test queries).
3. The truth: each candidate routes the same test queries through the same graph and replay
   pool; its mean logged score and cost.

Prints, per seed and router, estimate [interval] vs truth, and at the end how often the truth lies
inside each estimator's interval.

``--loop`` then closes the loop (:func:`learning_loop`): an exploring router serves the *train* split
(2,205 tasks) into a memory; knn, per-task, logreg and mlp are fitted on ``memory.trajectories()``
alone (bandit feedback: one agent per query, as logged) with importance weights from the logged
propensities and without, and on the full train table; all are evaluated on the test split (AIQ
over their cost knob, best accuracy, cost to reach the exploring router's accuracy; accuracy and
cost replayed at the default knob), next to the exploring router itself. ``--out`` gets the JSON.
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
from agentroute.eval.counterfactual import RewardModel, estimate_router, logged_tasks
from agentroute.eval.datasets import load_dataset
from agentroute.eval.harness import parse_router_spec
from agentroute.memory import SQLMemory
from agentroute.routers import Router, make_router
from agentroute.routers.explore import ExploreRouter


def data_dir() -> Path:
    return Path(os.environ.get("AGENTROUTE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def truth(graph: AgentGraph, pool: Any, router: Any, items: list[dict[str, Any]]) -> tuple[float, float]:
    app = graph.compile(pool=pool, router=router)
    results = asyncio.run(app.arun_many(items, concurrency=32))
    return float(np.mean([r.task.score or 0.0 for r in results])), float(np.mean([r.cost_usd for r in results]))


def _cell(est: Any, how: str, true_score: float) -> str:
    lo, hi = est.intervals[f"score_{how}"]
    mark = " " if lo <= true_score <= hi else "✗"
    return f"{est.score[how]:.3f} [{lo:.3f},{hi:.3f}]{mark}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=None, help="default routerbench:$AGENTROUTE_DATA/routerbench")
    parser.add_argument("--base", default="cheapest")
    parser.add_argument("--epsilon", type=float, default=0.5)
    parser.add_argument("--repeat", type=int, default=2, help="times each test query is served")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--level", type=float, default=0.95)
    parser.add_argument("--boot", type=int, default=500)
    parser.add_argument("--routers", default="cheapest,strongest,random,gpt4,knn:cost_weight=1,per-task:cost_weight=1",
                        help="candidates (name:key=value …; gpt4 = always the best model on train)")
    parser.add_argument("--loop", action="store_true", help="also train from the memory and replay on test")
    parser.add_argument("--loop-seeds", type=int, default=3, help="--loop: serving seeds of the deployed-knn policy")
    parser.add_argument("--loop-epsilons", type=lambda v: [float(x) for x in v.split(",")], default=[0.5, 0.2],
                        help="--loop: exploration rates of the deployed-knn policy (comma-separated)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    data = load_dataset(args.dataset or f"routerbench:{data_dir() / 'routerbench'}")
    pool = data.replay_pool("test")
    cards = {c.id: c for c in pool}
    graph = AgentGraph("logged").add_role("executor", prompt="answer")
    test = data.test
    items = [{"query": q, "query_id": i, "task_type": t} for q, i, t in zip(test.queries, test.query_ids, test.task_types, strict=True)]
    strongest_model = max(data.models, key=lambda m: np.nanmean(data.train.scores[:, data.models.index(m)]))

    def candidate(spec: str) -> Any:
        if spec == "gpt4":
            return make_router("fixed", model=strongest_model)
        name, params = parse_router_spec(spec)
        router = make_router(name, **params)
        return router.fit(data) if type(router).fit is not Router.fit else router

    names = [r for r in args.routers.split(",") if r]
    start = time.perf_counter()
    candidates = {name: candidate(name) for name in names}
    fit_s = time.perf_counter() - start
    truths = {name: truth(graph, pool, router, items) for name, router in candidates.items()}
    explorer_truth = truth(graph, pool, ExploreRouter(base=args.base, epsilon=args.epsilon, seed=99), items)
    print(f"{data.name} test split: {len(test)} queries × {len(data.models)} models; candidates fitted on {len(data.train)} "
          f"train queries in {fit_s:.1f}s; the exploring router (ε={args.epsilon} around {args.base}) serves each test query "
          f"{args.repeat}× per seed; its own replay value: score {explorer_truth[0]:.3f}, cost ${explorer_truth[1]:.6f}")
    records: list[dict[str, Any]] = []
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as tmp, SQLMemory(f"sqlite:///{tmp}/memory.db") as memory:
            explorer = ExploreRouter(base=args.base, epsilon=args.epsilon, seed=seed)
            app = graph.compile(pool=pool, router=explorer, memory=memory)
            t0 = time.perf_counter()
            served = asyncio.run(app.arun_many(items * args.repeat, concurrency=32))
            serve_s = time.perf_counter() - t0
            memory.flush()
            trajectories = memory.trajectories(with_score=True)
        tasks, skipped = logged_tasks(trajectories, cards=cards)
        q = RewardModel().fit(tasks)
        logged_score = float(np.mean([r.task.score or 0.0 for r in served]))
        print(f"\nseed {seed}: served {len(served)} tasks in {serve_s:.1f}s (logged score {logged_score:.3f}); "
              f"{len(tasks)} with propensities, skipped {skipped}")
        print(f"  {'router':24s} {'truth':>7s} {'IPS [interval]':>24s} {'SNIPS':>24s} {'DR':>24s} {'matched':>8s} {'ESS':>6s}  cost truth / DR")
        for name, router in candidates.items():
            t0 = time.perf_counter()
            est = estimate_router(router, tasks, name=name, reward_model=q, n_boot=args.boot, level=args.level, seed=seed)
            est_s = time.perf_counter() - t0
            true_score, true_cost = truths[name]
            row = {"seed": seed, "router": name, "truth_score": true_score, "truth_cost": true_cost, "estimate_s": est_s, **est.as_dict()}
            for what, value in (("score", true_score), ("cost", true_cost)):
                for how in ("ips", "snips", "dr"):
                    lo, hi = est.intervals.get(f"{what}_{how}", [np.nan, np.nan])
                    row[f"covered_{what}_{how}"] = bool(lo <= value <= hi)
            records.append(row)

            cells = [_cell(est, how, true_score) for how in ("ips", "snips", "dr")]
            print(f"  {name:24s} {true_score:7.3f} {cells[0]:>24s} {cells[1]:>24s} {cells[2]:>24s} "
                  f"{est.matched:8.3f} {est.ess:6.0f}  ${true_cost:.6f} / ${est.cost['dr']:.6f}")
    print(f"\ntruth inside the {100 * args.level:.0f}% interval ({len(records)} router × seed estimates):")
    for what in ("score", "cost"):
        for how in ("ips", "snips", "dr"):
            inside = sum(r[f"covered_{what}_{how}"] for r in records)
            err = np.mean([abs(r[what][how] - r[f"truth_{what}"]) for r in records])
            print(f"  {what} {how:5s}: {inside}/{len(records)}  (mean |error| {err:.4g})")
    loop = learning_loop(data, graph, pool, args) if args.loop else []
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "explorer_truth": explorer_truth,
                                        "truths": truths, "records": records, "loop": loop}, indent=1, default=str))


LOOP_ROUTERS = ("knn", "per-task", "logreg", "mlp")


def learning_loop(data: Any, graph: AgentGraph, test_pool: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Serve the train split with an exploring router, fit from the memory (importance-weighted and
    plain), and evaluate on the test split next to the same routers fitted on the full train table.

    Two logging policies, ε-greedy around: ``cheapest`` (ε = ``--epsilon``; context-free: every cell
    of a column has the same propensity, so the weights are 1 after per-column normalisation) and a
    *deployed* knn (cost_weight 1) fitted on a seeded 10% of the train table (each ε of
    ``--loop-epsilons`` × ``--loop-seeds`` serving seeds; context-dependent: an agent is logged with
    p = 1 − ε + ε/K where the deployed router picks it, ε/K elsewhere). Every router is evaluated on
    the test table as the harness does (its knob swept: AIQ, best accuracy, cost to reach the
    exploring router's accuracy on the hull), replayed at its default knob, and each weighted fit is
    compared with the plain one by a paired bootstrap of the AIQ difference (90%, 500 resamples).
    """
    from agentroute.eval import metrics as M
    from agentroute.eval.harness import build_contexts, sweep_router
    from agentroute.outcomes import OutcomeTable

    train = data.train
    items = [{"query": q, "query_id": i, "task_type": t} for q, i, t in zip(train.queries, train.query_ids, train.task_types, strict=True)]
    test_items = [{"query": q, "query_id": i} for q, i in zip(data.test.queries, data.test.query_ids, strict=True)]
    warm_rows = np.sort(np.random.default_rng(0).permutation(len(train))[: len(train) // 10])
    deployed = make_router("knn", cost_weight=1.0).fit(train.rows(warm_rows))
    rows: list[dict[str, Any]] = []
    ctxs, _ = build_contexts(data, "test")
    singles = M.single_model_points(data.test.scores, data.test.costs)

    sweeps: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}

    def evaluated(label: str, routers: dict[str, Any], explorer_accuracy: float) -> None:
        """The harness's sweep of each router's knob on the test table (as `agentroute eval`)."""
        for name, router in routers.items():
            knob0 = getattr(router, router.knob)
            try:
                sw = sweep_router(router.serve(), ctxs, data.test)
            finally:
                router.set_params(**{router.knob: knob0})
            points = np.column_stack([sw.costs.mean(axis=1), sw.scores.mean(axis=1)])
            anchor = M.anchor_index(singles, sw.choices)
            sweeps[name] = (sw.scores, sw.costs, anchor)
            aiq = M.aiq(points, singles, anchor)
            reach = M.cost_to_reach(points, explorer_accuracy)
            score, cost = truth(graph, test_pool, router, test_items)
            row = {"policy": label, "router": name, "aiq": aiq, "max_accuracy": float(points[:, 1].max()),
                   "cost_at_explorer_accuracy": reach, "accuracy": score, "cost": cost}  # fmt: skip
            if name.endswith(", weighted") and name.replace(", weighted", ", plain") in routers:
                plain_name = name.replace(", weighted", ", plain")
                s_w, c_w, a_w = sweeps[name]
                # the plain router is evaluated right after; compute its sweep now for the paired bootstrap
                p_router = routers[plain_name]
                knob_p = getattr(p_router, p_router.knob)
                try:
                    sw_p = sweep_router(p_router.serve(), ctxs, data.test)
                finally:
                    p_router.set_params(**{p_router.knob: knob_p})
                a_p = M.anchor_index(singles, sw_p.choices)
                diff, lo, hi = M.bootstrap_aiq_difference(
                    (s_w, c_w), (sw_p.scores, sw_p.costs), (data.test.scores, data.test.costs),
                    n_boot=500, level=0.9, anchor_a=a_w, anchor_b=a_p,
                )  # fmt: skip
                row["aiq_weighted_minus_plain"] = [diff, lo, hi]
            rows.append(row)
            reach_s = f"${reach:.6f}" if reach is not None else "never"
            extra = ""
            if "aiq_weighted_minus_plain" in row:
                d, lo, hi = row["aiq_weighted_minus_plain"]
                extra = f"  ΔAIQ vs plain {d:+.4f} [{lo:+.4f}, {hi:+.4f}]"
            print(f"  {name:38s} AIQ {aiq:.4f}  max acc {points[:, 1].max():.3f}  cost at explorer acc {reach_s:>10s}  "
                  f"| default knob: acc {score:.3f} cost ${cost:.6f}{extra}", flush=True)

    full = {f"{name} full train table": make_router(name).fit(data) for name in LOOP_ROUTERS}
    policies = [("cheapest", "cheapest", args.epsilon, 0)]
    policies += [("deployed knn", deployed, eps, seed) for eps in args.loop_epsilons for seed in range(args.loop_seeds)]
    for label, base, eps, seed in policies:
        with tempfile.TemporaryDirectory() as mem_dir, SQLMemory(f"sqlite:///{mem_dir}/memory.db") as memory:
            explorer = ExploreRouter(base=base, epsilon=eps, seed=seed)
            app = graph.compile(pool=data.replay_pool("train"), router=explorer, memory=memory)
            t0 = time.perf_counter()
            served = asyncio.run(app.arun_many(items, concurrency=32))
            memory.flush()
            trajectories = memory.trajectories(with_score=True)
        serve_s = time.perf_counter() - t0
        explorer_test = ExploreRouter(base=base, epsilon=eps, seed=1000 + seed)
        e_score, e_cost = truth(graph, test_pool, explorer_test, test_items)
        weighted = OutcomeTable.from_trajectories(trajectories)
        plain = OutcomeTable.from_trajectories(trajectories, importance_clip=None)
        w = weighted.weights[~np.isnan(weighted.scores)]
        raw = 1.0 / weighted.propensity[~np.isnan(weighted.scores)]
        tag = f"{label} ε={eps:g} seed {seed}"
        print(f"\nlearning loop, {tag}: served {len(served)} train-split tasks in {serve_s:.1f}s "
              f"(logged accuracy {np.mean([r.task.score or 0 for r in served]):.3f}); 1/p from {raw.min():.2f} to "
              f"{raw.max():.1f}, {np.mean(raw > weighted.importance_clip):.1%} of cells clipped at "
              f"{weighted.importance_clip:g}; normalised weights {w.min():.3f}–{w.max():.3f}; "
              f"the exploring router on test: accuracy {e_score:.3f}, cost ${e_cost:.6f}", flush=True)
        rows.append({"policy": tag, "router": "explore", "accuracy": e_score, "cost": e_cost})
        routers: dict[str, Any] = {}
        for name in LOOP_ROUTERS:
            routers[f"{name} from memory, weighted"] = make_router(name).fit(weighted)
            routers[f"{name} from memory, plain"] = make_router(name).fit(plain)
        if label == "cheapest":
            routers.update(full)
        evaluated(tag, routers, e_score)
    return rows


if __name__ == "__main__":
    main()

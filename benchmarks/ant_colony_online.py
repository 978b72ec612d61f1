"""Online learning of the ant-colony router (AMRO-S, arXiv 2603.12933) from an untrained colony.

An untrained colony (``warm_start=False``: only the intent model is fitted, on the train split's task
labels; every pheromone at τ_init, no ability data) serves a stream of ``--stream`` RouterBench train
queries through the real dispatcher (a one-stage graph) on the replay backend of the train split,
sampling its paths, with the background updater on. Every ``--every`` queries the updater is
flushed and a frozen copy of the colony (saved and loaded) is evaluated greedily on the test split
through the evaluation harness' sweep of its knob: AIQ, accuracy at the best single model's cost,
accuracy at λ = 0. Also reported per window of the stream: what the learning colony served
(accuracy, cost per query). References: the best single model, the zero router, and the same
colony warm-started offline on the whole train split.

    python benchmarks/ant_colony_online.py [--stream 2000] [--every 250] [--concurrency 16]

Writes ``benchmarks/figures/ant_colony_online.png`` (the learning curve) and a JSON of the figures.

The colony's intent model is the default MiniLM + logistic regression. ``--compare-intent N`` instead
fits it and the SmolLM2-135M classifier (the paper's SFT intent model at CPU scale) on the same N
labelled train queries and prints both held-out accuracies on ``--intent-test`` test queries
(about 10 minutes on 2 CPU cores for N = 300):

    python benchmarks/ant_colony_online.py --compare-intent 300 --intent-test 300 [--intent-dataset dcrouter]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from agentroute import AgentGraph
from agentroute.eval import metrics as M
from agentroute.eval.datasets import RoutingDataset, load_dataset
from agentroute.eval.harness import build_contexts, sweep_router
from agentroute.routers.ant_colony import AntColonyRouter
from agentroute.routers.base import Router

HERE = Path(__file__).parent


def evaluate_frozen(router: AntColonyRouter, dataset: RoutingDataset, ctxs: list[Any]) -> dict[str, float]:
    """Save → load a copy, then sweep its knob greedily on the test split (no learning)."""
    with tempfile.TemporaryDirectory() as tmp:
        router.save(tmp)
        copy = Router.load(tmp)
    assert isinstance(copy, AntColonyRouter)
    copy.set_params(greedy=True)
    copy.prime([c.query for c in ctxs])
    test = dataset.test
    sweep = sweep_router(copy, ctxs, test)
    points = np.column_stack([sweep.costs.mean(axis=1), sweep.scores.mean(axis=1)])
    singles = M.single_model_points(test.scores, test.costs)
    c_best, _ = M.best_single(singles)
    return {
        "aiq": M.aiq(points, singles),
        "accuracy_at_best_cost": float(M.quality_at_cost(points, c_best)),
        "accuracy_lambda0": float(points[0, 1]),
        "cost_lambda0": float(points[0, 0]),
    }


def plot(rows: list[dict[str, Any]], refs: dict[str, float], path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    x = [r["queries"] for r in rows]
    left.plot(x, [r["aiq"] for r in rows], "o-", color="#1b7837", label="AIQ (test, greedy sweep)")
    left.plot(
        x,
        [r["accuracy_at_best_cost"] for r in rows],
        "s-",
        color="#762a83",
        label="accuracy at best single's cost (test)",
    )
    left.axhline(
        refs["warm_aiq"], color="#1b7837", ls=":", label=f"offline warm start AIQ {refs['warm_aiq']:.3f}"
    )
    left.axhline(
        refs["zero_router_aiq"], color="grey", ls="--", label=f"zero router AIQ {refs['zero_router_aiq']:.3f}"
    )
    left.axhline(
        refs["best_single_accuracy"],
        color="#762a83",
        ls=":",
        label=f"best single accuracy {refs['best_single_accuracy']:.3f}",
    )
    left.set_xlabel("train queries streamed (online updates)")
    left.set_ylabel("quality on the RouterBench test split")
    left.set_title("held-out quality of the learning colony")
    left.legend(fontsize=8, loc="lower right")
    windows = [r for r in rows if r.get("window_accuracy") is not None]
    wx = [r["queries"] for r in windows]
    right.plot(
        wx, [r["window_accuracy"] for r in windows], "o-", color="#b2182b", label="accuracy served (window)"
    )
    right.axhline(
        refs["best_single_accuracy_train"], color="#b2182b", ls=":", label="best single model (train)"
    )
    right.set_ylabel("accuracy of the served stream")
    right.set_xlabel("train queries streamed")
    twin = right.twinx()
    twin.plot(
        wx, [1e3 * r["window_cost"] for r in windows], "d--", color="#2166ac", label="cost per query (window)"
    )
    twin.set_ylabel("mean cost per query (m$)")
    right.set_title("what the colony served while learning (sampling)")
    lines = right.get_lines() + twin.get_lines()
    right.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    return path


def compare_intent(dataset: RoutingDataset, n_train: int, n_test: int, seed: int) -> None:
    from agentroute.intent import EmbeddingIntentModel, SmolLMIntentModel

    rng = np.random.default_rng(seed)
    train, test = dataset.train, dataset.test
    tr = rng.choice(len(train), min(n_train, len(train)), replace=False)
    te = rng.choice(len(test), min(n_test, len(test)), replace=False)
    tr = np.array([i for i in tr if train.task_types[i] is not None])  # dcrouter: a few rows are unlabelled
    te = np.array([i for i in te if test.task_types[i] is not None])
    q_tr, y_tr = [train.queries[i] for i in tr], [str(train.task_types[i]) for i in tr]
    q_te, y_te = [test.queries[i] for i in te], [str(test.task_types[i]) for i in te]
    rows = {}
    for name, model in (
        ("embedding (MiniLM + logistic regression)", EmbeddingIntentModel()),
        (
            "smollm (SmolLM2-135M, top 2 layers + head, 4 epochs)",
            SmolLMIntentModel(train_layers=2, epochs=4, max_length=64),
        ),
    ):
        start = time.perf_counter()
        model.fit(q_tr, y_tr)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        accuracy = model.score(q_te, y_te)
        rows[name] = {
            "accuracy": accuracy,
            "fit_s": fit_s,
            "predict_ms_per_query": 1e3 * (time.perf_counter() - start) / len(q_te),
        }
        print(json.dumps({name: rows[name]}), flush=True)
    full = EmbeddingIntentModel().fit(train.queries, [str(t) for t in train.task_types])
    print(
        json.dumps(
            {
                "embedding on the whole train split, whole test split": full.score(
                    test.queries, [str(t) for t in test.task_types]
                )
            }
        )
    )
    majority = max(set(y_te), key=y_te.count)
    print(json.dumps({"majority class share of the test subset": y_te.count(majority) / len(y_te)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stream", type=int, default=2000)
    ap.add_argument("--every", type=int, default=250)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=None, help="RouterBench folder (default: $AGENTROUTE_DATA/routerbench)")
    ap.add_argument("--figure", type=Path, default=HERE / "figures" / "ant_colony_online.png")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "ant_colony_online.json")
    ap.add_argument("--params", default="", help="more router parameters, key=value,... (YAML scalars)")
    ap.add_argument(
        "--compare-intent", type=int, default=0, metavar="N", help="compare intent models on N train queries"
    )
    ap.add_argument("--intent-test", type=int, default=300, help="test queries for --compare-intent")
    ap.add_argument(
        "--intent-dataset", default="routerbench", help="dataset spec for --compare-intent (e.g. dcrouter)"
    )
    args = ap.parse_args()
    if args.compare_intent:
        compare_intent(load_dataset(args.intent_dataset), args.compare_intent, args.intent_test, args.seed)
        return
    dataset = load_dataset(f"routerbench:{args.data}" if args.data else "routerbench")
    train, test = dataset.train, dataset.test
    order = np.random.default_rng(args.seed).permutation(len(train))[: args.stream]
    ctxs, _ = build_contexts(dataset, "test")

    params: dict[str, Any] = {"seed": args.seed}
    for pair in filter(None, args.params.split(",")):
        key, _, value = pair.partition("=")
        params[key.strip()] = yaml.safe_load(value)
    singles = M.single_model_points(test.scores, test.costs)
    warm = AntColonyRouter(**params).fit(dataset)
    refs = {
        "best_single_accuracy": float(M.best_single(singles)[1]),
        "best_single_accuracy_train": float(np.nanmean(train.scores, axis=0).max()),
        "zero_router_aiq": M.aiq(singles, singles),
        "warm_aiq": evaluate_frozen(warm, dataset, ctxs)["aiq"],
    }
    router = AntColonyRouter(**{**params, "warm_start": False}).fit(dataset)
    router.prime([train.queries[i] for i in order])
    app = (
        AgentGraph("online")
        .add_role("executor", prompt="Answer.")
        .compile(pool=dataset.replay_pool("train"), router=router)
    )
    rows: list[dict[str, Any]] = [{"queries": 0, **evaluate_frozen(router, dataset, ctxs)}]
    print(json.dumps(rows[-1]), flush=True)
    start = time.perf_counter()
    for lo in range(0, len(order), args.every):
        chunk = order[lo : lo + args.every]
        items = [{"query": train.queries[i], "query_id": train.query_ids[i]} for i in chunk]
        results = asyncio.run(app.arun_many(items, concurrency=args.concurrency))
        router.flush()
        row = {
            "queries": lo + len(chunk),
            "window_accuracy": float(np.mean([r.task.score or 0.0 for r in results])),
            "window_cost": float(np.mean([r.task.cost_usd for r in results])),
            **evaluate_frozen(router, dataset, ctxs),
            **{
                f"updates_{k}": v
                for k, v in router.stats().items()
                if k in ("accepted", "applied", "rejected", "dropped")
            },
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    router.close()
    out = {
        "refs": refs,
        "rows": rows,
        "stream_wall_s": time.perf_counter() - start,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(refs))
    print(f"wrote {plot(rows, refs, args.figure)} and {args.out}")


if __name__ == "__main__":
    main()

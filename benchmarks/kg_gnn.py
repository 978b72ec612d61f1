"""Benchmark of the AgentRouter (kg-gnn): quality, training time, latency, inductive agents and
collaboration, on real logged outcomes (RouterBench subset, dcrouter). Prints every figure.

    python benchmarks/kg_gnn.py eval --dataset routerbench      # AIQ etc. next to the references
    python benchmarks/kg_gnn.py eval --dataset dcrouter
    python benchmarks/kg_gnn.py encoders                        # HeteroConv(SAGEConv) vs HGTConv
    python benchmarks/kg_gnn.py latency                         # decision latency p50/p99
    python benchmarks/kg_gnn.py inductive --holdout gpt-4-1106-preview
    python benchmarks/kg_gnn.py collab                          # single vs top-k weighted vote

Every part fits on the train split (early stopping on a validation split carved from it) and
reports on the test split. Data: ``$AGENTROUTE_DATA`` (default ``../shared/data``). Router
parameters: ``training/kg_gnn.yaml``; for dcrouter the agent descriptors are the model cards that
ship with the data (``llm_candidates/default_llm.json``, field ``feature``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from agentroute.aggregate import weighted_vote
from agentroute.eval import metrics as M
from agentroute.eval.datasets import RoutingDataset, data_root, load_dataset
from agentroute.eval.harness import build_contexts, evaluate
from agentroute.outcomes import OutcomeTable
from agentroute.routers.kg_gnn import KGRouter
from agentroute.routers.utility import sweep
from agentroute.types import RouteContext

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "training" / "kg_gnn.yaml"
COMPARE = ("graph-router", "knn", "mlp", "per-task")


# -- set-up ---------------------------------------------------------------------------------------
def router_params(dataset: RoutingDataset, recipe: Path = RECIPE, **overrides: Any) -> dict[str, Any]:
    """The recipe's parameters, with descriptors fitting the dataset's models."""
    params = dict(yaml.safe_load(recipe.read_text())["params"])
    if dataset.name == "dcrouter":
        source = Path(str(dataset.notes.get("source") or data_root() / "llmrouter"))
        cards = json.loads((source / "example_data/llm_candidates/default_llm.json").read_text())
        params["descriptors"] = {m: f"{c['feature']} Size {c['size']}." for m, c in cards.items()}
    params.update(overrides)
    return params


def keys(ctxs: list[RouteContext]) -> list[str]:
    """The candidates' keys: ``choose`` breaks ties by them as ``route`` and the harness do (without
    them, by column order)."""
    return [a.key for a in ctxs[0].candidates]


def sweep_points(
    router: KGRouter, ctxs: list[RouteContext], table: OutcomeTable, cols: np.ndarray
) -> np.ndarray:
    """(cost, accuracy) per knob value of a UtilityRouter on ``table`` (as the harness does)."""
    score, cost = router.predict(ctxs)
    picks = cols[sweep(score, cost, router.knob_grid, router.cost_scale_, keys(ctxs))]
    rows = np.arange(len(ctxs))
    return np.array([[table.costs[rows, p].mean(), table.scores[rows, p].mean()] for p in picks])


def summary(points: np.ndarray, test: OutcomeTable) -> dict[str, float]:
    singles = M.single_model_points(test.scores, test.costs)
    c_best, _ = M.best_single(singles)
    return {
        "aiq": round(M.aiq(points, singles), 4),
        "accuracy_at_best_cost": round(M.quality_at_cost(points, c_best), 4),
        "max_accuracy": round(float(points[:, 1].max()), 4),
    }


def fit_timed(router: KGRouter, data: Any) -> dict[str, Any]:
    start = time.perf_counter()
    router.fit(data)
    report = router.train_report_
    epochs = len(report["train_loss"])
    return {
        "fit_s": round(time.perf_counter() - start, 1),
        "train_s": report["seconds"],
        "epochs": epochs,
        "best_epoch": report["best_epoch"] + 1,
        "s_per_epoch": round(report["seconds"] / max(1, epochs), 2),
        "val_aiq_best": max(report["val_aiq"]) if report["val_aiq"] else None,
    }


def latency(router: KGRouter, ctxs: list[RouteContext], n: int) -> dict[str, float]:
    """route() wall time per decision, graph construction included, embeddings cached."""
    router.predict(ctxs[:n])  # fills the embedding cache for these queries' node texts
    times, graph_times = [], []
    builder = router._builder()
    for ctx in ctxs[:n]:
        start = time.perf_counter()
        router.route(ctx)
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
        kg = builder.extractor(ctx.step_input or ctx.query)
        builder.tensors(kg, router._descriptor_texts(ctx, ctx.candidates))
        graph_times.append(time.perf_counter() - start)
    ms, gms = 1e3 * np.array(times), 1e3 * np.array(graph_times)
    return {
        "n": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "mean_ms": round(float(ms.mean()), 2),
        "graph_p50_ms": round(float(np.percentile(gms, 50)), 2),
        "graph_p99_ms": round(float(np.percentile(gms, 99)), 2),
    }


def show(title: str, payload: Any) -> None:
    print(f"\n== {title}")
    print(json.dumps(payload, indent=1, default=float))


# -- parts ----------------------------------------------------------------------------------------
def part_eval(args: argparse.Namespace) -> dict[str, Any]:
    """kg-gnn next to the reference routers through the evaluation harness."""
    dataset = _load(args)
    kg = KGRouter(**router_params(dataset, seed=args.seed))
    others = [r for r in args.compare.split(",") if r]
    result = evaluate(dataset, [kg, *others], seed=args.seed, progress=False)
    rows = []
    for r in result.routers:
        rows.append({
            "router": r.name, "aiq": r.aiq, "accuracy_at_best_cost": r.accuracy_at_best_cost,
            "max_accuracy": r.max_accuracy, "fit_s": r.fit_s, "route_us": r.route_us, "error": r.error,
        })  # fmt: skip
    diffs = {}
    single = (dataset.test.scores, dataset.test.costs)
    for r in result.routers[1:]:
        if r.error is None:
            d, lo, hi = M.bootstrap_aiq_difference(
                result.outcomes(kg.name), result.outcomes(r.name), single, n_boot=args.boot, seed=args.seed
            )
            diffs[r.name] = {"aiq_difference": round(d, 4), "ci90": [round(lo, 4), round(hi, 4)]}
    out = {
        "dataset": dataset.name,
        "n_train": len(dataset.train),
        "n_test": len(dataset.test),
        "zero_router_aiq": round(result.zero_router_aiq, 4),
        "oracle": result.oracle.model_dump(),
        "best_single": result.best_single.model_dump(),
        "cost_estimate": result.cost_estimate,
        "routers": rows,
        "kg_gnn_minus_other_paired_bootstrap": diffs,
        "kg_gnn_training": kg.train_report_,
    }
    show(f"eval on {dataset.name}", out)
    return out


def part_encoders(args: argparse.Namespace) -> dict[str, Any]:
    """HeteroConv(SAGEConv) vs HGTConv: test quality, training time and routing latency."""
    dataset = _load(args)
    ctxs, _ = build_contexts(dataset, "test")
    cols = np.arange(len(dataset.test.models))
    out: dict[str, Any] = {}
    for encoder in ("sage", "hgt"):
        router = KGRouter(**router_params(dataset, encoder=encoder, seed=args.seed))
        timing = fit_timed(router, dataset.train)
        quality = summary(sweep_points(router, ctxs, dataset.test, cols), dataset.test)
        out[encoder] = {
            **quality,
            **timing,
            **{f"route_{k}": v for k, v in latency(router, ctxs, args.n).items()},
        }
    show(f"encoders on {dataset.name}", out)
    return out


def part_latency(args: argparse.Namespace) -> dict[str, Any]:
    dataset = _load(args)
    ctxs, _ = build_contexts(dataset, "test")
    router = KGRouter(**router_params(dataset, seed=args.seed))
    timing = fit_timed(router, dataset.train)
    out = {"training": timing, "route": latency(router, ctxs, args.n)}
    show(f"latency on {dataset.name} ({len(ctxs[0].candidates)} candidates)", out)
    return out


def part_inductive(args: argparse.Namespace) -> dict[str, Any]:
    """Hold one model out of training; add it at test time from its descriptor alone."""
    dataset = _load(args)
    test, models = dataset.test, dataset.test.models
    if args.holdout not in models:
        sys.exit(f"--holdout {args.holdout!r} is not a model of {dataset.name}: {models}")
    h = models.index(args.holdout)
    keep = [j for j in range(len(models)) if j != h]
    train = dataset.train
    seen = OutcomeTable(
        train.query_ids, train.queries, [models[j] for j in keep], train.scores[:, keep], train.costs[:, keep],
        train.task_types,
    )  # fmt: skip
    ctxs, _ = build_contexts(dataset, "test")  # every test model a candidate, cost = its mean train cost
    without = [
        dataclasses.replace(
            c,
            candidates=[c.candidates[j] for j in keep],
            costs={c.candidates[j].key: c.costs[c.candidates[j].key] for j in keep},
        )
        for c in ctxs
    ]
    params = router_params(dataset, seed=args.seed)
    full = KGRouter(**params).fit(train)
    held = KGRouter(**params).fit(seen)
    points_full = sweep_points(full, ctxs, test, np.arange(len(models)))
    points_without = sweep_points(held, without, test, np.array(keep))
    points_added = sweep_points(held, ctxs, test, np.arange(len(models)))
    score, cost = held.predict(ctxs)
    share = float((held.choose(score, cost, 0.0, names=keys(ctxs)) == h).mean())
    share_full = float((full.choose(*full.predict(ctxs), 0.0, names=keys(ctxs)) == h).mean())
    out = {
        "holdout": args.holdout,
        "trained_on_all_routing_all": summary(points_full, test),
        "trained_without_routing_without": summary(points_without, test),
        "trained_without_routing_with_it_added": summary(points_added, test),
        "share_routed_to_holdout_at_lambda0": {
            "added_from_descriptor": round(share, 4),
            "trained_on_it": round(share_full, 4),
        },
        "holdout_single_model": {
            "accuracy": round(float(test.scores[:, h].mean()), 4),
            "cost": float(test.costs[:, h].mean()),
        },
        "note": "AIQ over the full pool's single-model cost range in every row (the 'without' router "
        "simply cannot pick the held-out model)",
    }
    show(f"inductive agent on {dataset.name}", out)
    return out


def part_collab(args: argparse.Namespace) -> dict[str, Any]:
    """Single agent vs top-k probability-weighted vote over the logged responses (replay)."""
    dataset = _load(args)
    test = dataset.test
    if test.responses is None:
        sys.exit(f"{dataset.name} logs no responses: collaboration cannot be replayed")
    ctxs, _ = build_contexts(dataset, "test")
    router = KGRouter(**router_params(dataset, seed=args.seed)).fit(dataset.train)
    score, cost = router.predict(ctxs)
    out: dict[str, Any] = {}
    for lam in args.lambdas:
        u = score - lam * cost / router.cost_scale_
        top1 = router.choose(score, cost, lam, names=keys(ctxs))
        prob = np.exp((u - u.max(axis=1, keepdims=True)) / router.temperature)
        prob /= prob.sum(axis=1, keepdims=True)
        rows: dict[str, Any] = {}
        for label, k, mass in [
            ("single", 1, None),
            ("top-2", 2, None),
            ("top-3", 3, None),
            ("mass-0.9(k<=3)", 3, 0.9),
        ]:
            acc, spent, sizes, agree = [], [], [], []
            for i in range(len(test)):
                order = [int(top1[i])] + [int(j) for j in np.argsort(-u[i], kind="stable") if j != top1[i]]
                chosen = [order[0]]
                for j in order[1:]:
                    if len(chosen) >= k or (mass is not None and prob[i, chosen].sum() >= mass):
                        break
                    chosen.append(j)
                answers = [test.responses[i][j] for j in chosen]
                text, share = weighted_vote(answers, [float(prob[i, j]) for j in chosen])
                winner = chosen[answers.index(text)]
                acc.append(test.scores[i, winner])
                spent.append(test.costs[i, chosen].sum())
                sizes.append(len(chosen))
                agree.append(share)
            rows[label] = {
                "accuracy": round(float(np.mean(acc)), 4),
                "cost": float(np.mean(spent)),
                "mean_agents": round(float(np.mean(sizes)), 2),
                "mean_vote_share": round(float(np.mean(agree)), 3),
            }
        out[f"lambda={lam:g}"] = rows
    show(f"collaboration on {dataset.name} (replayed logged responses)", out)
    return out


def _load(args: argparse.Namespace) -> RoutingDataset:
    dataset = load_dataset(args.dataset)
    if args.limit:  # smoke runs: the first N rows of each split
        keep = np.arange(args.limit)
        dataset = dataclasses.replace(
            dataset,
            train=dataset.train.rows(keep),
            test=dataset.test.rows(keep[: len(dataset.test)]),
            _tokens={},
        )
    return dataset


PARTS = {
    "eval": part_eval,
    "encoders": part_encoders,
    "latency": part_latency,
    "inductive": part_inductive,
    "collab": part_collab,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("part", choices=sorted(PARTS))
    parser.add_argument("--dataset", default="routerbench", help="KIND or KIND:DIR (default routerbench)")
    parser.add_argument("--compare", default=",".join(COMPARE), help="routers to evaluate next to kg-gnn")
    parser.add_argument(
        "--holdout", default="gpt-4-1106-preview", help="model held out of training (inductive)"
    )
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0.0], help="cost weights for collab")
    parser.add_argument("--n", type=int, default=300, help="decisions timed (latency)")
    parser.add_argument("--boot", type=int, default=1000, help="bootstrap resamples (eval)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=0, help="smoke run: first N rows of each split")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    result = PARTS[args.part](args)
    print(f"\n({args.part} took {time.perf_counter() - start:.0f} s)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()

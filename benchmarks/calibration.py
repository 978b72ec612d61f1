"""Calibration of the learned routers' per-agent success probabilities, and the decision rule.

For each dataset, each router that predicts a success probability per candidate (a utility router
whose predicted score is in [0, 1]) is fitted on train (in train mode, then put in serving mode) and
predicts every test query × candidate. Printed: ECE and Brier score of those predictions against the
logged test outcomes (``agentroute.eval.metrics.reliability``), and, on the same predictions, the
AIQ of two cost-aware decision rules (anchored at the cheapest model the rule uses):

- **λ sweep** — argmax ŝ − λ·ĉ/c_scale over λ (what the harness and ``route`` do);
- **threshold** — the cheapest candidate (by predicted cost) whose predicted success is ≥ τ, else
  the most likely one, over τ ∈ [0, 1] (the rule RouteLLM's routers use with two models, Ong et al.,
  arXiv 2406.18665, generalised to k models).

``--figures DIR`` writes one reliability diagram per dataset: ``DIR/calibration_<dataset>.png``.

    python benchmarks/calibration.py --figures benchmarks/figures
    python benchmarks/calibration.py --datasets routerbench --routers logreg,per-task
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROUTERS = "per-task,knn,logreg,mlp,mf"
DATASETS = "routerbench,dcrouter,routellm-mmlu"


def threshold_choices(score: np.ndarray, cost: np.ndarray, tau: float) -> np.ndarray:
    """Per row: the cheapest column whose score is ≥ ``tau``, else the highest-scoring column.

    >>> threshold_choices(np.array([[0.9, 0.6, 0.2]]), np.array([[3.0, 2.0, 1.0]]), 0.5).tolist()
    [1]
    >>> threshold_choices(np.array([[0.9, 0.6, 0.2]]), np.array([[3.0, 2.0, 1.0]]), 0.95).tolist()
    [0]
    """
    ok = score >= tau
    by_cost = np.where(ok, cost, np.inf)
    cheapest_ok = np.argmin(by_cost, axis=1)
    return np.where(ok.any(axis=1), cheapest_ok, np.argmax(score, axis=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=DATASETS)
    parser.add_argument("--routers", default=ROUTERS)
    parser.add_argument("--bins", type=int, default=10)
    parser.add_argument("--figures", type=Path, default=None, help="write calibration_<dataset>.png here")
    parser.add_argument("--limit", type=int, default=None, help="at most N queries per split (seeded subset)")
    parser.add_argument("--sample", type=float, default=None, help="this fraction of each split (seeded subset)")
    args = parser.parse_args(argv)
    print(f"command: python {' '.join(sys.argv)}")
    from agentroute.eval import load_dataset
    from agentroute.eval import metrics as M
    from agentroute.eval.harness import _columns, _with_cards, build_contexts, make_eval_router
    from agentroute.eval.plots import plot_reliability
    from agentroute.routers.utility import KNOB_GRID

    for spec in args.datasets.split(","):
        data = load_dataset(spec, seed=0, limit=args.limit, sample=args.sample)
        test = data.test
        ctxs, _ = build_contexts(data, "test")
        cols = _columns(test, ctxs[0].candidates)
        names = [a.key for a in ctxs[0].candidates]  # ties broken as route and the harness break them
        rows = np.arange(len(ctxs))
        singles = M.single_model_points(test.scores, test.costs)
        outcome = test.scores[:, cols]
        print(f"\n{data.name}: {len(data.train)} train / {len(test)} test, load average {os.getloadavg()[0]:.1f}")
        print("| router | ECE | Brier | AIQ, λ sweep | AIQ, threshold τ | fit s |")
        print("|---|---:|---:|---:|---:|---:|")
        curves = {}
        for rspec in args.routers.split(","):
            name, router = make_eval_router(rspec)
            start = time.perf_counter()
            router.train().fit(_with_cards(data.train, data))
            fit_s = time.perf_counter() - start
            router.serve()
            score, cost = router.predict(ctxs)
            if np.nanmin(score) < -1e-9 or np.nanmax(score) > 1 + 1e-9:
                print(f"| {name} | (scores outside [0, 1]: not probabilities) | | | | {fit_s:.1f} |")
                continue
            rel = M.reliability(score, outcome, bins=args.bins)
            curves[name] = rel
            aiq = {}
            for rule, picks in (
                ("lambda", [router.choose(score, cost, lam, names=names) for lam in KNOB_GRID]),
                ("tau", [threshold_choices(score, cost, t) for t in np.linspace(0, 1, 101)]),
            ):
                choices = cols[np.stack(picks)]
                pts = np.column_stack([test.costs[rows, choices].mean(axis=1), test.scores[rows, choices].mean(axis=1)])
                aiq[rule] = M.aiq(pts, singles, M.anchor_index(singles, choices))
            print(f"| {name} | {rel['ece']:.3f} | {rel['brier']:.3f} | {aiq['lambda']:.3f} | {aiq['tau']:.3f} | {fit_s:.1f} |",
                  flush=True)  # fmt: skip
        if args.figures and curves:
            path = plot_reliability(curves, args.figures / f"calibration_{data.name}.png",
                                    title=f"{data.name}: predicted success vs logged outcome (test)")  # fmt: skip
            print(f"figure: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

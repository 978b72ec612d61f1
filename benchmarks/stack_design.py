"""How the ``stack`` router's design was chosen, on training data only, and its probabilities on test.

``--split train`` (the design study): each dataset's train split is cut (seeded) into A (75%, or the
first ``--n-fit`` rows) and B (the rest); the stack is fitted on A with one 25% validation split
(``folds=1``) and with five out-of-fold folds (``folds=5``, the default), and each base and each stack
is scored by cross-entropy and Brier score on B. No test row is read. ``--split test`` reports the
same scores on the test split for the default stack fitted on all of train (what the quality tables
route with; reported, not used to choose anything).

    python benchmarks/stack_design.py --datasets routerbench,dcrouter,routellm-mmlu --sample 0.5
    python benchmarks/stack_design.py --datasets routerbench --n-fit 600
    python benchmarks/stack_design.py --split test --datasets routerbench,dcrouter,routellm-mmlu
"""

from __future__ import annotations

import argparse

import numpy as np

from agentroute.eval import load_dataset
from agentroute.outcomes import OutcomeTable
from agentroute.routers.stack import StackRouter, cross_entropy
from agentroute.types import RouteContext


def scores(router: StackRouter, table: OutcomeTable) -> dict[str, str]:
    """Cross-entropy / Brier of each base and of the stack on ``table``."""
    ctxs = [RouteContext(query=q, candidates=[]) for q in table.queries]
    y = np.clip(table.scores, 0.0, 1.0)
    logged = ~np.isnan(y)
    preds = {b.name: b._predict_columns(ctxs)[0] for b in router.bases_}
    preds[f"stack (folds={router.folds}, l2={router.l2_:g})"] = router._predict_columns(ctxs)[0]
    return {
        name: f"{cross_entropy(p[logged], y[logged], np.ones(logged.sum())):.4f} / "
        f"{np.mean((p[logged] - y[logged]) ** 2):.4f}"
        for name, p in preds.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="routerbench,dcrouter,routellm-mmlu")
    parser.add_argument("--split", choices=("train", "test"), default="train")
    parser.add_argument("--n-fit", type=int, default=None, help="rows of A (default 75%% of train)")
    parser.add_argument("--sample", type=float, default=0.5, help="fraction of RouteLLM MMLU (as quality.py)")
    args = parser.parse_args()
    for spec in args.datasets.split(","):
        ds = load_dataset(spec, seed=0, sample=args.sample if spec == "routellm-mmlu" else None)
        if args.split == "test":
            fit, score, variants = ds.train, ds.test, (5,)
        else:
            order = np.random.default_rng(1).permutation(len(ds.train))
            n = min(args.n_fit or len(order), int(0.75 * len(order)))
            fit, score, variants = (
                ds.train.rows(np.sort(order[:n])),
                ds.train.rows(np.sort(order[n:])),
                (1, 5),
            )
        print(f"{ds.name}: fitted on {len(fit)} rows, scored on {len(score)} {args.split} rows "
              "(cross-entropy / Brier)")  # fmt: skip
        rows: dict[str, str] = {}
        for folds in variants:
            rows.update(scores(StackRouter(folds=folds, seed=0).fit(fit), score))
        for name, value in rows.items():
            print(f"  {name:28s} {value}")


if __name__ == "__main__":
    main()

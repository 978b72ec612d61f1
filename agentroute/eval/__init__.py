"""Evaluation on logged outcomes: datasets, metrics, the router sweep harness and plots.

``load_dataset("routerbench:DIR")`` → :class:`RoutingDataset`; ``evaluate(dataset, ["knn", "mf"])``
→ :class:`EvalResult` (the JSON of ``agentroute eval --json``); ``plot_curves(result, "curves.png")``
(or ``curves_figure(result)``: the matplotlib ``Figure``, shown inline in a notebook).
Metrics (AIQ, APGR, CPT, Pareto frontier, zero router, oracle) live in :mod:`agentroute.eval.metrics`.
"""

from agentroute.eval.datasets import (
    RoutingDataset,
    data_root,
    dataset_kinds,
    load_dataset,
    load_dcrouter,
    load_routellm_mmlu,
    load_routerbench,
)
from agentroute.eval.harness import build_contexts, evaluate, knob_values, sweep_router
from agentroute.eval.plots import curves_figure, plot_curves
from agentroute.eval.results import EvalResult, RouterResult
from agentroute.eval.tokens import TokenCounter

__all__ = [
    "EvalResult",
    "RouterResult",
    "RoutingDataset",
    "TokenCounter",
    "build_contexts",
    "curves_figure",
    "data_root",
    "dataset_kinds",
    "evaluate",
    "knob_values",
    "load_dataset",
    "load_dcrouter",
    "load_routellm_mmlu",
    "load_routerbench",
    "plot_curves",
    "sweep_router",
]

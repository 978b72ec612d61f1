"""Evaluation on logged outcomes: datasets, metrics, the router sweep harness and plots."""

from agentroute.eval.datasets import (
    RoutingDataset,
    data_root,
    dataset_kinds,
    load_dataset,
    load_dcrouter,
    load_routellm_mmlu,
    load_routerbench,
)

__all__ = [
    "RoutingDataset",
    "data_root",
    "dataset_kinds",
    "load_dataset",
    "load_dcrouter",
    "load_routellm_mmlu",
    "load_routerbench",
]

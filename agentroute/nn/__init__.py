"""Graph neural network modules (PyTorch Geometric) used by the learned routers.

Importing this package imports torch and torch-geometric (the ``ml`` extra): a missing one raises
:class:`~agentroute.errors.MissingDependencyError` naming the extra; torch runs one intra-op thread.
"""

from agentroute._optional import require, torch_module

torch_module()
require("torch_geometric")


from agentroute.nn.hetero_sage import HeteroSAGE  # noqa: E402 (after the dependency check)
from agentroute.nn.hgt import HGTEncoder  # noqa: E402
from agentroute.nn.kg_router_net import KGRouterNet  # noqa: E402
from agentroute.nn.kl import SoftKLLoss, grouped_kl_div, grouped_log_softmax, soft_targets  # noqa: E402
from agentroute.nn.pair_score import PairScore  # noqa: E402

__all__ = [
    "HGTEncoder",
    "HeteroSAGE",
    "KGRouterNet",
    "PairScore",
    "SoftKLLoss",
    "grouped_kl_div",
    "grouped_log_softmax",
    "soft_targets",
]

"""Graph neural network modules (PyTorch Geometric) used by the learned routers.

Importing this package imports torch and torch-geometric (the ``ml`` extra).
"""

from agentroute.nn.hetero_sage import HeteroSAGE
from agentroute.nn.hgt import HGTEncoder
from agentroute.nn.kg_router_net import KGRouterNet
from agentroute.nn.kl import SoftKLLoss, grouped_kl_div, grouped_log_softmax, soft_targets
from agentroute.nn.pair_score import PairScore

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

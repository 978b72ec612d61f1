"""The torch network of the ``graph-router`` router (:mod:`agentroute.routers.graph_router`), imported
when one is built: torch and torch-geometric (seconds)."""

from __future__ import annotations

from agentroute.routers.base import import_torch
from agentroute.routers.graph_router import EDGE_FEATURES

import_torch()  # one torch thread, or a clear error naming the [ml] extra
import torch  # noqa: E402


class GraphRouterNet(torch.nn.Module):
    """GraphRouter's encoder–decoder over a query → LLM graph.

    Args:
        query_dim: width of the query features (MiniLM: 384).
        llm_dim: width of the LLM descriptor features.
        hidden: h, the common node width of both GNN layers.
        edge_dim: edge features (3: utility, cost, effect).

    Shapes:
        query_x (n_q × query_dim), llm_x (n_m × llm_dim); nodes are numbered queries first, then
        LLMs; ``edge_index`` (2 × E) holds (query node, LLM node) pairs, ``edge_attr`` (E × edge_dim).
        :meth:`encode` → (x⁰, x²), each ((n_q + n_m) × h); :meth:`decode` → P(edge) per pair (P,).
    """

    def __init__(
        self,
        query_dim: int,
        llm_dim: int,
        hidden: int,
        edge_dim: int = len(EDGE_FEATURES),
        attention: bool = False,
    ) -> None:
        super().__init__()
        self.query_align = torch.nn.Linear(query_dim, hidden)
        self.llm_align = torch.nn.Linear(llm_dim, hidden)
        self.edge_mlp = torch.nn.Linear(edge_dim, edge_dim)
        # attention weights are a softmax over the incoming edges: summing them is a weighted mean
        conv = {"in_edge_channels": edge_dim, "aggr": "add" if attention else "mean", "attention": attention}
        from torch_geometric.nn import GeneralConv

        self.conv1 = GeneralConv(hidden, hidden, **conv)
        self.conv2 = GeneralConv(hidden, hidden, **conv)
        self.bn1 = torch.nn.BatchNorm1d(hidden)
        self.bn2 = torch.nn.BatchNorm1d(hidden)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for child in (
            self.query_align,
            self.llm_align,
            self.edge_mlp,
            self.conv1,
            self.conv2,
            self.bn1,
            self.bn2,
        ):
            child.reset_parameters()

    def encode(
        self, query_x: torch.Tensor, llm_x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x0 = torch.cat([self.query_align(query_x), self.llm_align(llm_x)], dim=0)
        e = torch.relu(self.edge_mlp(edge_attr))
        x = torch.relu(self.bn1(self.conv1(x0, edge_index, edge_attr=e)))
        x = self.bn2(self.conv2(x, edge_index, edge_attr=e))
        return x0, x

    @staticmethod
    def decode(x0: torch.Tensor, x: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        """σ(mean(x⁰_q ⊙ x²_m)) for each (query node, LLM node) column of ``pairs``."""
        return torch.sigmoid((x0[pairs[0]] * x[pairs[1]]).mean(dim=-1))

"""The AgentRouter network: a heterogeneous GNN encoder and a (query, agent) score head."""

from __future__ import annotations

from typing import Any, Literal

import torch

from agentroute.nn.hetero_sage import HeteroSAGE
from agentroute.nn.hgt import HGTEncoder
from agentroute.nn.pair_score import PairScore
from agentroute.nn.residual_hetero import Metadata

Encoder = Literal["sage", "hgt"]


class KGRouterNet(torch.nn.Module):
    r"""AgentRouter ("A Knowledge-Graph-Guided LLM Router for Collaborative Multi-Agent QA"):
    encode each query's knowledge graph (query, entity, relation and agent nodes) with a
    type-aware GNN, then score every agent node against its query node,

    .. math:: z_{q,a} = \mathrm{PairScore}\big(\mathrm{GNN}(G_q)_q,\ \mathrm{GNN}(G_q)_a\big),
              \qquad p_\theta(a \mid q, G_q) = \operatorname{softmax}_{a} z_{q,a}.

    Agents are nodes featured by the embedding of their text descriptor only (no per-agent
    parameters), so an agent unseen in training is scored from its descriptor (inductive).

    Args:
        in_channels: node feature size (384 for MiniLM).
        hidden_channels: representation size (default 128).
        num_layers: GNN layers (default 2).
        metadata: ``(node_types, edge_types)``; must include ``query`` and ``agent`` node types.
        encoder: ``"sage"`` (:class:`~agentroute.nn.hetero_sage.HeteroSAGE`) or ``"hgt"``
            (:class:`~agentroute.nn.hgt.HGTEncoder`).
        heads: attention heads of ``"hgt"`` (default 4).
        dropout: dropout in the encoder (default 0.1).

    Shapes:
        - **input:** ``x_dict``, ``edge_index_dict`` of a batch of query graphs with one query
          node each, ``agent_query`` :math:`(A,)` (the query of each agent node)
        - **output:** :math:`(A,)` logits
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int = 128,
        num_layers: int = 2,
        *,
        metadata: Metadata,
        encoder: Encoder = "sage",
        heads: int = 4,
        dropout: float = 0.1,
    ):
        super().__init__()
        node_types = metadata[0]
        if "query" not in node_types or "agent" not in node_types:
            raise ValueError(f"'metadata' node types (got {node_types}) must include 'query' and 'agent'")
        self.encoder_name = encoder
        if encoder == "sage":
            self.encoder: torch.nn.Module = HeteroSAGE(
                in_channels, hidden_channels, num_layers, metadata=metadata, dropout=dropout
            )
        elif encoder == "hgt":
            self.encoder = HGTEncoder(
                in_channels, hidden_channels, num_layers, metadata=metadata, heads=heads, dropout=dropout
            )
        else:
            raise ValueError(f"'encoder' (got {encoder!r}) must be 'sage' or 'hgt'")
        self.head = PairScore(hidden_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.encoder.reset_parameters()  # type: ignore[operator]
        self.head.reset_parameters()

    def forward(
        self, x_dict: dict[str, Any], edge_index_dict: dict[tuple[str, str, str], Any], agent_query: Any
    ) -> Any:
        h = self.encoder(x_dict, edge_index_dict)
        return self.head(h["query"], h["agent"], agent_query)

"""Heterogeneous GraphSAGE: one :class:`~torch_geometric.nn.conv.SAGEConv` per edge type, summed."""

from __future__ import annotations

from typing import Any

from agentroute._optional import require, torch_module

torch = torch_module()
pyg_nn = require("torch_geometric.nn")

Metadata = tuple[list[str], list[tuple[str, str, str]]]


class HeteroSAGE(torch.nn.Module):
    r"""A stack of heterogeneous GraphSAGE layers ("Inductive Representation Learning on Large
    Graphs", Hamilton et al., NeurIPS 2017, https://arxiv.org/abs/1706.02216) in the relational
    form of :class:`~torch_geometric.nn.conv.HeteroConv` (R-GCN style sum over edge types).

    Node features are first projected per node type, :math:`\mathbf{h}^{(0)}_v =
    \mathrm{ReLU}(\mathbf{W}_{\tau(v)}\mathbf{x}_v)`; then each layer :math:`\ell` computes

    .. math::
        \mathbf{h}^{(\ell+1)}_v = \mathbf{h}^{(\ell)}_v + \mathrm{Dropout}\Big(\mathrm{ReLU}\Big(
        \sum_{r=(\tau_s, \rho, \tau(v))} \mathbf{W}^{\mathrm{root}}_{r}\mathbf{h}^{(\ell)}_v
        + \mathbf{W}_{r}\,\frac{1}{|\mathcal{N}_r(v)|}\sum_{u \in \mathcal{N}_r(v)}
        \mathbf{h}^{(\ell)}_u\Big)\Big),

    with a residual connection so that a node with no neighbours of some type (a query with no
    entities) keeps its own representation.

    Args:
        in_channels: input size of every node type, or a dict by node type.
        hidden_channels: size of the node representations (default 128).
        num_layers: message-passing layers (default 2).
        metadata: ``(node_types, edge_types)`` of the graphs, as
            :meth:`~torch_geometric.data.HeteroData.metadata` returns it.
        dropout: dropout on each layer's update (default 0.1).

    Shapes:
        - **input:** ``x_dict`` {type: :math:`(|\mathcal{V}_t|, F_{in})`},
          ``edge_index_dict`` {edge type: :math:`(2, |\mathcal{E}_r|)`}
        - **output:** {type: :math:`(|\mathcal{V}_t|, F_{hidden})`}
    """

    def __init__(
        self,
        in_channels: int | dict[str, int],
        hidden_channels: int = 128,
        num_layers: int = 2,
        *,
        metadata: Metadata,
        dropout: float = 0.1,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"'num_layers' (got {num_layers}) must be at least 1")
        node_types, edge_types = metadata
        self.metadata = (list(node_types), list(edge_types))
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.dropout = dropout
        self.lin_in = pyg_nn.HeteroDictLinear(in_channels, hidden_channels, types=list(node_types))
        self.convs = torch.nn.ModuleList(
            pyg_nn.HeteroConv(
                {et: pyg_nn.SAGEConv((hidden_channels, hidden_channels), hidden_channels) for et in edge_types},
                aggr="sum",
            )
            for _ in range(num_layers)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lin_in.reset_parameters()
        for conv in self.convs:
            conv.reset_parameters()

    def forward(self, x_dict: dict[str, Any], edge_index_dict: dict[tuple[str, str, str], Any]) -> dict[str, Any]:
        F = torch.nn.functional
        h = {t: F.relu(x) for t, x in self.lin_in(x_dict).items()}
        for conv in self.convs:
            out = conv(h, edge_index_dict)
            h = {t: x + F.dropout(F.relu(out[t]), self.dropout, self.training) if t in out else x for t, x in h.items()}
        return h

    def __repr__(self) -> str:
        return f"{type(self).__name__}(hidden={self.hidden_channels}, num_layers={self.num_layers})"

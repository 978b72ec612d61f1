"""Heterogeneous Graph Transformer encoder: a stack of :class:`~torch_geometric.nn.conv.HGTConv`."""

from __future__ import annotations

from typing import Any

import torch
import torch_geometric.nn as pyg_nn

Metadata = tuple[list[str], list[tuple[str, str, str]]]


class HGTEncoder(torch.nn.Module):
    r"""A stack of Heterogeneous Graph Transformer layers ("Heterogeneous Graph Transformer",
    Hu et al., WWW 2020, https://arxiv.org/abs/2003.01332).

    After a per-type projection :math:`\mathbf{h}^{(0)}_v = \mathrm{ReLU}(\mathbf{W}_{\tau(v)}
    \mathbf{x}_v)`, each layer attends over the neighbours of each edge type
    :math:`r = (\tau(u), \phi, \tau(v))` with type-specific keys, queries and values,

    .. math::
        \alpha_{uv} = \operatorname{softmax}_{u \in \mathcal{N}(v)}\Big(
        \frac{\mathbf{K}_{\tau(u)}(\mathbf{h}_u)\,\mathbf{W}^{\mathrm{att}}_{\phi}\,
        \mathbf{Q}_{\tau(v)}(\mathbf{h}_v)^{\top}\,\mu_{r}}{\sqrt{d}}\Big),\qquad
        \mathbf{h}'_v = \beta_{\tau(v)}\,\mathbf{A}_{\tau(v)}\Big(\mathrm{GELU}\big(
        \textstyle\sum_u \alpha_{uv}\mathbf{V}_{\tau(u)}(\mathbf{h}_u)\mathbf{W}^{\mathrm{msg}}_{\phi}\big)\Big)
        + (1-\beta_{\tau(v)})\,\mathbf{h}_v,

    per head, with a learned gated skip :math:`\beta = \sigma(s_{\tau(v)})`. As in
    :class:`~agentroute.nn.hetero_sage.HeteroSAGE`, each layer's output is added to its input
    (:math:`\mathbf{h}^{(\ell+1)} = \mathbf{h}^{(\ell)} + \mathrm{Dropout}(\mathbf{h}'))`, so the two
    encoders differ only in their operator; a node type that receives no message keeps its
    representation.

    Args:
        in_channels: input size of every node type, or a dict by node type.
        hidden_channels: size of the node representations (default 128); divisible by ``heads``.
        num_layers: HGT layers (default 2).
        metadata: ``(node_types, edge_types)`` of the graphs.
        heads: attention heads (default 4).
        dropout: dropout on each layer's output (default 0.1).

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
        heads: int = 4,
        dropout: float = 0.1,
    ):
        super().__init__()
        if hidden_channels % heads:
            raise ValueError(
                f"'hidden_channels' (got {hidden_channels}) must be divisible by 'heads' (got {heads})"
            )
        if num_layers < 1:
            raise ValueError(f"'num_layers' (got {num_layers}) must be at least 1")
        node_types, edge_types = metadata
        self.metadata = (list(node_types), list(edge_types))
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.heads = heads
        self.dropout = dropout
        self.lin_in = pyg_nn.HeteroDictLinear(in_channels, hidden_channels, types=list(node_types))
        self.convs = torch.nn.ModuleList(
            pyg_nn.HGTConv(hidden_channels, hidden_channels, self.metadata, heads=heads)
            for _ in range(num_layers)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lin_in.reset_parameters()
        for conv in self.convs:
            conv.reset_parameters()  # type: ignore[operator]

    def forward(
        self, x_dict: dict[str, Any], edge_index_dict: dict[tuple[str, str, str], Any]
    ) -> dict[str, Any]:
        F = torch.nn.functional
        h = {t: F.relu(x) for t, x in self.lin_in(x_dict).items()}
        for conv in self.convs:
            out = conv(h, edge_index_dict)
            h = {
                t: x + F.dropout(out[t], self.dropout, self.training) if out.get(t) is not None else x
                for t, x in h.items()
            }
        return h

    def __repr__(self) -> str:
        return f"{type(self).__name__}(hidden={self.hidden_channels}, num_layers={self.num_layers}, heads={self.heads})"

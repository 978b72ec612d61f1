"""Heterogeneous Graph Transformer encoder: a stack of :class:`~torch_geometric.nn.conv.HGTConv`."""

from __future__ import annotations

from typing import Any

import torch_geometric.nn as pyg_nn

from agentroute.nn.residual_hetero import Metadata, ResidualHeteroEncoder


class HGTEncoder(ResidualHeteroEncoder):
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
        if hidden_channels % heads:
            raise ValueError(
                f"'hidden_channels' (got {hidden_channels}) must be divisible by 'heads' (got {heads})"
            )
        super().__init__(
            in_channels,
            hidden_channels,
            num_layers,
            metadata,
            dropout,
            lambda meta: pyg_nn.HGTConv(hidden_channels, hidden_channels, meta, heads=heads),
        )
        self.heads = heads
        self.reset_parameters()

    def _repr_fields(self) -> dict[str, Any]:
        return {**super()._repr_fields(), "heads": self.heads}

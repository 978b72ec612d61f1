"""The frame shared by kg-gnn's heterogeneous encoders, :class:`~agentroute.nn.hetero_sage.HeteroSAGE`
(GraphSAGE, Hamilton et al., NeurIPS 2017) and :class:`~agentroute.nn.hgt.HGTEncoder` (HGT, Hu et al.,
WWW 2020): per-type input projection, then residual layers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch_geometric.nn as pyg_nn

Metadata = tuple[list[str], list[tuple[str, str, str]]]
EdgeIndexDict = dict[tuple[str, str, str], Any]


class ResidualHeteroEncoder(torch.nn.Module):
    r"""Node features projected per type, :math:`\mathbf{h}^{(0)}_v = \mathrm{ReLU}(\mathbf{W}_{\tau(v)}
    \mathbf{x}_v)`, then ``num_layers`` layers each added to its input,
    :math:`\mathbf{h}^{(\ell+1)} = \mathbf{h}^{(\ell)} + \mathrm{Dropout}(\mathbf{h}')`; a node type
    that receives no message keeps its representation.

    Subclasses give the layer (``make_layer(metadata)``, built ``num_layers`` times) and set
    :attr:`relu_output` when the layer's output is passed through a ReLU before the dropout. The
    parameters are ``lin_in`` (a :class:`~torch_geometric.nn.dense.HeteroDictLinear`) and ``convs``.
    """

    relu_output: ClassVar[bool] = False

    def __init__(
        self,
        in_channels: int | dict[str, int],
        hidden_channels: int,
        num_layers: int,
        metadata: Metadata,
        dropout: float,
        make_layer: Callable[[Metadata], torch.nn.Module],
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
        self.convs = torch.nn.ModuleList(make_layer(self.metadata) for _ in range(num_layers))

    def reset_parameters(self) -> None:
        self.lin_in.reset_parameters()
        for conv in self.convs:
            conv.reset_parameters()  # type: ignore[operator]

    def forward(self, x_dict: dict[str, Any], edge_index_dict: EdgeIndexDict) -> dict[str, Any]:
        F = torch.nn.functional
        h = {t: F.relu(x) for t, x in self.lin_in(x_dict).items()}
        layer_out = self._layer_runner(edge_index_dict, h)
        for layer, conv in enumerate(self.convs):
            out = layer_out(layer, conv, h)
            h = {
                t: x + F.dropout(F.relu(out[t]) if self.relu_output else out[t], self.dropout, self.training)
                if out.get(t) is not None
                else x
                for t, x in h.items()
            }
        return h

    def _layer_runner(
        self, edge_index_dict: EdgeIndexDict, h: dict[str, Any]
    ) -> Callable[[int, Any, dict[str, Any]], dict[str, Any]]:
        """How a layer maps ``h`` to its output on these edges (default: ``conv(h, edge_index_dict)``)."""
        return lambda layer, conv, h: conv(h, edge_index_dict)

    def _repr_fields(self) -> dict[str, Any]:
        """What :meth:`__repr__` shows (each value as ``str``: 8, not ``np.int64(8)`` from a grid);
        subclasses add their own options."""
        return {"hidden": self.hidden_channels, "num_layers": self.num_layers}

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value}" for key, value in self._repr_fields().items())
        return f"{type(self).__name__}({fields})"

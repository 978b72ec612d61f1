"""Heterogeneous GraphSAGE: one :class:`~torch_geometric.nn.conv.SAGEConv` per edge type, summed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch_geometric.nn as pyg_nn

from agentroute.nn.residual_hetero import EdgeIndexDict, Metadata, ResidualHeteroEncoder


class HeteroSAGE(ResidualHeteroEncoder):
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

    The parameters are those of ``HeteroConv({r: SAGEConv(...)}, aggr="sum")`` (same
    ``state_dict``). With ``fused=True`` (default) a layer is computed as one matrix product per
    node type, :math:`[\bar{\mathbf{h}}_{r_1} \| \dots \| \bar{\mathbf{h}}_{r_k} \| \mathbf{h}_v]
    [\mathbf{W}_{r_1} \| \dots \| \mathbf{W}_{r_k} \| \sum_r \mathbf{W}^{\mathrm{root}}_r]^{\top}`,
    which gives the same numbers with a fraction of the operator calls (a decision on one small
    graph is dominated by per-call overhead); ``fused=False`` runs the torch-geometric modules.

    Args:
        in_channels: input size of every node type, or a dict by node type.
        hidden_channels: size of the node representations (default 128).
        num_layers: message-passing layers (default 2).
        metadata: ``(node_types, edge_types)`` of the graphs, as
            :meth:`~torch_geometric.data.HeteroData.metadata` returns it.
        dropout: dropout on each layer's update (default 0.1).
        fused: compute each layer with one matrix product per node type (default ``True``).

    Shapes:
        - **input:** ``x_dict`` {type: :math:`(|\mathcal{V}_t|, F_{in})`},
          ``edge_index_dict`` {edge type: :math:`(2, |\mathcal{E}_r|)`}
        - **output:** {type: :math:`(|\mathcal{V}_t|, F_{hidden})`}
    """

    relu_output = True

    def __init__(
        self,
        in_channels: int | dict[str, int],
        hidden_channels: int = 128,
        num_layers: int = 2,
        *,
        metadata: Metadata,
        dropout: float = 0.1,
        fused: bool = True,
    ):
        def make_layer(metadata: Metadata) -> torch.nn.Module:
            sage = {
                et: pyg_nn.SAGEConv((hidden_channels, hidden_channels), hidden_channels) for et in metadata[1]
            }
            return pyg_nn.HeteroConv(sage, aggr="sum")

        super().__init__(in_channels, hidden_channels, num_layers, metadata, dropout, make_layer)
        self.fused = fused
        self._edge_types = set(self.metadata[1])
        self._cache: dict[Any, tuple[Any, Any, Any]] = {}
        self._layer_params = [list(conv.parameters()) for conv in self.convs]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self._cache.clear()
        super().reset_parameters()

    def _layer_runner(
        self, edge_index_dict: EdgeIndexDict, h: dict[str, Any]
    ) -> Callable[[int, Any, dict[str, Any]], dict[str, Any]]:
        if not self.fused:
            return super()._layer_runner(edge_index_dict, h)
        plan = self._plan(edge_index_dict, h)
        return lambda layer, conv, h: self._fused_layer(layer, conv, h, plan)

    def _plan(self, edge_index_dict: EdgeIndexDict, h: dict[str, Any]) -> dict[str, Any]:
        """Per destination type: its edge types, and for those with edges (source, gather index,
        scatter index, 1/in-degree): the mean aggregation, shared by every layer."""
        plan: dict[str, tuple[list[Any], list[Any]]] = {}
        for edge_type, edge_index in edge_index_dict.items():
            if edge_type not in self._edge_types:
                continue
            src, _, dst = edge_type
            present, aggregations = plan.setdefault(dst, ([], []))
            present.append(edge_type)
            if edge_index.shape[1]:
                n_dst = h[dst].shape[0]
                inv = 1.0 / torch.bincount(edge_index[1], minlength=n_dst).clamp_(min=1).unsqueeze(1).to(
                    h[dst].dtype
                )
                aggregations.append((edge_type, src, edge_index[0], edge_index[1], inv))
        return plan

    def _fused_layer(self, layer: int, conv: Any, h: dict[str, Any], plan: dict[str, Any]) -> dict[str, Any]:
        """``conv(h, edge_index_dict)`` — a ``HeteroConv`` of ``SAGEConv`` (mean, root weight, sum
        over edge types) — as one matrix product per destination node type."""
        out = {}
        for dst, (present, aggregations) in plan.items():
            blocks = [
                h[src]
                .new_zeros((h[dst].shape[0], h[src].shape[1]))
                .index_add_(0, index, h[src].index_select(0, gather))
                * inv
                for _, src, gather, index, inv in aggregations
            ]
            weight, bias = self._fused_weights(
                layer, conv, dst, tuple(present), tuple(a[0] for a in aggregations)
            )
            out[dst] = torch.nn.functional.linear(torch.cat([*blocks, h[dst]], dim=1), weight, bias)
        return out

    def _fused_weights(
        self, layer: int, conv: Any, dst: str, present: tuple[Any, ...], with_edges: tuple[Any, ...]
    ) -> tuple[Any, Any]:
        """``[W_r1 | … | W_rk | Σ_r W_root_r]`` and ``Σ_r b_r``; cached while the parameters are
        unchanged and no gradient is needed."""
        cacheable = not torch.is_grad_enabled()
        if cacheable:
            version = tuple(p._version for p in self._layer_params[layer])
            key = (layer, dst, present, with_edges)
            hit = self._cache.get(key)
            if hit is not None and hit[0] == version:
                return hit[1], hit[2]
        sages = [conv.convs[et] for et in present]
        root = torch.stack([s.lin_r.weight for s in sages]).sum(0)
        bias = torch.stack([s.lin_l.bias for s in sages]).sum(0)
        weight = torch.cat([*(conv.convs[et].lin_l.weight for et in with_edges), root], dim=1)
        if cacheable:
            self._cache[key] = (version, weight.detach(), bias.detach())
        return weight, bias

"""The compact tier policy of BoPO's default router: an MLP over the routing state.

BoPO (Zhang et al., arXiv:2602.21227) fine-tunes a 1.5B LM as the router; agentroute's default
is this small network, fast on one CPU thread:

.. math::

    h = \\mathrm{ReLU}(W_e\\,e_q) \\;\\Vert\\; s, \\qquad
    \\pi(a \\mid e_q, s) = \\mathrm{softmax}_{a \\in \\mathcal{A}}\\big(W_2\\,\\mathrm{ReLU}(W_1 h)\\big)

with :math:`e_q` the query embedding, :math:`s` the scalar state
(:func:`~agentroute.agentic.features.scalar_features`) and :math:`\\mathcal{A}` the tiers the
ledger still affords (the others get probability 0).

Args:
    n_scalar: length of the scalar state.
    n_tiers: rungs of the tier ladder.
    emb_dim: query embedding size (384 for MiniLM).
    emb_proj: size of the projected embedding.
    hidden: hidden width.

Shapes:
    emb ``(B, emb_dim)``, scalars ``(B, n_scalar)``, mask ``(B, n_tiers)`` bool →
    logits ``(B, n_tiers)``, ``-inf`` where masked.
"""

from __future__ import annotations

from typing import Any

from agentroute._optional import torch_module

torch = torch_module()
nn = torch.nn


class TierPolicy(nn.Module):  # type: ignore[name-defined,misc]
    def __init__(
        self, n_scalar: int, n_tiers: int, *, emb_dim: int = 384, emb_proj: int = 32, hidden: int = 64
    ):
        super().__init__()
        self.n_scalar, self.n_tiers, self.emb_dim = n_scalar, n_tiers, emb_dim
        self.proj = nn.Linear(emb_dim, emb_proj)
        self.body = nn.Linear(emb_proj + n_scalar, hidden)
        self.head = nn.Linear(hidden, n_tiers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for layer in (self.proj, self.body, self.head):
            layer.reset_parameters()
        nn.init.zeros_(self.head.bias)

    def forward(self, emb: Any, scalars: Any, mask: Any | None = None) -> Any:
        h = torch.cat([torch.relu(self.proj(emb)), scalars], dim=-1)
        logits = self.head(torch.relu(self.body(h)))
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf"))
        return logits

    def dims(self) -> dict[str, int]:
        return {
            "n_scalar": self.n_scalar,
            "n_tiers": self.n_tiers,
            "emb_dim": self.emb_dim,
            "emb_proj": self.proj.out_features,
            "hidden": self.body.out_features,
        }

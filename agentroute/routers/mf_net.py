"""The torch network of the ``mf`` router (:mod:`agentroute.routers.mf`), imported when one is built."""

from __future__ import annotations

from agentroute.routers.base import import_torch

import_torch()  # one torch thread, or a clear error naming the [ml] extra
import torch  # noqa: E402


class MatrixFactorization(torch.nn.Module):
    """RouteLLM's MFModel with a per-model bias: logits δ(m, q) + b_m = wᵀ(v̂_m ⊙ W q) + b_m.

    Args:
        text_dim: D, the query embedding's size.
        dim: d, the latent size.
        n_models: m.

    Shapes: q (n × D) → logits (n × m).
    """

    def __init__(self, text_dim: int, dim: int, n_models: int) -> None:
        super().__init__()
        self.P = torch.nn.Embedding(n_models, dim)
        self.text_proj = torch.nn.Linear(text_dim, dim, bias=False)
        self.classifier = torch.nn.Linear(dim, 1, bias=False)
        self.bias = torch.nn.Parameter(torch.zeros(n_models))

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        models = torch.nn.functional.normalize(self.P.weight, p=2, dim=1)  # m × d
        projected = self.text_proj(q)  # n × d
        return (projected[:, None, :] * models[None, :, :]) @ self.classifier.weight[0] + self.bias

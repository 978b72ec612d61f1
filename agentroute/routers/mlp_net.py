"""The torch network of the ``mlp`` router (:mod:`agentroute.routers.mlp`), imported when one is built."""

from __future__ import annotations

from agentroute.routers.base import import_torch

import_torch()  # one torch thread, or a clear error naming the [ml] extra
import torch  # noqa: E402


class ScoreCostMLP(torch.nn.Sequential):
    """Linear(D, hidden) → ReLU → Dropout → Linear(hidden, 2m): m score logits, then m log costs.

    Shapes: e (n × D) → (n × 2m).
    """

    def __init__(self, in_dim: int, hidden: int, n_models: int, dropout: float) -> None:
        super().__init__(
            torch.nn.Linear(in_dim, hidden),
            torch.nn.ReLU(),
            torch.nn.Dropout(dropout),
            torch.nn.Linear(hidden, 2 * n_models),
        )

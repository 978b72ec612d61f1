"""Matrix-factorisation router: RouteLLM's ``mf`` on a logged-outcome table.

RouteLLM (Ong et al., arXiv 2406.18665, §4.1 "Matrix factorization") scores a (model, query) pair by

    δ(m, q) = wᵀ (v̂_m ⊙ (W q)),    v̂_m = v_m / ‖v_m‖₂

with a learned embedding v_m ∈ ℝᵈ per model, a projection W ∈ ℝ^{d×D} of the query's text
embedding q ∈ ℝᴰ, and a linear read-out w ∈ ℝᵈ (no biases), and learns it from pairwise
preferences: P(a beats b | q) = σ(δ(a, q) − δ(b, q)). Logged-outcome tables give a pointwise score
per (query, model) instead of a preference, so here

    ŝ(q, m) = σ(δ(m, q) + b_m)

trained with binary cross-entropy on the table's scores (0/1, or graded in [0, 1] as soft targets).
The per-model bias b_m is the one addition: it is what the pairwise difference cancels, and with
pointwise targets it carries each model's base rate, so that δ only has to model the query-specific
part. q is the MiniLM embedding (D = 384; RouteLLM uses OpenAI's text-embedding-3-small), d = ``dim``
(RouteLLM: 128). Optimiser and schedule follow RouteLLM's training script (Adam, lr 3e-4,
weight decay 1e-5, minibatches of 64), with early stopping on a seeded validation split. Matrix
factorisation models quality only: the predicted cost of a model is its mean training cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from agentroute._optional import require_installed
from agentroute.errors import ConfigurationError
from agentroute.outcomes import OutcomeTable
from agentroute.routers.base import import_torch, register
from agentroute.routers.utility import QUERY_CHARS, embed_texts
from agentroute.training.embedding_net import EmbeddingNetRouter
from agentroute.types import RouteContext

if TYPE_CHECKING:
    from agentroute.routers.mf_net import MatrixFactorization

require_installed("torch")  # checked here, imported (seconds) when a network is built, fitted or loaded


def __getattr__(name: str) -> Any:
    if name == "MatrixFactorization":  # the network's old home: importing it imports torch
        from agentroute.routers.mf_net import MatrixFactorization

        return MatrixFactorization
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@register
class MatrixFactorizationRouter(EmbeddingNetRouter):
    """RouteLLM's matrix factorisation, trained pointwise on logged scores.

    Args:
        cost_weight: λ in ŝ − λ·ĉ/c_scale (the knob).
        dim: the latent dimension d.
        lr, weight_decay: Adam's (RouteLLM: 3e-4, 1e-5).
        epochs, patience: at most ``epochs`` passes; stop after ``patience`` without improvement.
        batch_size: queries per minibatch (all their logged cells).
        validation_fraction: share of train held out for early stopping (seeded).
        query_chars: characters of each query's end embedded (:func:`~agentroute.embed.text_tail`);
            ``None`` embeds the whole prompt. Default :data:`~agentroute.routers.utility.QUERY_CHARS`.
        seed: seeds initialisation, shuffling and the split.
    """

    name = "mf"
    size_param = "dim"

    def __init__(
        self,
        *,
        cost_weight: float = 0.0,
        dim: int = 128,
        lr: float = 3e-4,
        weight_decay: float = 1e-5,
        epochs: int = 100,
        patience: int = 8,
        batch_size: int = 64,
        validation_fraction: float = 0.15,
        query_chars: int | None = QUERY_CHARS,
        seed: int = 0,
    ):
        self.cost_weight = cost_weight
        self.query_chars = query_chars
        self.dim = dim
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.patience = patience
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.seed = seed

    def _fit_table(self, table: OutcomeTable) -> None:
        scores = np.asarray(table.scores, dtype=float)
        logged = scores[~np.isnan(scores)]
        if logged.min() < 0 or logged.max() > 1:
            raise ConfigurationError(
                f"mf: scores must lie in [0, 1] (got {logged.min():g} … {logged.max():g}); rescale them first"
            )
        torch = import_torch()
        from agentroute.routers.mf_net import MatrixFactorization

        x = torch.from_numpy(embed_texts(table.queries, self.query_chars).astype(np.float32))
        mask = ~np.isnan(scores)
        target = torch.from_numpy(np.where(mask, scores, 0.0).astype(np.float32))
        weight = torch.from_numpy(np.where(mask, table.weights, 0.0).astype(np.float32))  # importance weights
        bce = torch.nn.functional.binary_cross_entropy_with_logits

        def loss(rows: Any) -> Any:
            per_cell = bce(self.net_(x[rows]), target[rows], reduction="none")
            return (per_cell * weight[rows]).sum() / weight[rows].sum().clamp(min=1.0)

        def make_net() -> MatrixFactorization:
            net = MatrixFactorization(x.shape[1], self.dim, len(self.columns_))
            with torch.no_grad():  # start from each model's base rate
                rate = np.clip(np.nan_to_num(self.score_mean_, nan=0.5), 1e-3, 1 - 1e-3)
                net.bias.copy_(torch.from_numpy(np.log(rate / (1 - rate)).astype(np.float32)))
            return net

        self._train(table, make_net, loss)

    def _predict_columns(self, ctxs: Sequence[RouteContext]) -> tuple[np.ndarray, np.ndarray]:
        logits = self._net_outputs(ctxs)
        return 1.0 / (1.0 + np.exp(-logits)), np.tile(self.cost_mean_, (len(ctxs), 1))

    def _net_from_arrays(self, arrays: dict[str, np.ndarray]) -> MatrixFactorization:
        from agentroute.routers.mf_net import MatrixFactorization

        proj = np.asarray(arrays["net.text_proj.weight"])
        return MatrixFactorization(proj.shape[1], proj.shape[0], len(self.columns_))

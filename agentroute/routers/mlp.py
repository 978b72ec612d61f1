"""MLP router: a small torch network from the query embedding to every model's score and cost.

The MLP predictor of RouterBench (Hu et al., arXiv 2403.12031, §4.1) and of LLMRouter's
``mlprouter``: one shared hidden layer over the MiniLM embedding e(q), two heads over the m training
models,

    h = Dropout(ReLU(W₁ e(q) + b₁)),    ŝ(q, ·) = σ(W_s h + b_s),    log ĉ(q, ·) = μ + σ_c ⊙ (W_c h + b_c)

with μ, σ_c the per-model mean and standard deviation of the training log costs. The score head is
trained with binary cross-entropy when the logged scores are 0/1 and with squared error on σ(·) when
they are graded (scores outside [0, 1] are min–max scaled first and scaled back); the cost head with
squared error on the standardised log cost. Missing cells carry no loss; logged cells weigh their
table weight (:attr:`~agentroute.outcomes.OutcomeTable.weights`: importance weights for bandit logs). Training is seeded (Adam,
minibatches, early stopping on a seeded validation split of train, best weights restored).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from agentroute._optional import require_installed
from agentroute.outcomes import OutcomeTable
from agentroute.routers.base import check_range, check_rate, import_torch, register
from agentroute.routers.utility import QUERY_CHARS, embed_texts
from agentroute.training.embedding_net import EmbeddingNetRouter
from agentroute.types import RouteContext

if TYPE_CHECKING:
    from agentroute.routers.mlp_net import ScoreCostMLP

require_installed("torch")  # checked here, imported (seconds) when a network is built, fitted or loaded

COST_EPS = 1e-9


def __getattr__(name: str) -> Any:
    if name == "ScoreCostMLP":  # the network's old home: importing it imports torch
        from agentroute.routers.mlp_net import ScoreCostMLP

        return ScoreCostMLP
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@register
class MLPRouter(EmbeddingNetRouter):
    """MLP on MiniLM embeddings → per-model score (σ) and log cost.

    Args:
        cost_weight: λ in ŝ − λ·ĉ/c_scale (the knob).
        hidden: hidden units.
        dropout: dropout rate after the hidden layer.
        lr, weight_decay: Adam's.
        epochs: at most this many passes; ``patience`` epochs without a better validation loss stop.
        batch_size: minibatch rows.
        validation_fraction: share of train held out for early stopping (seeded).
        cost_loss_weight: weight of the cost head's loss against the score head's.
        query_chars: characters of each query's end embedded (:func:`~agentroute.embed.text_tail`);
            ``None`` embeds the whole prompt. Default :data:`~agentroute.routers.utility.QUERY_CHARS`.
        seed: seeds initialisation, shuffling, dropout and the validation split.
    """

    name = "mlp"
    size_param = "hidden"

    def __init__(
        self,
        *,
        cost_weight: float = 0.0,
        hidden: int = 128,
        dropout: float = 0.2,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        epochs: int = 100,
        patience: int = 8,
        batch_size: int = 64,
        validation_fraction: float = 0.15,
        cost_loss_weight: float = 0.5,
        query_chars: int | None = QUERY_CHARS,
        seed: int = 0,
    ):
        self.cost_weight = cost_weight
        self.query_chars = query_chars
        self.hidden = hidden
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.patience = patience
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.cost_loss_weight = cost_loss_weight
        self.seed = seed

    def _param_checks(self) -> dict[str, Callable[[], None]]:
        return {
            **super()._param_checks(),
            "dropout": partial(check_rate, self, "dropout"),
            "cost_loss_weight": partial(check_range, self, "cost_loss_weight", low=0),
        }

    # -- learning ---------------------------------------------------------------------------------
    def _fit_table(self, table: OutcomeTable) -> None:
        torch = import_torch()
        from agentroute.routers.mlp_net import ScoreCostMLP

        x = torch.from_numpy(embed_texts(table.queries, self.query_chars).astype(np.float32))
        scores = np.asarray(table.scores, dtype=float)
        logged = scores[~np.isnan(scores)]
        self.score_lo_, self.score_hi_ = float(min(0.0, logged.min())), float(max(1.0, logged.max()))
        self.binary_ = bool(np.all(np.isin(logged, (0.0, 1.0))))
        target_s = (scores - self.score_lo_) / (self.score_hi_ - self.score_lo_)
        log_cost = np.log(np.asarray(table.costs, dtype=float) + COST_EPS)
        self.log_cost_mean_ = np.nan_to_num(_nanmean(log_cost), nan=np.log(COST_EPS))
        self.log_cost_std_ = np.maximum(np.nan_to_num(_nanstd(log_cost), nan=1.0), 1e-3)
        target_c = (log_cost - self.log_cost_mean_) / self.log_cost_std_

        ts, ms = _masked(target_s)
        tc, mc = _masked(target_c)
        if table.weighted:  # importance-weighted losses for bandit logs (OutcomeTable.weights)
            w = torch.from_numpy(np.asarray(table.weights, dtype=np.float32))
            ms, mc = ms * w, mc * w
        m = len(self.columns_)
        bce = torch.nn.functional.binary_cross_entropy_with_logits

        def loss(rows: Any) -> Any:
            out = self.net_(x[rows])
            logits, cost = out[:, :m], out[:, m:]
            if self.binary_:
                ls = bce(logits, ts[rows], reduction="none")
            else:
                ls = (torch.sigmoid(logits) - ts[rows]) ** 2
            lc = (cost - tc[rows]) ** 2
            score_loss = (ls * ms[rows]).sum() / ms[rows].sum().clamp(min=1.0)
            cost_loss = (lc * mc[rows]).sum() / mc[rows].sum().clamp(min=1.0)
            return score_loss + self.cost_loss_weight * cost_loss

        self._train(table, lambda: ScoreCostMLP(x.shape[1], self.hidden, m, self.dropout), loss)

    # -- prediction -------------------------------------------------------------------------------
    def _predict_columns(self, ctxs: Sequence[RouteContext]) -> tuple[np.ndarray, np.ndarray]:
        m = len(self.columns_)
        out = self._net_outputs(ctxs)
        score = self.score_lo_ + (self.score_hi_ - self.score_lo_) / (1.0 + np.exp(-out[:, :m]))
        cost = np.exp(self.log_cost_mean_ + self.log_cost_std_ * out[:, m:]) - COST_EPS
        return score, np.maximum(cost, 0.0)

    # -- persistence ------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        return {
            **super().get_state(),
            "binary": self.binary_,
            "score_range": [self.score_lo_, self.score_hi_],
        }

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.binary_ = bool(state["binary"])
        self.score_lo_, self.score_hi_ = (float(v) for v in state["score_range"])

    def _own_arrays(self) -> dict[str, np.ndarray]:
        return {"log_cost_mean": self.log_cost_mean_, "log_cost_std": self.log_cost_std_}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        super().set_arrays(arrays)
        self.log_cost_mean_ = np.asarray(arrays["log_cost_mean"], dtype=float)
        self.log_cost_std_ = np.asarray(arrays["log_cost_std"], dtype=float)

    def _net_from_arrays(self, arrays: dict[str, np.ndarray]) -> ScoreCostMLP:
        from agentroute.routers.mlp_net import ScoreCostMLP

        first = np.asarray(arrays["net.0.weight"])
        return ScoreCostMLP(first.shape[1], first.shape[0], len(self.columns_), self.dropout)


def _masked(values: np.ndarray) -> tuple[Any, Any]:
    """(values with nan → 0, mask of logged cells) as float32 tensors."""
    torch = import_torch()
    mask = ~np.isnan(values)
    return torch.from_numpy(np.where(mask, values, 0.0).astype(np.float32)), torch.from_numpy(
        mask.astype(np.float32)
    )


def _nanmean(values: np.ndarray) -> np.ndarray:
    count = np.sum(~np.isnan(values), axis=0)
    return np.where(count > 0, np.nansum(values, axis=0) / np.maximum(count, 1), np.nan)


def _nanstd(values: np.ndarray) -> np.ndarray:
    mean = _nanmean(values)
    count = np.sum(~np.isnan(values), axis=0)
    var = np.nansum((values - mean) ** 2, axis=0) / np.maximum(count, 1)
    return np.where(count > 0, np.sqrt(var), np.nan)

"""Logistic-regression peer: one success model per agent on the query embedding.

The "30-line scikit-learn script" every learned router must beat (ROUTERS.md §8 lists it among the
simple references): for each model m,

    ŝ(q, m) = σ(w_m · e(q) + b_m)

with e(q) the MiniLM embedding and (w_m, b_m) an L2-regularised logistic regression (inverse
strength ``c``) fitted on the training rows where m has a logged score. Scores in [0, 1] that are
not 0/1 (dcrouter) are fitted as fractional targets: each row enters twice, as a success with
weight s and a failure with weight 1 − s (the cross-entropy of a soft label). The predicted cost is
the model's mean training cost; routing is the usual argmax of ŝ − λ·ĉ/c_scale.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import numpy as np

from agentroute._optional import require, require_installed
from agentroute.outcomes import OutcomeTable
from agentroute.routers.base import check_range, register
from agentroute.routers.utility import QUERY_CHARS, UtilityRouter, embed_contexts, embed_texts
from agentroute.types import RouteContext


def fit_success_models(
    x: np.ndarray,
    scores: np.ndarray,
    c: float,
    *,
    prior: np.ndarray | None = None,
    cell_weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-column logistic regressions of ``scores`` (n × m, nan = not logged) on ``x`` (n × d):
    weights (m × d) and biases (m). A column with one outcome only (all 0 or all 1) gets zero
    weights and the logit of its (``prior``-smoothed) mean. ``cell_weights`` (n × m, e.g. the
    table's importance weights) weight each logged cell's sample."""
    linear_model = require("sklearn.linear_model")
    n, m = scores.shape
    weight, bias = np.zeros((m, x.shape[1])), np.zeros(m)
    for j in range(m):
        rows = np.flatnonzero(~np.isnan(scores[:, j]))
        s = np.clip(scores[rows, j], 0.0, 1.0)
        mean = float(s.mean()) if len(s) else float(prior[j] if prior is not None else 0.5)
        if len(rows) < 2 or s.min() == s.max():
            p = np.clip((mean * len(s) + 0.5) / (len(s) + 1.0), 1e-4, 1 - 1e-4)
            bias[j] = np.log(p / (1 - p))
            continue
        binary = bool(np.all((s == 0) | (s == 1)))
        cw = np.ones(len(rows)) if cell_weights is None else np.asarray(cell_weights, dtype=float)[rows, j]
        if binary:
            xs, ys, ws = x[rows], s, (None if cell_weights is None else cw)
        else:
            xs = np.vstack([x[rows], x[rows]])
            ys = np.concatenate([np.ones(len(rows)), np.zeros(len(rows))])
            ws = np.concatenate([s * cw, (1 - s) * cw])
        model = linear_model.LogisticRegression(C=c, max_iter=1000)
        model.fit(xs, ys, sample_weight=ws)
        weight[j], bias[j] = model.coef_[0], model.intercept_[0]
    return weight, bias


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


@register
class LogisticRouter(UtilityRouter):
    """Per-model logistic regression on MiniLM embeddings (module docstring).

    Args:
        cost_weight: λ in ŝ − λ·ĉ/c_scale (the knob).
        c: inverse L2 strength of each logistic regression (scikit-learn's ``C``). [default 1]
        query_chars: characters of each query's end embedded (``None``: the whole prompt).

    Fitted attributes: ``weight_`` (m × 384), ``bias_`` (m).
    """

    name = "logreg"

    def __init__(self, *, cost_weight: float = 0.0, c: float = 1.0, query_chars: int | None = QUERY_CHARS):
        require_installed("sklearn")  # it fits with it: said when built, not at fit
        self.cost_weight = cost_weight
        self.c = c
        self.query_chars = query_chars

    def _param_checks(self) -> dict[str, Callable[[], None]]:
        return {**super()._param_checks(), "c": partial(check_range, self, "c", low=0, low_open=True)}

    def _fit_table(self, table: OutcomeTable) -> None:
        x = embed_texts(table.queries, self.query_chars).astype(float)
        weights = table.weights if table.weighted else None  # importance weights for bandit logs
        self.weight_, self.bias_ = fit_success_models(
            x, np.asarray(table.scores, float), float(self.c), cell_weights=weights
        )

    def _predict_columns(self, ctxs: Sequence[RouteContext]) -> tuple[np.ndarray, np.ndarray]:
        x = embed_contexts(ctxs, self.query_chars).astype(float)
        score = sigmoid(x @ self.weight_.T + self.bias_)
        return score, np.tile(self.cost_mean_, (len(ctxs), 1))

    def get_arrays(self) -> dict[str, np.ndarray]:
        return {**super().get_arrays(), "weight": self.weight_, "bias": self.bias_}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        super().set_arrays(arrays)
        self.weight_ = np.asarray(arrays["weight"], dtype=float)
        self.bias_ = np.asarray(arrays["bias"], dtype=float)

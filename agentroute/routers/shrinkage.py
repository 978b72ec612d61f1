"""Per-agent success models shrunk toward the inferred task mean (empirical Bayes).

For a query q and agent m the router predicts

    logit ŝ(q, m) = logit s̄(t̂(q), m) + b_m + β_m · z(q)

where s̄(t̂(q), m) is the per-task lookup (:class:`~agentroute.routers.reference.PerTaskRouter`: the
inferred task mixture of per-task means, themselves smoothed toward the agent's mean), used as a
fixed offset, and z(q) the per-query features: the MiniLM embedding and cheap features a
deployment knows before the call (:func:`prompt_features`: length, code / math / multiple-choice
markers). The residual weights carry a Gaussian prior N(0, 1/α) — an L2 penalty α·|β|²/2 — so the
prediction is the posterior mode of a hierarchical model whose prior mean is the task mean; as
α → ∞ it is exactly the per-task lookup. α is the empirical-Bayes step: chosen per agent by the
validation log-loss on a split carved from train (``validation_fraction``), from ``alphas``, then
every model is refitted on the whole train table. (Hierarchical shrinkage toward group means:
Efron & Morris, JASA 1975; logistic regression with an offset: McCullagh & Nelder, *GLMs*, §4.)

Soft scores (dcrouter's [0, 1]) are fitted as soft labels (binary cross-entropy). The cost is the
per-task lookup's cost; the decision is the usual argmax of ŝ − λ·ĉ/c_scale.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from agentroute._optional import require
from agentroute.errors import ConfigurationError
from agentroute.outcomes import OutcomeTable
from agentroute.routers.base import register
from agentroute.routers.reference import PerTaskRouter
from agentroute.routers.utility import (
    QUERY_CHARS,
    UtilityRouter,
    embed_texts,
    validation_split,
)
from agentroute.types import RouteContext

#: α grid (L2 strength of the residual weights); the largest is the per-task lookup within 1e-3.
ALPHAS: tuple[float, ...] = (1e6, 3e3, 1e3, 3e2, 1e2, 30.0, 10.0, 3.0, 1.0)
_EPS = 1e-4

_CODE = re.compile(r"```|\bdef |\breturn\b|\bfunction\b|[{};]\s*$|\bimport |\bclass |#include|\bpython\b", re.I | re.M)
_MATH = re.compile(r"\d\s*[-+*/^=]\s*\d|\\frac|\\sqrt|\$[^$]+\$|\bsolve\b|\bequation\b|\bcalculate\b", re.I)
_CHOICE = re.compile(r"(^|\n)\s*\(?[A-Ea-e][\.\):]\s", re.M)
FEATURES: tuple[str, ...] = (
    "log chars", "log words", "lines", "digit share", "code markers", "math markers",
    "choice options", "ends with 'Answer:'", "question marks", "non-ASCII share",
)  # fmt: skip


def prompt_features(texts: Sequence[str]) -> np.ndarray:
    """Cheap features known before the call, one row per text (:data:`FEATURES`).

    >>> prompt_features(["Q: 2 + 2 = ?\\nA. 3\\nB. 4\\nAnswer:"]).round(2).tolist()[0][4:8]
    [0.0, 1.0, 2.0, 1.0]
    """
    rows = []
    for t in texts:
        n = max(1, len(t))
        rows.append([
            np.log1p(len(t)), np.log1p(len(t.split())), np.log1p(t.count("\n")),
            sum(ch.isdigit() for ch in t) / n, float(len(_CODE.findall(t))), float(len(_MATH.findall(t))),
            float(len(_CHOICE.findall(t))), float(t.rstrip().endswith("Answer:")), float(t.count("?")),
            sum(ord(ch) > 127 for ch in t) / n,
        ])  # fmt: skip
    return np.asarray(rows, dtype=float)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def fit_offset_logistic(
    z: np.ndarray, y: np.ndarray, offset: np.ndarray, alpha: float, w: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """Minimise Σ wᵢ·BCE(yᵢ, σ(oᵢ + b + β·zᵢ)) + α|β|²/2 (soft labels yᵢ ∈ [0, 1]; b not
    penalised) by L-BFGS; returns (β, b)."""
    optimize = require("scipy.optimize")
    n, d = z.shape
    w = np.ones(n) if w is None else np.asarray(w, float)
    total = float(w.sum()) or 1.0

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        beta, b = theta[:d], theta[d]
        eta = offset + b + z @ beta
        p = 1.0 / (1.0 + np.exp(-np.clip(eta, -40, 40)))
        nll = np.sum(w * (np.logaddexp(0.0, eta) - y * eta)) / total
        g = w * (p - y) / total
        grad = np.concatenate([z.T @ g + alpha * beta / total, [g.sum()]])
        return nll + 0.5 * alpha * float(beta @ beta) / total, grad

    res = optimize.minimize(loss, np.zeros(d + 1), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return res.x[:d], float(res.x[d])


def _bce(y: np.ndarray, eta: np.ndarray, w: np.ndarray) -> float:
    return float(np.sum(w * (np.logaddexp(0.0, eta) - y * eta)) / max(float(w.sum()), 1e-12))


@register
class ShrinkageRouter(UtilityRouter):
    """Per-agent logistic residuals on top of the per-task lookup, shrunk toward it (module doc).

    Args:
        cost_weight: λ in ŝ − λ·ĉ/c_scale (the knob).
        features: ``"embed"`` (MiniLM), ``"prompt"`` (:func:`prompt_features`) or ``"both"``.
        alphas: the L2 strengths the validation split chooses from (per agent).
        validation_fraction: share of train carved out to choose α.
        query_chars: characters of each query's end embedded (``None``: the whole prompt).
        seed: the validation split's seed.

    Fitted attributes: ``task_`` (the per-task lookup), ``alpha_`` (chosen α per column),
    ``weight_`` (columns × features), ``bias_``, ``feature_mean_``/``feature_scale_``.
    """

    name = "shrink"

    def __init__(
        self,
        *,
        cost_weight: float = 0.0,
        features: str = "both",
        alphas: Sequence[float] = ALPHAS,
        validation_fraction: float = 0.25,
        query_chars: int | None = QUERY_CHARS,
        seed: int = 0,
    ):
        self.cost_weight = cost_weight
        self.features = features
        self.alphas = tuple(float(a) for a in alphas)
        self.validation_fraction = validation_fraction
        self.query_chars = query_chars
        self.seed = seed

    def _check_params(self) -> None:
        super()._check_params()
        if self.features not in ("embed", "prompt", "both"):
            raise ConfigurationError(f"shrink: 'features' must be embed, prompt or both (got {self.features!r})")
        if not self.alphas or min(self.alphas) <= 0:
            raise ConfigurationError(f"shrink: 'alphas' must be numbers > 0 (got {self.alphas!r})")

    # -- features -------------------------------------------------------------------------------
    def _raw_features(self, texts: Sequence[str]) -> np.ndarray:
        parts = []
        if self.features in ("embed", "both"):
            parts.append(embed_texts(texts, self.query_chars).astype(float))
        if self.features in ("prompt", "both"):
            parts.append(prompt_features(texts))
        return np.hstack(parts)

    def _z(self, texts: Sequence[str]) -> np.ndarray:
        return (self._raw_features(texts) - self.feature_mean_) / self.feature_scale_

    # -- fitting --------------------------------------------------------------------------------
    def _task_model(self, table: OutcomeTable) -> PerTaskRouter:
        return PerTaskRouter(query_chars=self.query_chars).fit(table)

    def _offsets(self, task: PerTaskRouter, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        ctxs = [RouteContext(query=t, candidates=[]) for t in texts]
        score, cost = task._predict_columns(ctxs)
        return _logit(score), cost

    def _fit_table(self, table: OutcomeTable) -> None:
        raw = self._raw_features(table.queries)
        self.feature_mean_ = raw.mean(axis=0)
        self.feature_scale_ = np.where(raw.std(axis=0) > 1e-9, raw.std(axis=0), 1.0)
        z = (raw - self.feature_mean_) / self.feature_scale_
        scores = np.asarray(table.scores, float)
        weights = table.weights
        # empirical Bayes: α per column by validation log-loss (task model refitted on the train part)
        tr, va = validation_split(len(table), self.validation_fraction, self.seed)
        sub = self._task_model(table.rows(tr))
        off_all, _ = self._offsets(sub, table.queries)
        m = scores.shape[1]
        self.alpha_ = np.zeros(m)
        self.validation_loss_: dict[str, dict[float, float]] = {}
        for j in range(m):
            rtr = tr[~np.isnan(scores[tr, j])]
            rva = va[~np.isnan(scores[va, j])]
            y = np.clip(scores[:, j], 0, 1)
            losses = {}
            for a in self.alphas:
                if len(rtr) < 2 or len(rva) < 1:
                    losses[a] = 0.0
                    continue
                beta, b = fit_offset_logistic(z[rtr], y[rtr], off_all[rtr, j], a, weights[rtr, j])
                losses[a] = _bce(y[rva], off_all[rva, j] + b + z[rva] @ beta, weights[rva, j])
            self.alpha_[j] = min(losses, key=lambda a: (round(losses[a], 6), -a))
            self.validation_loss_[self.columns_[j]] = losses
        # refit on all of train with the chosen α
        self.task_ = self._task_model(table)
        off, _ = self._offsets(self.task_, table.queries)
        self.weight_ = np.zeros((m, z.shape[1]))
        self.bias_ = np.zeros(m)
        for j in range(m):
            rows = np.flatnonzero(~np.isnan(scores[:, j]))
            if len(rows) >= 2:
                y = np.clip(scores[rows, j], 0, 1)
                self.weight_[j], self.bias_[j] = fit_offset_logistic(
                    z[rows], y, off[rows, j], float(self.alpha_[j]), weights[rows, j]
                )

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated success probabilities ŝ(q, m) (n × columns) from query texts alone."""
        self.check_fitted()
        off, _ = self._offsets(self.task_, texts)
        return 1.0 / (1.0 + np.exp(-(off + self.bias_ + self._z(texts) @ self.weight_.T)))

    def _predict_columns(self, ctxs: Sequence[RouteContext]) -> tuple[np.ndarray, np.ndarray]:
        from agentroute.embed import context_text

        texts = [context_text(c) for c in ctxs]
        _, cost = self._offsets(self.task_, texts)
        return self.predict_proba(texts), cost

    # -- persistence ----------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "task": {"state": self.task_.get_state(), "params": self.task_.get_params()}}

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.task_ = PerTaskRouter(**state["task"]["params"])
        self.task_.set_state(state["task"]["state"])

    def get_arrays(self) -> dict[str, np.ndarray]:
        arrays = {**super().get_arrays(), "weight": self.weight_, "bias": self.bias_, "alpha": self.alpha_,
                  "feature_mean": self.feature_mean_, "feature_scale": self.feature_scale_}  # fmt: skip
        arrays.update({f"task.{k}": v for k, v in self.task_.get_arrays().items()})
        return arrays

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        super().set_arrays(arrays)
        for key in ("weight", "bias", "alpha", "feature_mean", "feature_scale"):
            setattr(self, f"{key}_", np.asarray(arrays[key], float))
        self.task_.set_arrays({k[5:]: v for k, v in arrays.items() if k.startswith("task.")})
        self.task_.fitted_ = True

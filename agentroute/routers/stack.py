"""Stacked per-agent success models: per-task lookup, kNN and logistic regression, combined per
agent by a logistic meta-model on out-of-fold predictions and cheap prompt features.

Base predictors of each agent m's score on a query q (all from the MiniLM embedding e(q)):

- **per-task**: p(t | q) from a multinomial logistic regression over the training task labels,
  mixed over the per-task means shrunk toward the agent's mean (empirical Bayes with
  ``prior_strength`` pseudo-rows) — the per-task lookup;
- **kNN**: the mean score of the k nearest training queries (cosine), shrunk toward the agent's mean
  with ``knn_shrinkage`` pseudo-neighbours;
- **logreg**: σ(w_m · e(q) + b_m), an L2-regularised logistic regression per agent.

The meta-model (stacking, Wolpert 1992) is one logistic regression per agent on the logits of the
three base predictions plus standardised prompt features a deployment knows before the call (log
length in characters and words, share of digits, lines, code / math / multiple-choice markers, a
final question mark). It is fitted on **out-of-fold** base predictions: the training table is cut
into ``folds`` seeded folds carved from train only, each fold predicted by bases fitted on the
others, so the meta-model learns how far to trust each base on queries it did not see. The bases
are then refitted on the whole training table. Predicted cost: the agent's mean training cost.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from agentroute.embed import context_text
from agentroute.errors import ConfigurationError
from agentroute.outcomes import OutcomeTable
from agentroute.routers.base import register
from agentroute.routers.logreg import fit_success_models, sigmoid
from agentroute.routers.utility import (
    QUERY_CHARS,
    LogisticHead,
    UtilityRouter,
    embed_contexts,
    embed_texts,
    shrunk_mean,
)

_CODE = re.compile(r"```|\bdef |\bimport |\breturn\b|\bclass |;\s*$|\{|\}", re.M)
_MATH = re.compile(r"\\frac|\\sqrt|\$|\d\s*[-+*/^=]\s*\d")
_CHOICES = re.compile(r"(^|\n)\s*\(?[A-Da-d][\).:]\s")
FEATURES = ("log_chars", "log_words", "digit_share", "log_lines", "code", "math", "choices", "question")


def prompt_features(texts: Sequence[str]) -> np.ndarray:
    """Cheap features of each prompt, known before any call (n × len(FEATURES)).

    >>> prompt_features(["What is 2 + 2?\\nA. 3\\nB. 4"]).round(2).tolist()
    [[3.22, 2.3, 0.17, 1.1, 0.0, 1.0, 1.0, 0.0]]
    """
    rows = []
    for t in texts:
        n = max(1, len(t))
        rows.append([
            np.log1p(len(t)), np.log1p(len(t.split())), sum(ch.isdigit() for ch in t) / n,
            np.log1p(t.count("\n")), float(bool(_CODE.search(t))), float(bool(_MATH.search(t))),
            float(bool(_CHOICES.search(t))), float(t.rstrip().endswith("?")),
        ])  # fmt: skip
    return np.asarray(rows, dtype=float).reshape(len(texts), len(FEATURES))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


class _Bases:
    """The three base predictors fitted on one part of the training table."""

    def __init__(self, x: np.ndarray, scores: np.ndarray, labels: list[str], router: StackRouter):
        self.x = x.astype(np.float32)
        self.scores = scores
        self.prior = np.where(np.isnan(np.nanmean(scores, 0)), 0.5, np.nanmean(scores, 0))
        self.k, self.knn_a = int(router.knn_k), float(router.knn_shrinkage)
        tasks = sorted(set(labels))
        self.tasks = tasks
        a = float(router.prior_strength)
        self.task_score = np.vstack(
            [shrunk_mean(scores[[i for i, t in enumerate(labels) if t == task]], self.prior, a) for task in tasks]
        )
        self.intent = LogisticHead.fit(x, labels, c=float(router.intent_c)) if len(tasks) >= 2 else None
        self.weight, self.bias = fit_success_models(x, scores, float(router.logreg_c), prior=self.prior)

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {"b.x": self.x, "b.scores": self.scores, "b.prior": self.prior, "b.task_score": self.task_score,
               "b.tasks": np.asarray(self.tasks), "b.weight": self.weight, "b.bias": self.bias,
               "b.knn": np.array([self.k, self.knn_a])}  # fmt: skip
        if self.intent is not None:
            out.update(self.intent.to_arrays("b.intent."))
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> _Bases:
        self = cls.__new__(cls)
        self.x, self.scores = np.asarray(arrays["b.x"], np.float32), np.asarray(arrays["b.scores"], float)
        self.prior, self.task_score = np.asarray(arrays["b.prior"], float), np.asarray(arrays["b.task_score"], float)
        self.tasks = [str(t) for t in arrays["b.tasks"].tolist()]
        self.weight, self.bias = np.asarray(arrays["b.weight"], float), np.asarray(arrays["b.bias"], float)
        self.k, self.knn_a = int(arrays["b.knn"][0]), float(arrays["b.knn"][1])
        self.intent = LogisticHead.from_arrays(arrays, "b.intent.") if "b.intent.weight" in arrays else None
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n × m × 3): per-task, kNN, logreg predictions."""
        if self.intent is None:
            per_task = np.tile(self.task_score[0], (len(x), 1))
        else:
            proba = self.intent.proba(x)
            cols = [self.tasks.index(c) for c in self.intent.classes]
            per_task = proba @ self.task_score[cols]
        sims = x.astype(np.float32) @ self.x.T
        k = min(self.k, self.x.shape[0])
        near = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        knn = np.stack([shrunk_mean(self.scores[row], self.prior, self.knn_a) for row in near])
        lr = sigmoid(x @ self.weight.T + self.bias)
        return np.stack([per_task, knn, lr], axis=2)


@register
class StackRouter(UtilityRouter):
    """Stacked per-agent success models (module docstring).

    Args:
        cost_weight: λ in ŝ − λ·ĉ/c_scale (the knob).
        folds: out-of-fold splits of the training table for the meta-model. [default 3]
        knn_k, knn_shrinkage: the kNN base. [default 40, 10]
        logreg_c: inverse L2 strength of the logistic base. [default 1]
        intent_c, prior_strength: the per-task base (intent model, shrinkage). [default 10, 1]
        meta_c: inverse L2 strength of the meta-model. [default 1]
        features: add the cheap prompt features to the meta-model. [default True]
        seed: seed of the folds.
        query_chars: characters of each query's end embedded (``None``: the whole prompt).
    """

    name = "stack"

    def __init__(
        self,
        *,
        cost_weight: float = 0.0,
        folds: int = 3,
        knn_k: int = 40,
        knn_shrinkage: float = 10.0,
        logreg_c: float = 1.0,
        intent_c: float = 10.0,
        prior_strength: float = 1.0,
        meta_c: float = 1.0,
        features: bool = True,
        seed: int = 0,
        query_chars: int | None = QUERY_CHARS,
    ):
        self.cost_weight = cost_weight
        self.folds = folds
        self.knn_k = knn_k
        self.knn_shrinkage = knn_shrinkage
        self.logreg_c = logreg_c
        self.intent_c = intent_c
        self.prior_strength = prior_strength
        self.meta_c = meta_c
        self.features = features
        self.seed = seed
        self.query_chars = query_chars

    def _check_params(self) -> None:
        super()._check_params()
        if not isinstance(self.folds, int) or self.folds < 2:
            raise ConfigurationError(f"stack: 'folds' must be an integer ≥ 2 (got {self.folds!r})")
        for key in ("logreg_c", "intent_c", "meta_c"):
            if not getattr(self, key) > 0:
                raise ConfigurationError(f"stack: {key!r} must be > 0 (got {getattr(self, key)!r})")

    def _meta_x(self, base: np.ndarray, feats: np.ndarray | None, j: int) -> np.ndarray:
        parts = [_logit(base[:, j, :])]
        if feats is not None:
            parts.append(feats)
        return np.hstack(parts)

    def _fit_table(self, table: OutcomeTable) -> None:
        x = embed_texts(table.queries, self.query_chars).astype(float)
        scores = np.asarray(table.scores, dtype=float)
        labels = [str(t) if t is not None else "<none>" for t in table.task_types]
        n = len(x)
        order = np.random.default_rng(self.seed).permutation(n)
        folds = np.array_split(order, min(self.folds, n))
        oof = np.zeros((n, scores.shape[1], 3))
        for part in folds:
            rest = np.setdiff1d(order, part)
            bases = _Bases(x[rest], scores[rest], [labels[i] for i in rest], self)
            oof[part] = bases.predict(x[part])
        feats = None
        if self.features:
            raw = prompt_features(table.queries)
            self.feat_mean_, self.feat_std_ = raw.mean(0), raw.std(0) + 1e-9
            feats = (raw - self.feat_mean_) / self.feat_std_
        m = scores.shape[1]
        width = 3 + (len(FEATURES) if self.features else 0)
        self.meta_weight_, self.meta_bias_ = np.zeros((m, width)), np.zeros(m)
        for j in range(m):
            w, b = fit_success_models(self._meta_x(oof, feats, j), scores[:, [j]], float(self.meta_c))
            self.meta_weight_[j], self.meta_bias_[j] = w[0], b[0]
        self._bases = _Bases(x, scores, labels, self)

    def get_arrays(self) -> dict[str, np.ndarray]:
        out = {**super().get_arrays(), **self._bases.to_arrays(), "meta_weight": self.meta_weight_,
               "meta_bias": self.meta_bias_}  # fmt: skip
        if self.features:
            out.update(feat_mean=self.feat_mean_, feat_std=self.feat_std_)
        return out

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        super().set_arrays(arrays)
        self._bases = _Bases.from_arrays(arrays)
        self.meta_weight_ = np.asarray(arrays["meta_weight"], float)
        self.meta_bias_ = np.asarray(arrays["meta_bias"], float)
        if "feat_mean" in arrays:
            self.feat_mean_, self.feat_std_ = np.asarray(arrays["feat_mean"]), np.asarray(arrays["feat_std"])

    def base_predictions(self, ctxs: Sequence[Any]) -> np.ndarray:
        """(n × m × 3) per-task, kNN and logreg predictions of the fitted bases."""
        self.check_fitted()
        return self._bases.predict(embed_contexts(ctxs, self.query_chars).astype(float))

    def _predict_columns(self, ctxs: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        base = self.base_predictions(ctxs)
        feats = None
        if self.features:
            feats = (prompt_features([context_text(c) for c in ctxs]) - self.feat_mean_) / self.feat_std_
        score = np.column_stack([
            sigmoid(self._meta_x(base, feats, j) @ self.meta_weight_[j] + self.meta_bias_[j])
            for j in range(base.shape[1])
        ])  # fmt: skip
        return score, np.tile(self.cost_mean_, (len(ctxs), 1))

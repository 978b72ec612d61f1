"""A learned post-call confidence for the threshold ``cascade``: P(correct | query, response, model).

The threshold cascade (FrugalGPT, Chen et al., arXiv 2305.05176; RouterBench's cascade baseline,
arXiv 2403.12031 §4.2) calls a cheap model first and escalates while a confidence signal on the
finished call is below a threshold. Replayed logged outcomes carry no token probabilities, so the
signal here is a small learned scorer in the spirit of FrugalGPT's answer scorer:

    conf(q, r, m) = σ(wᵀ [e(q); e(r); e(q) ⊙ e(r); onehot(m)] + b)

with e(·) the MiniLM sentence embedding of the query q and of the model's response r (embedded
separately, so that a long prompt cannot truncate the answer away), their element-wise product as a
crude question–answer interaction, and a one-hot of the agent's outcome-table column m (zeros for an
unseen model). w, b: L2-regularised logistic regression fitted on the training split's logged
(query, response, score) cells; a graded score s ∈ [0, 1] counts as a positive with weight s and a
negative with weight 1 − s.

**What the signal is.** It predicts the logged score from what the caller sees after the call. It is
*not* the model's own uncertainty: when responses are short and uninformative (a multiple-choice
letter) it degenerates to a per-(query, model) quality estimate; when responses carry content (code,
free text) it also reads the answer. It never sees the test row's score.

Use it with ``CascadeRouter(confidence_fn=scorer)``: the cascade calls ``scorer(step)`` on each
finished step, whose ``input`` is the query and ``output`` the (logged) response.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from agentroute._signals import signals_deferred
from agentroute.errors import ConfigurationError, NotFittedError, StateFileError
from agentroute.outcomes import as_outcome_table, find_column
from agentroute.routers.base import _sha256
from agentroute.routers.utility import LogisticHead, embed_texts
from agentroute.types import Step

FORMAT_VERSION = 1
MANIFEST = "confidence.json"
ARRAYS = "confidence.npz"


class ResponseConfidence:
    """Logistic regression on query/response embeddings and the model: P(the call scored well).

    Args:
        c: inverse L2 regularisation strength of the logistic regression.
        max_samples: at most this many logged (query, model) cells are used (a seeded sample), to
            bound the embedding work; ``None`` uses all.
        seed: seeds that sample.

    Fitted attributes: ``columns_`` (outcome-table columns of the one-hot), ``head_``.
    """

    def __init__(self, *, c: float = 1.0, max_samples: int | None = 6000, seed: int = 0):
        self.c = c
        self.max_samples = max_samples
        self.seed = seed

    def __repr__(self) -> str:
        return f"ResponseConfidence(c={self.c!r}, max_samples={self.max_samples!r}, seed={self.seed!r})"

    # -- learning ---------------------------------------------------------------------------------
    def fit(self, data: Any) -> Self:
        """Learn from a logged-outcome table with responses (or a dataset with ``.train``)."""
        if not self.c > 0:
            raise ConfigurationError(f"confidence: 'c' must be > 0 (got {self.c!r})")
        table = as_outcome_table(data)
        if table.responses is None:
            raise ConfigurationError("confidence: the training table has no logged responses to learn from")
        rows, cols = np.nonzero(~np.isnan(np.asarray(table.scores, dtype=float)))
        if self.max_samples is not None and len(rows) > self.max_samples:
            pick = np.sort(
                np.random.default_rng(self.seed).choice(len(rows), self.max_samples, replace=False)
            )
            rows, cols = rows[pick], cols[pick]
        scores = np.clip(np.asarray(table.scores, dtype=float)[rows, cols], 0.0, 1.0)
        self.columns_ = list(table.models)
        x = self._features(
            [table.queries[i] for i in rows],
            [table.responses[i][j] for i, j in zip(rows, cols, strict=True)],
            cols.tolist(),
        )
        # a graded score s is a positive with weight s and a negative with weight 1 − s
        weight = np.concatenate([scores, 1.0 - scores])
        labels = np.array(["1"] * len(scores) + ["0"] * len(scores))
        keep = weight > 0
        if len(set(labels[keep].tolist())) < 2:
            raise ConfigurationError(
                "confidence: every logged call scored the same; there is nothing to separate"
            )
        self.head_ = LogisticHead.fit(
            np.vstack([x, x])[keep], labels[keep], c=self.c, sample_weight=weight[keep]
        )
        return self

    def _features(
        self, queries: Sequence[str], responses: Sequence[str], cols: Sequence[int | None]
    ) -> np.ndarray:
        q = embed_texts(list(queries)).astype(float)
        r = embed_texts([str(t) for t in responses]).astype(float)
        onehot = np.zeros((len(cols), len(self.columns_)))
        for i, j in enumerate(cols):
            if j is not None:
                onehot[i, j] = 1.0
        return np.hstack([q, r, q * r, onehot])

    # -- scoring ----------------------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "head_")

    def predict_proba(
        self, queries: Sequence[str], responses: Sequence[str], models: Sequence[str]
    ) -> np.ndarray:
        """P(correct) per call; ``models`` are outcome-table columns (:mod:`agentroute.outcomes`)."""
        if not self.is_fitted:
            raise NotFittedError("confidence")
        index = {c: j for j, c in enumerate(self.columns_)}
        x = self._features(queries, responses, [index.get(m) for m in models])
        return self.head_.proba(x)[:, self.head_.classes.index("1")]

    def __call__(self, step: Step) -> float | None:
        """The confidence of a finished step (``CascadeRouter(confidence_fn=...)``)."""
        if not self.is_fitted:
            raise NotFittedError("confidence")
        j = find_column(step.agent, self.columns_)
        column = self.columns_[j] if j is not None else step.agent.key
        return float(self.predict_proba([step.input], [step.output], [column])[0])

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``confidence.json`` and ``confidence.npz`` (no pickle) into the directory ``path``.

        As :meth:`Router.save <agentroute.routers.base.Router.save>`: both files are written aside
        and moved in last (a Ctrl-C waits for both moves), and the manifest holds the arrays' SHA-256,
        so a save that fails or is interrupted leaves the scorer saved there before as it was.
        """
        if not self.is_fitted:
            raise NotFittedError("confidence")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "params": {"c": self.c, "max_samples": self.max_samples, "seed": self.seed},
            "columns": self.columns_,
        }
        staged_arrays, staged_manifest = path / f".{ARRAYS}.partial", path / f".{MANIFEST}.partial"
        try:
            with staged_arrays.open("wb") as f:
                np.savez(f, **self.head_.to_arrays("head."))  # type: ignore[arg-type]
            manifest["arrays_sha256"] = _sha256(staged_arrays)
            staged_manifest.write_text(json.dumps(manifest, indent=1))
            with signals_deferred():
                staged_arrays.replace(path / ARRAYS)
                staged_manifest.replace(path / MANIFEST)
        finally:
            staged_arrays.unlink(missing_ok=True)
            staged_manifest.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ResponseConfidence:
        path = Path(path)
        file = path / MANIFEST
        if not file.exists() or not (path / ARRAYS).exists():
            raise StateFileError(path, f"expected {MANIFEST} and {ARRAYS} written by ResponseConfidence.save")
        try:
            manifest = json.loads(file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StateFileError(file, f"not valid JSON ({exc})") from exc
        if manifest.get("format_version") != FORMAT_VERSION:
            raise StateFileError(
                file, f"format_version {manifest.get('format_version')!r}, expected {FORMAT_VERSION}"
            )
        digest = manifest.get("arrays_sha256")  # absent in saves before it was written
        if digest is not None and digest != _sha256(path / ARRAYS):
            raise StateFileError(
                path / ARRAYS,
                f"is not the file {MANIFEST} was saved with (copied from another save?): save the scorer again",
            )
        scorer = cls(**manifest["params"])
        scorer.columns_ = [str(c) for c in manifest["columns"]]
        with np.load(path / ARRAYS, allow_pickle=False) as arrays:
            scorer.head_ = LogisticHead.from_arrays({k: arrays[k] for k in arrays.files}, "head.")
        return scorer

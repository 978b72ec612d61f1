"""k-nearest-neighbour router on sentence embeddings, with estimates shrunk toward each model's mean.

The kNN router of RouterBench (Hu et al., arXiv 2403.12031, §4.1): the score and cost of model m on a
query q are estimated from the k training queries nearest to q by cosine similarity of their MiniLM
embeddings e(·). A plain neighbourhood mean is noisy (k = 40 samples of a 0/1 outcome have a standard
error near 0.07), and an argmax over noisy estimates systematically favours the luckiest model, so
that plain kNN never reaches the best single model's accuracy. Each estimate is therefore shrunk
toward the model's training mean s̄_m, as a Beta–Binomial posterior mean with ``shrinkage`` a
pseudo-neighbours:

    ŝ(q, m) = (Σ_{i ∈ N_k(q)} s_im + a · s̄_m) / (n_m(q) + a),    n_m(q) = #{i ∈ N_k(q): s_im logged}

and likewise for the cost. ``a = 0`` is the plain kNN mean. Sums and counts are weighted by the
table's per-cell fit weights (:attr:`~agentroute.outcomes.OutcomeTable.weights`): 1 for a
full-information table, clipped importance weights for bandit logs from the memory.

Neighbours are selected one query at a time (ties at the k-th similarity go to the earlier training
rows), so that a batch prediction and a single route give identical neighbourhoods.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import numpy as np

from agentroute._optional import require_installed
from agentroute.outcomes import OutcomeTable
from agentroute.routers.base import check_range, import_torch, register
from agentroute.routers.utility import QUERY_CHARS, UtilityRouter, embed_contexts, embed_texts, shrunk_mean
from agentroute.types import RouteContext


@register
class KNNRouter(UtilityRouter):
    """kNN on MiniLM embeddings (cosine), estimates shrunk toward each model's mean.

    Args:
        cost_weight: λ in ŝ − λ·ĉ/c_scale (the knob).
        k: neighbours (capped at the number of training queries).
        shrinkage: pseudo-neighbours a pulling each estimate toward the model's training mean.
        query_chars: characters of each query's end embedded (:func:`~agentroute.embed.text_tail`);
            ``None`` embeds the whole prompt. Default :data:`~agentroute.routers.utility.QUERY_CHARS`.

    Fitted attributes: ``embeddings_`` (n_train × 384), ``scores_`` and ``costs_`` (n_train × m),
    ``weights_`` (n_train × m importance weights, ``None`` when the table had none).
    """

    name = "knn"

    def __init__(
        self,
        *,
        cost_weight: float = 0.0,
        k: int = 40,
        shrinkage: float = 10.0,
        query_chars: int | None = QUERY_CHARS,
    ):
        require_installed("torch")  # its neighbours are found with it: said when built, not at fit
        self.cost_weight = cost_weight
        self.query_chars = query_chars
        self.k = k
        self.shrinkage = shrinkage

    def _param_checks(self) -> dict[str, Callable[[], None]]:
        return {
            **super()._param_checks(),
            "k": partial(check_range, self, "k", low=1, integer=True),
            "shrinkage": partial(check_range, self, "shrinkage", low=0),
        }

    def _fit_table(self, table: OutcomeTable) -> None:
        self.embeddings_ = np.ascontiguousarray(
            embed_texts(table.queries, self.query_chars), dtype=np.float32
        )
        self._embeddings_t = import_torch().from_numpy(self.embeddings_)  # shares the array's memory
        self.scores_ = np.asarray(table.scores, dtype=float)
        self.costs_ = np.asarray(table.costs, dtype=float)
        self.weights_ = np.asarray(table.weights, dtype=float) if table.weighted else None

    def neighbours(self, embedding: np.ndarray) -> np.ndarray:
        """Training-row indices of the k nearest queries to one embedding (ties: earlier rows)."""
        torch = import_torch()  # one-thread torch: numpy's threaded BLAS is 10× slower on a busy host
        if getattr(self, "_embeddings_t", None) is None:
            self._embeddings_t = torch.from_numpy(self.embeddings_)
        query = torch.from_numpy(np.ascontiguousarray(embedding, dtype=np.float32))
        sims = torch.mv(self._embeddings_t, query).numpy()
        n, k = len(sims), min(self.k, len(sims))
        if k == n:
            return np.arange(n)
        kth = np.partition(sims, n - k)[n - k]  # the k-th largest similarity
        above = np.flatnonzero(sims > kth)
        return np.concatenate([above, np.flatnonzero(sims == kth)[: k - len(above)]])

    def _predict_columns(self, ctxs: Sequence[RouteContext]) -> tuple[np.ndarray, np.ndarray]:
        queries = embed_contexts(ctxs, self.query_chars)
        a = float(self.shrinkage)
        score = np.empty((len(ctxs), len(self.columns_)))
        cost = np.empty_like(score)
        for i, e in enumerate(queries):
            near = self.neighbours(e)
            w = self.weights_[near] if self.weights_ is not None else None
            score[i] = shrunk_mean(self.scores_[near], self.score_mean_, a, w)
            cost[i] = shrunk_mean(self.costs_[near], self.cost_mean_, a, w)
        return score, cost

    def get_arrays(self) -> dict[str, np.ndarray]:
        arrays = {
            **super().get_arrays(),
            "embeddings": self.embeddings_,
            "scores": self.scores_,
            "costs": self.costs_,
        }
        if self.weights_ is not None:
            arrays["weights"] = self.weights_
        return arrays

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        super().set_arrays(arrays)
        self.embeddings_ = np.ascontiguousarray(arrays["embeddings"], dtype=np.float32)
        self._embeddings_t = import_torch().from_numpy(self.embeddings_)
        self.scores_ = np.asarray(arrays["scores"], dtype=float)
        self.costs_ = np.asarray(arrays["costs"], dtype=float)
        self.weights_ = np.asarray(arrays["weights"], dtype=float) if "weights" in arrays else None

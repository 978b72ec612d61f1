"""Reference routers of every evaluation: the oracle ceiling, the best single model, per-task lookup.

These are the yardsticks of RouterBench (Hu et al., arXiv 2403.12031, §3–4): a learned router is
worth its training only if it beats the best single model and the per-task lookup at matched cost,
and the oracle shows how much room there is.

- ``oracle`` replays the logged outcomes of the very queries it routes. It is a **ceiling, not a
  router**: the harness fits it on the *test* table. At λ = 0 it sends each query to its
  best-scoring model, the cheapest of them on ties; sweeping λ traces the oracle's cost–quality
  frontier.
- ``best-single`` picks the model with the best mean score on a validation split carved (seeded)
  from the training data, and sends every query there.
- ``per-task`` infers the task type of a query with an intent classifier (MiniLM sentence embedding
  + multinomial logistic regression, trained on the training split's task labels, as AMRO-S infers
  intent) and predicts each model's score and cost as its smoothed mean on that task type. The task
  label of a test row is never read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, ClassVar, Self

import numpy as np

from agentroute._optional import EMBEDDER, require_installed
from agentroute.errors import ConfigurationError
from agentroute.outcomes import OutcomeTable, find_column
from agentroute.routers.base import Router, check_range, decide, fit_table, register, require_candidates
from agentroute.routers.utility import (
    QUERY_CHARS,
    LogisticHead,
    UtilityRouter,
    embed_contexts,
    embed_texts,
    shrunk_mean,
    validation_split,
    weighted_mean,
)
from agentroute.types import Decision, RouteContext

NO_TASK = "<none>"


@register
class OracleRouter(UtilityRouter):
    """The oracle: each query to its best-scoring model (the cheapest on ties), from logged outcomes.

    A ceiling, not a router: ``fit`` takes the table whose queries it will route (the *test* split in
    an evaluation) and ``route`` reads the logged score and cost of the context's query, found by
    ``ctx.query_id`` (else by its text). Routing a query that is not in the table is an error. With
    λ > 0 it maximises the logged score − λ·cost/c_scale per query, tracing the oracle frontier.
    """

    name = "oracle"
    replay_only: ClassVar[bool] = True  # the harness fits it on the outcomes it replays

    def __init__(self, *, cost_weight: float = 0.0):
        self.cost_weight = cost_weight

    def _fit_table(self, table: OutcomeTable) -> None:
        self.query_ids_ = [str(q) for q in table.query_ids]
        self.queries_ = list(table.queries)
        self._index = (
            self._build_index()
        )  # built here, not on a route: routes read a view (UtilityRouter._view)
        self.scores_ = np.asarray(table.scores, dtype=float)
        self.costs_ = np.asarray(table.costs, dtype=float)

    def _build_index(self) -> tuple[dict[str, int], dict[str, int]]:
        """Training row by query id, and by query text."""
        return {q: i for i, q in enumerate(self.query_ids_)}, {q: i for i, q in enumerate(self.queries_)}

    def _rows(self, ctxs: Sequence[RouteContext]) -> list[int]:
        by_id, by_text = self._index
        rows = []
        for ctx in ctxs:
            row = by_id.get(str(ctx.query_id)) if ctx.query_id is not None else by_text.get(ctx.query)
            if row is None:
                raise ConfigurationError(
                    f"oracle: no logged outcome for query_id={ctx.query_id!r} (query {ctx.query[:60]!r}); "
                    "the oracle only replays the table it was fitted on"
                )
            rows.append(row)
        return rows

    def _predict_columns(self, ctxs: Sequence[RouteContext]) -> tuple[np.ndarray, np.ndarray]:
        rows = self._rows(ctxs)
        return self.scores_[rows], self.costs_[rows]

    def get_arrays(self) -> dict[str, np.ndarray]:
        return {
            **super().get_arrays(),
            "query_ids": np.asarray(self.query_ids_, dtype=str),
            "queries": np.asarray(self.queries_, dtype=str),
            "scores": self.scores_,
            "costs": self.costs_,
        }

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        super().set_arrays(arrays)
        self.query_ids_ = [str(q) for q in arrays["query_ids"].tolist()]
        self.queries_ = [str(q) for q in arrays["queries"].tolist()]
        self._index = self._build_index()
        self.scores_ = np.asarray(arrays["scores"], dtype=float)
        self.costs_ = np.asarray(arrays["costs"], dtype=float)


@register
class BestSingleRouter(Router):
    """Every query to the model with the best mean score on a seeded validation split of train.

    Candidates are ranked by that validation mean (ties: the lower cost now — the context's card
    price — then the lower logged mean cost); a candidate unseen in training ranks at the mean over
    all models. When the best model is not among the candidates the
    best one that is gets the query.
    """

    name = "best-single"
    learned = True

    def _check_params(self) -> None:
        super()._check_params()
        check_range(self, "validation_fraction", low=0, high=1, low_open=True, high_open=True)

    def __init__(self, *, validation_fraction: float = 0.3, seed: int = 0):
        self.validation_fraction = validation_fraction
        self.seed = seed

    def fit(self, data: Any) -> Self:
        table = fit_table(self, data)
        if len(table) == 0 or np.all(np.isnan(table.scores)):
            raise ConfigurationError("best-single: the training table has no scored cells")
        _, val = validation_split(len(table), self.validation_fraction, self.seed)
        weights = table.weights  # importance weights for bandit logs, else 1 per logged cell
        means = weighted_mean(table.scores[val], weights[val])
        means = np.where(np.isnan(means), np.nanmean(table.scores), means)  # no validation cell: train mean
        cost = np.nan_to_num(weighted_mean(table.costs, weights), nan=0.0)
        self.validation_score_ = {m: float(s) for m, s in zip(table.models, means, strict=True)}
        self.mean_cost_ = {m: float(c) for m, c in zip(table.models, cost, strict=True)}
        self.fitted_ = True
        return self

    def known_agents(self) -> list[str] | None:
        self.check_fitted()
        return list(self.validation_score_)

    @property
    def best_model_(self) -> str:
        """The column with the best validation score (the model every query goes to)."""
        self.check_fitted()
        return max(self.validation_score_, key=lambda m: (self.validation_score_[m], -self.mean_cost_[m]))

    def route(self, ctx: RouteContext) -> Decision:
        self.check_fitted()
        require_candidates(self, ctx)
        prior = float(np.mean(list(self.validation_score_.values())))

        columns = list(self.validation_score_)

        def rank(i: int) -> tuple[float, float, float]:
            j = find_column(ctx.candidates[i], columns)
            if j is None:
                return prior, -ctx.cost_of(i), -ctx.cost_of(i)
            # a tie goes to what is cheaper now: a model repriced since training is weighed at its new price
            return (
                self.validation_score_[columns[j]],
                -ctx.cost_of(i),
                -self.mean_cost_.get(columns[j], ctx.cost_of(i)),
            )

        best = max(range(len(ctx.candidates)), key=rank)
        scores = {a.key: rank(i)[0] for i, a in enumerate(ctx.candidates)}
        return decide(self, ctx, best, why="best validation mean score", scores=scores)

    def get_state(self) -> dict[str, Any]:
        return {"validation_score": self.validation_score_, "mean_cost": self.mean_cost_}

    def set_state(self, state: dict[str, Any]) -> None:
        self.validation_score_ = {str(k): float(v) for k, v in state["validation_score"].items()}
        self.mean_cost_ = {str(k): float(v) for k, v in state["mean_cost"].items()}


@register
class PerTaskRouter(UtilityRouter):
    """Per-task lookup with the task type inferred from the query.

    An intent model p(t | q) = softmax(W·e(q) + b) over the training task types (e(q): MiniLM
    embedding; W, b: logistic regression with inverse regularisation ``intent_c``) gives the task
    mixture of a query. Each model's predicted score and cost are the mixture of its per-task means,

        ŝ(q, m) = Σ_t p(t | q) · (Σ_{i ∈ t} s_im + a·s̄_m) / (n_tm + a)

    (``soft=True``; ``soft=False`` uses only the most likely task), smoothed toward the model's
    overall mean s̄_m with ``prior_strength`` a pseudo-rows. With one task type (or no labels) it
    reduces to the per-model mean. Rows without a task label train no intent but count in the means
    of the pseudo-task ``"<none>"``.

    ``query_chars`` is the characters of each query's end the intent model embeds
    (:func:`~agentroute.embed.text_tail`; ``None``: the whole prompt; default
    :data:`~agentroute.routers.utility.QUERY_CHARS`).
    """

    name = "per-task"

    def __init__(
        self,
        *,
        cost_weight: float = 0.0,
        soft: bool = True,
        prior_strength: float = 1.0,
        intent_c: float = 10.0,
        query_chars: int | None = QUERY_CHARS,
    ):
        require_installed(*EMBEDDER, "sklearn")  # its intent model: said when built, not at fit
        self.cost_weight = cost_weight
        self.query_chars = query_chars
        self.soft = soft
        self.prior_strength = prior_strength
        self.intent_c = intent_c

    def _param_checks(self) -> dict[str, Callable[[], None]]:
        return {
            **super()._param_checks(),
            "prior_strength": partial(check_range, self, "prior_strength", low=0),
            "intent_c": partial(check_range, self, "intent_c", low=0, low_open=True),
        }

    def _fit_table(self, table: OutcomeTable) -> None:
        labels = [str(t) if t is not None else NO_TASK for t in table.task_types]
        self.tasks_ = sorted(set(labels))
        a = float(self.prior_strength)
        task_scores, task_costs = [], []
        weights = table.weights
        for task in self.tasks_:
            rows = [i for i, t in enumerate(labels) if t == task]
            task_scores.append(shrunk_mean(table.scores[rows], self.score_mean_, a, weights[rows]))
            task_costs.append(shrunk_mean(table.costs[rows], self.cost_mean_, a, weights[rows]))
        self.task_score_ = np.vstack(task_scores)
        self.task_cost_ = np.vstack(task_costs)
        self.task_prior_ = np.array([labels.count(t) for t in self.tasks_], dtype=float) / len(labels)
        labelled = [i for i, t in enumerate(labels) if t != NO_TASK]
        self.intent_: LogisticHead | None = None
        if len({labels[i] for i in labelled}) >= 2:
            x = embed_texts([table.queries[i] for i in labelled], self.query_chars)
            self.intent_ = LogisticHead.fit(x, [labels[i] for i in labelled], c=self.intent_c)

    def task_proba(self, ctxs: Sequence[RouteContext]) -> np.ndarray:
        """p(t | q) per context (n × len(tasks_)), inferred from the query text only."""
        self.check_fitted()
        if self.intent_ is None:  # fewer than two labelled task types: the training frequencies
            return np.tile(self.task_prior_, (len(ctxs), 1))
        proba = np.zeros((len(ctxs), len(self.tasks_)))
        p = self.intent_.proba(embed_contexts(ctxs, self.query_chars))
        cols = [self.tasks_.index(t) for t in self.intent_.classes]
        proba[:, cols] = p
        return proba

    def predict_task(self, queries: Sequence[str]) -> list[str]:
        """The most likely task type of each query text."""
        ctxs = [RouteContext(query=q, candidates=[]) for q in queries]
        return [self.tasks_[i] for i in np.argmax(self.task_proba(ctxs), axis=1)]

    def _predict_columns(self, ctxs: Sequence[RouteContext]) -> tuple[np.ndarray, np.ndarray]:
        proba = self.task_proba(ctxs)
        if not self.soft:
            proba = np.eye(len(self.tasks_))[np.argmax(proba, axis=1)]
        return proba @ self.task_score_, proba @ self.task_cost_

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "tasks": list(self.tasks_)}

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.tasks_ = list(state["tasks"])

    def get_arrays(self) -> dict[str, np.ndarray]:
        arrays = {
            **super().get_arrays(),
            "task_score": self.task_score_,
            "task_cost": self.task_cost_,
            "task_prior": self.task_prior_,
        }
        if self.intent_ is not None:
            arrays.update(self.intent_.to_arrays("intent."))
        return arrays

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        super().set_arrays(arrays)
        self.task_score_ = np.asarray(arrays["task_score"], dtype=float)
        self.task_cost_ = np.asarray(arrays["task_cost"], dtype=float)
        self.task_prior_ = np.asarray(arrays["task_prior"], dtype=float)
        self.intent_ = LogisticHead.from_arrays(arrays, "intent.") if "intent.weight" in arrays else None


__all__ = ["BestSingleRouter", "OracleRouter", "PerTaskRouter"]

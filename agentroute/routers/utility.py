"""Utility routers: predict each candidate's score and cost, then take the best trade-off.

A :class:`UtilityRouter` learns, from logged outcomes only, a predicted score ŝ(q, m) and a predicted
cost ĉ(q, m) for a query q and each candidate m, and routes to

    m* = argmax_m  ŝ(q, m) − λ · ĉ(q, m) / c_scale

where λ is the router's one knob (``cost_weight``) and ``c_scale`` (``cost_scale_``) is the mean
logged cost of the dearest model in the training data, so that λ is unit-free: at λ = 1 a model that
costs as much as the dearest one on average must be predicted one full score point better than a free
one. Ties go to the lower predicted cost, then to the earlier candidate. This is the cost-aware
argmax used by RouterBench's predictive routers (Hu et al., arXiv 2403.12031, §4) and RouteLLM's
threshold routers (Ong et al., arXiv 2406.18665) generalised to k models.

Sweeping λ is cheap: :meth:`UtilityRouter.predict` returns the (n × k) score and cost matrices for n
contexts that share one candidate list, and :func:`choose` / :func:`sweep` apply the argmax for any λ
— bit for bit what :meth:`UtilityRouter.route` decides context by context.

A candidate's column is found by :func:`~agentroute.outcomes.find_column` (its agent key
``role:model:strategy``, else its role-free ``model[:strategy]``). Candidates whose column was not
seen in training get the training mean score and a cost from their card (the context's card-priced
cost, rescaled by the median ratio of logged to card cost over the known candidates), or the
training mean cost when no card price is given (when no candidate of the context was seen, the card
costs as they are, so the cheapest wins at equal scores); :func:`agentroute.routers.base.check_pool` refuses
such candidates before serving, unless the router is inductive (it scores unseen agents from their
descriptors) or new agents are allowed.

**Repriced models.** A known candidate's predicted cost is scaled by how much its model's card (in
the context) is dearer than the price it was trained at (:mod:`agentroute.routers.prices`), so a
price change in the pool after training moves the cost–quality trade-off without retraining; the
decision's ``why`` names a chosen model that was repriced.

**Bandit feedback.** Every fit reads the table's per-cell weights
(:attr:`~agentroute.outcomes.OutcomeTable.weights`: 1 on each logged cell of a full-information
table; clipped, column-normalised importance weights 1/p when the cells were logged by an
exploring router with propensity p): the column means here, and each subclass's own fit
(neighbourhood means, losses, per-task means) are importance-weighted regressions.

The module also holds two small learned pieces that several routers share: :class:`LogisticHead`
(a scikit-learn logistic regression kept as plain arrays, so it saves without pickle) and the
seeded minibatch loop with early stopping used by the torch routers (:func:`train_early_stopping`).
"""

from __future__ import annotations

import abc
import copy
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Self

import numpy as np

from agentroute._optional import require
from agentroute.embed import context_text, text_tail
from agentroute.errors import ConfigurationError
from agentroute.outcomes import OutcomeTable, as_outcome_table, find_column
from agentroute.routers.base import (
    Router,
    check_each,
    check_fit_data,
    check_range,
    decide,
    import_torch,
    require_candidates,
)
from agentroute.routers.prices import PriceRefs, price_factor, price_factors, training_prices
from agentroute.types import Agent, Decision, RouteContext

#: The λ values the evaluation sweeps: 0, then 47 log-spaced values from 1e-3 to 1e4. At the top end
#: a cost gap of 1e-4 of the dearest model's mean cost outweighs a full score point, so the cheapest
#: model wins every query.
KNOB_GRID: tuple[float, ...] = (0.0, *(float(x) for x in np.geomspace(1e-3, 1e4, 47)))

#: Orders :meth:`UtilityRouter._refit_aside`'s state swaps and :meth:`UtilityRouter._view`'s copies
#: (one lock for all routers: a router is copied and pickled, a lock is not; held for microseconds).
_SWAP = threading.Lock()

#: The key that marks a :meth:`UtilityRouter._view` (a view's own ``_view`` is itself: no second copy).
_VIEW = "_state_view"


# -- the decision rule ---------------------------------------------------------------------------
def check_cost_scale(cost_scale: float) -> float:
    """``cost_scale`` (what a cost is divided by in :func:`utilities`), a finite number > 0; else a
    :class:`ConfigurationError` (every route would fail on it)."""
    if not np.isfinite(cost_scale) or cost_scale <= 0:
        raise ConfigurationError(f"'cost_scale' must be a finite number > 0 (got {cost_scale!r})")
    return cost_scale


def utilities(score: np.ndarray, cost: np.ndarray, cost_weight: float, cost_scale: float = 1.0) -> np.ndarray:
    """``score − cost_weight · cost / cost_scale``; missing (nan) predictions become −inf.

    >>> utilities(np.array([[0.9, 0.5]]), np.array([[2.0, 0.0]]), 0.1, 2.0).round(2).tolist()
    [[0.8, 0.5]]
    """
    if not np.isfinite(cost_weight) or cost_weight < 0:
        raise ConfigurationError(f"'cost_weight' must be a finite number ≥ 0 (got {cost_weight!r})")
    check_cost_scale(cost_scale)
    u = np.asarray(score, dtype=float) - cost_weight * np.asarray(cost, dtype=float) / cost_scale
    return np.where(np.isnan(u), -np.inf, u)


#: Utilities closer than this are a tie (the float noise of a learned predictor: two agents with the
#: same logged outcomes, given different seeded embeddings, predict 0.999001 and 0.999002).
TIE_TOLERANCE = 1e-4


def choose(
    score: np.ndarray,
    cost: np.ndarray,
    cost_weight: float,
    cost_scale: float = 1.0,
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """Row-wise ``argmax`` of :func:`utilities`. Ties (within :data:`TIE_TOLERANCE`) go to the lower
    cost, then to the first of ``names`` in sorted order (the agents' keys; ``None``: the lower
    index), so a pick never depends on the order of the candidates.

    >>> choose(np.array([[0.5, 0.5, 0.4]]), np.array([[2.0, 1.0, 0.0]]), 0.0).tolist()
    [1]
    >>> choose(np.array([[0.5, 0.5, 0.4]]), np.array([[2.0, 1.0, 0.0]]), 1.0, 10.0).tolist()
    [2]
    >>> choose(np.array([[0.9, 0.90001]]), np.array([[1.0, 1.0]]), 0.0, names=["b", "a"]).tolist()
    [1]
    """
    u = utilities(score, cost, cost_weight, cost_scale)
    if u.ndim != 2 or u.shape[1] == 0:
        raise ConfigurationError(f"score and cost must be (n × k) with k ≥ 1 (got shape {u.shape})")
    tied = u >= u.max(axis=1, keepdims=True) - TIE_TOLERANCE
    tied_cost = np.where(tied, np.nan_to_num(np.asarray(cost, dtype=float), nan=np.inf), np.inf)
    tied &= tied_cost <= tied_cost.min(axis=1, keepdims=True)
    k = u.shape[1]
    rank = (
        np.arange(k)
        if names is None
        else np.argsort(np.argsort(np.asarray(list(names), dtype=object), kind="stable"))
    )
    return np.argmin(np.where(tied, rank, k), axis=1)


def sweep(
    score: np.ndarray,
    cost: np.ndarray,
    grid: Sequence[float] = KNOB_GRID,
    cost_scale: float = 1.0,
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """The choices for every λ in ``grid``: an (len(grid) × n) array of candidate indices (ties as
    :func:`choose` breaks them)."""
    return np.stack([choose(score, cost, float(lam), cost_scale, names) for lam in grid])


# -- what routers read from a context ------------------------------------------------------------
#: Characters of a query's end that the embedding routers (knn, mlp, mf, graph-router, per-task)
#: embed by default — their ``query_chars`` parameter; ``None`` embeds the whole prompt. The cut is
#: :func:`agentroute.embed.text_tail` (from a word on), the rule kg-gnn uses with 1000 characters.
#: The whole prompt stays the default: RouterBench ARC and Winogrande prompts then embed to one
#: vector per task (shared few-shot prefix, MiniLM's 256-word-piece limit), yet 1000 or 500
#: characters did not raise AIQ beyond the bootstrap interval on RouterBench, dcrouter or RouteLLM
#: MMLU (benchmarks/RESULTS.md, router quality).
QUERY_CHARS: int | None = None


#: Piece windows (:func:`agentroute.embed.parse_pieces`) embedded separately and concatenated into
#: one query vector, each part unit norm and scaled by 1/√k so that the whole is unit norm: e.g.
#: ``((48, 0), (0, 48))``, a head vector that names the task beside a tail vector of the question
#: (n × 384·k); a ``None`` view is the whole text. ``None`` (default): one vector, from the embedder's own window. An experiment of
#: issue 16 (``benchmarks/quality.py --views``), not a serving setting: it runs the encoder k times.
QUERY_VIEWS: tuple[tuple[int, int] | None, ...] | None = None


def embed_texts(texts: Sequence[str], max_chars: int | None = None) -> np.ndarray:
    """MiniLM vectors (n × 384, unit norm) of each text's :func:`~agentroute.embed.text_tail` of
    ``max_chars`` (``None``: the whole text), from the process-wide, disk-cached embedder (or the
    concatenated :data:`QUERY_VIEWS` when set)."""
    from agentroute.embed import default_embedder

    emb = default_embedder()
    cut = [text_tail(t, max_chars) for t in texts]
    if not QUERY_VIEWS:
        return emb.embed(cut)
    parts = [emb.embed([emb.window(t, view) if view else t for t in cut]) for view in QUERY_VIEWS]
    return (np.concatenate(parts, axis=1) / np.sqrt(len(parts))).astype(np.float32)


def embed_contexts(ctxs: Sequence[RouteContext], max_chars: int | None = None) -> np.ndarray:
    """:func:`embed_texts` of each context's :func:`~agentroute.embed.context_text`."""
    return embed_texts([context_text(c) for c in ctxs], max_chars)


def shared_candidates(ctxs: Sequence[RouteContext], who: str) -> list[Agent]:
    """The candidate list every context shares (``predict`` returns one column per candidate)."""
    if not ctxs:
        raise ConfigurationError(f"{who}: predict() needs at least one context")
    agents = ctxs[0].candidates
    if not agents:
        raise ConfigurationError(f"{who}: predict() called with no candidates")
    keys = [a.key for a in agents]
    for i, ctx in enumerate(ctxs[1:], start=1):
        if [a.key for a in ctx.candidates] != keys:
            raise ConfigurationError(
                f"{who}: predict() needs contexts that share one candidate list; context {i} has "
                f"{[a.key for a in ctx.candidates]}, context 0 has {keys}. Call it once per candidate list."
            )
    return list(agents)


# -- the base class ------------------------------------------------------------------------------
class UtilityRouter(Router):
    """Base of routers that predict per-candidate score and cost (see the module docstring).

    Subclasses implement :meth:`_fit_table` (learn from the training :class:`OutcomeTable`) and
    :meth:`_predict_columns` (predicted score and cost of every training column), and extend
    :meth:`get_state`/:meth:`set_state` and :meth:`get_arrays`/:meth:`set_arrays` with ``super()``.
    Every subclass takes ``cost_weight`` (λ ≥ 0) as a keyword parameter.

    Fitted attributes: ``columns_`` (training columns: agent keys from the memory, role-free names
    from datasets; :mod:`agentroute.outcomes`), ``weighted_`` (whether the fit used importance
    weights), ``score_mean_`` and ``cost_mean_`` (per column), ``cost_scale_`` (the dearest
    column's mean cost; 1 when all costs are 0).

    Refitting while routing: ``fit`` learns on a fresh instance and swaps the state in whole
    (:meth:`_refit_aside`); ``route`` and ``predict`` read one version of it (:meth:`_view`). A
    subclass whose fit needs more than the data (e.g. model cards) extends :meth:`_learn`, not
    ``fit``; learned attributes end in ``_``, and caches derived from them are made by the fit (or
    ``set_arrays``), not lazily on a route (a route's writes go to its view and are lost).
    """

    learned = True
    knob = "cost_weight"
    knob_grid = KNOB_GRID

    cost_weight: float
    columns_: list[str]
    score_mean_: np.ndarray
    cost_mean_: np.ndarray
    cost_scale_: float

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass that scores candidates without a training column itself (overriding
        :meth:`_predict_unknown` or :meth:`predict`, e.g. from descriptors) is inductive unless it
        says otherwise (:attr:`~agentroute.routers.base.Router.inductive`)."""
        super().__init_subclass__(**kwargs)
        if "inductive" not in cls.__dict__:
            cls.inductive = (
                cls._predict_unknown is not UtilityRouter._predict_unknown
                or cls.predict is not UtilityRouter.predict
            )

    # -- learning ---------------------------------------------------------------------------
    def fit(self, data: Any) -> Self:
        """Learn from an :class:`OutcomeTable`, a dataset with ``.train``, or trajectories.

        The learning happens on a fresh instance (:meth:`_refit_aside`), so routes served meanwhile
        by another thread see the old model until the new one is swapped in whole.
        """
        return self._refit_aside(data)

    # -- refitting while routing ----------------------------------------------------------------
    def _refit_aside(self, data: Any, **options: Any) -> Self:
        """``fit`` for a router that may be serving: :meth:`_learn` runs on an unfitted copy (this
        router's attributes less its learned ones, those ending in ``_``: every parameter, in
        ``get_params()`` or not, and private settings carry over; no constructor is called), then
        the copy's state replaces the old one in one assignment under a lock held for microseconds
        (:data:`_SWAP`), never while learning. A fit that fails leaves the router as it was."""
        fresh = object.__new__(type(self))
        fresh.__dict__ = {k: v for k, v in self.__dict__.items() if not _learned(k)}
        fresh._learn(data, **options)
        with _SWAP:
            state = {k: v for k, v in self.__dict__.items() if not _learned(k)}
            state.update(fresh.__dict__)
            self.__dict__ = state
        return self

    def _view(self) -> Self:
        """One consistent version of this router's state (a shallow copy of its ``__dict__`` taken
        under :data:`_SWAP`): what ``route`` and ``predict`` read, so that a refit in another thread
        shows them the old model or the new one, never the new columns against the old arrays."""
        if _VIEW in self.__dict__:
            return self
        view = object.__new__(type(self))
        with _SWAP:
            state = self.__dict__.copy()
        state[_VIEW] = True
        view.__dict__ = state
        return view

    def _learn(self, data: Any) -> None:
        """The learning of :meth:`fit`, on the fresh instance ``self``; subclasses that need more than
        the table (e.g. model cards) extend this with ``super()``."""
        data = check_fit_data(self, data)
        table = as_outcome_table(data)
        if len(table) == 0 or not table.models:
            raise ConfigurationError(f"{self.name}: the training table is empty")
        if np.all(np.isnan(table.scores)):
            raise ConfigurationError(f"{self.name}: the training table has no scored cells")
        self._run_checks()
        table, unscored = _scored_columns(table)
        if unscored:
            warnings.warn(f"{self.name}: {unscored}", UserWarning, stacklevel=4)
        self.columns_ = list(table.models)
        weights = table.weights
        self.weighted_ = table.weighted
        self.__dict__["_fit_note"] = _weighting_note(table) + (f"; {unscored}" if unscored else "")
        score_mean = weighted_mean(table.scores, weights)
        self.score_mean_ = np.where(np.isnan(score_mean), np.nanmean(score_mean), score_mean)
        cost_mean = weighted_mean(table.costs, weights)
        self.cost_mean_ = np.where(
            np.isnan(cost_mean), np.nanmean(cost_mean) if np.any(~np.isnan(cost_mean)) else 0.0, cost_mean
        )
        dearest = float(np.max(self.cost_mean_)) if self.cost_mean_.size else 0.0
        self.cost_scale_ = dearest if np.isfinite(dearest) and dearest > 0 else 1.0
        self.prices_ = training_prices(data)
        self._fit_table(table)
        self.fitted_ = True

    def _check_params(self) -> None:
        """Validate hyperparameters (called by ``fit`` and :func:`make_router`): every check of
        :meth:`_param_checks` runs, and one error names each parameter refused (:func:`check_each`)."""
        super()._check_params()
        check_each(self, self._param_checks())

    def _param_checks(self) -> dict[str, Callable[[], None]]:
        """The check of each parameter, by name; subclasses extend it with ``super()``."""
        checks: dict[str, Callable[[], None]] = {
            "cost_weight": partial(check_range, self, "cost_weight", low=0)  # np.float32 from a grid too
        }
        if hasattr(self, "query_chars"):  # 0: the whole text
            checks["query_chars"] = partial(
                check_range, self, "query_chars", low=0, integer=True, optional=True
            )
        return checks

    @abc.abstractmethod
    def _fit_table(self, table: OutcomeTable) -> None:
        """Learn the predictor from the training table (``columns_`` etc. are already set)."""

    # -- prediction ---------------------------------------------------------------------------
    @abc.abstractmethod
    def _predict_columns(self, ctxs: Sequence[RouteContext]) -> tuple[np.ndarray, np.ndarray]:
        """Predicted (score, cost), each (n × len(columns_)), for the training columns."""

    def _predict_unknown(
        self, ctxs: Sequence[RouteContext], agents: Sequence[Agent], known: dict[str, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(score, cost) for candidates without a training column: the training mean score and a
        card-calibrated cost (see the module docstring)."""
        n, u = len(ctxs), len(agents)
        score = np.full((n, u), float(np.mean(self.score_mean_)))
        cost = np.full((n, u), float(np.mean(self.cost_mean_)))
        for i, ctx in enumerate(ctxs):
            ratios = [
                self.cost_mean_[col] * price_factor(self.prices, ctx, a) / ctx.costs[a.key]
                for a in ctx.candidates
                if (col := find_column(a, known)) is not None and ctx.costs.get(a.key, 0.0) > 0
            ]
            if not ratios and not any(find_column(a, known) is not None for a in ctx.candidates):
                ratios = [
                    1.0
                ]  # no candidate was seen in training: card costs as they are (cheapest wins ties)
            if not ratios:
                continue
            ratio = float(np.median(ratios))
            for j, agent in enumerate(agents):
                if ctx.costs.get(agent.key, 0.0) > 0:
                    cost[i, j] = ctx.costs[agent.key] * ratio
        return score, cost

    def predict(self, ctxs: Sequence[RouteContext]) -> tuple[np.ndarray, np.ndarray]:
        """Predicted (score, cost), each (n × k), for the k candidates the n contexts share.

        Never reads a logged outcome of the contexts' queries (except :class:`OracleRouter`, which
        is a ceiling, not a router). Reads one version of the fitted state (:meth:`_view`).
        """
        self = self._view()  # every read below from one version of the state
        self.check_fitted()
        agents = shared_candidates(ctxs, self.name)
        known = {c: j for j, c in enumerate(self.columns_)}
        cols = [find_column(a, known) for a in agents]
        score = np.empty((len(ctxs), len(agents)))
        cost = np.empty((len(ctxs), len(agents)))
        seen = [j for j, col in enumerate(cols) if col is not None]
        if seen:
            known_score, known_cost = self._predict_columns(ctxs)
            idx = [col for col in cols if col is not None]
            score[:, seen], cost[:, seen] = known_score[:, idx], known_cost[:, idx]
            cost[:, seen] *= price_factors(self.prices, ctxs, [agents[j] for j in seen])
        unseen = [j for j, col in enumerate(cols) if col is None]
        if unseen:
            score[:, unseen], cost[:, unseen] = self._predict_unknown(
                ctxs, [agents[j] for j in unseen], known
            )
        return score, cost

    def choose(
        self,
        score: np.ndarray,
        cost: np.ndarray,
        cost_weight: float | None = None,
        names: Sequence[str] | None = None,
    ) -> np.ndarray:
        """The candidate index per row for λ = ``cost_weight`` (default: this router's); ties as
        :func:`choose` breaks them (``names``: the candidates' keys)."""
        self.check_fitted()
        lam = self.cost_weight if cost_weight is None else cost_weight
        return choose(score, cost, lam, self.cost_scale_, names)

    @property
    def prices(self) -> PriceRefs:
        """``prices_``: each trained model's reference call at its training price
        (:mod:`agentroute.routers.prices`); empty for a router saved before prices were kept."""
        return getattr(self, "prices_", {})

    def known_agents(self) -> list[str] | None:
        self.check_fitted()
        return list(self.columns_)

    def fit_summary(self) -> str:
        """What the last fit learned from (printed by ``agentroute train``): agents, cells, weighting."""
        self.check_fitted()
        note = self.__dict__.get("_fit_note") or f"{len(self.columns_)} agents"
        return f"{self.name}: {note}"

    def route(self, ctx: RouteContext) -> Decision:
        require_candidates(self, ctx)
        self = self._view()  # one version of the state for the whole decision
        score, cost = self.predict([ctx])
        keys = [a.key for a in ctx.candidates]
        index = int(self.choose(score, cost, names=keys)[0])
        u = utilities(score, cost, self.cost_weight, self.cost_scale_)[0]
        why = f"argmax predicted score − {self.cost_weight:g}·cost/{self.cost_scale_:.3g}"
        if find_column(ctx.candidates[index], self.columns_) is None:
            why += f"; {unseen_note(self, ctx.candidates[index])}"
        else:
            why += repriced_note(self, ctx, ctx.candidates[index])
        return decide(
            self,
            ctx,
            index,
            why=why,
            scores={k: float(v) for k, v in zip(keys, u, strict=True)},
            evidence={
                "predicted_score": {k: float(v) for k, v in zip(keys, score[0], strict=True)},
                "predicted_cost": {k: float(v) for k, v in zip(keys, cost[0], strict=True)},
            },
        )

    # -- persistence ---------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        return {
            "columns": list(self.columns_),
            "cost_scale": float(self.cost_scale_),
            "weighted": bool(getattr(self, "weighted_", False)),
            "prices": {m: [float(x) for x in ref] for m, ref in self.prices.items()},
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.columns_ = list(state["columns"])
        self.cost_scale_ = check_cost_scale(float(state["cost_scale"]))  # an edited file: refused at load
        self.weighted_ = bool(state.get("weighted", False))  # absent in routers saved before weighting
        self.prices_ = {str(m): [float(x) for x in ref] for m, ref in state.get("prices", {}).items()}

    def get_arrays(self) -> dict[str, np.ndarray]:
        return {"score_mean": np.asarray(self.score_mean_), "cost_mean": np.asarray(self.cost_mean_)}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """The saved means, one per agent of ``columns`` (:meth:`set_state` comes first): a file whose
        ``columns`` were edited, or paired with another router's arrays, is refused (it would label
        one agent's record with another's name)."""
        self.score_mean_ = np.asarray(arrays["score_mean"], dtype=float)
        self.cost_mean_ = np.asarray(arrays["cost_mean"], dtype=float)
        n = len(self.columns_)
        if self.score_mean_.shape != (n,) or self.cost_mean_.shape != (n,):
            raise ValueError(
                f'its arrays hold {self.score_mean_.size} agents\' outcomes but its "columns" name {n}: '
                "the files were edited or come from different saves; train it again"
            )


def _learned(key: str) -> bool:
    """Whether an attribute is learned state (scikit-learn's convention: a name ending in ``_``)."""
    return key.endswith("_") and not key.endswith("__")


def _scored_columns(table: OutcomeTable) -> tuple[OutcomeTable, str]:
    """``table`` less its columns without one scored cell, and a note naming them ("" if none).

    Such an agent was never seen to succeed or fail: the router leaves it out of its columns, so it
    is unseen in training (:func:`~agentroute.routers.base.check_pool` refuses it in a pool unless
    new agents are allowed) instead of a column scored by the other agents' mean — which ties the
    best agent whenever they all score alike and then wins on cost."""
    scored = ~np.all(np.isnan(np.asarray(table.scores, dtype=float)), axis=0)
    if scored.all():
        return table, ""
    left_out = [m for m, ok in zip(table.models, scored, strict=True) if not ok]
    shown = ", ".join(left_out[:12]) + (f" … and {len(left_out) - 12} more" if len(left_out) > 12 else "")
    note = f"left out {len(left_out)} agent(s) with no scored outcome in the training table: {shown} (unseen in training)"
    return table.columns(np.flatnonzero(scored)), note


def _weighting_note(table: OutcomeTable) -> str:
    """``agentroute train``'s line on the training table: its agents, logged cells and weighting."""
    logged = ~np.isnan(table.scores)
    head = f"{len(table.models)} agents, {int(logged.sum())} logged outcomes on {len(table)} queries"
    if not table.weighted or table.propensity is None:
        return head + " (unweighted: no logged propensities)"
    p = table.propensity[logged & ~np.isnan(table.propensity)]
    clip = float(table.importance_clip)  # type: ignore[arg-type]
    return (
        f"{head}; importance-weighted by the logged propensities of {len(p)} of them (1/p clipped at "
        f"{clip:g}: {int(np.sum(1.0 / p > clip))} clipped; weights normalised to mean 1 per agent)"
    )


def repriced_note(router: UtilityRouter, ctx: RouteContext, agent: Agent) -> str:
    """What a decision's ``why`` says of a chosen agent whose card was repriced since training."""
    factor = price_factor(router.prices, ctx, agent)
    return "" if abs(factor - 1.0) < 1e-9 else f"; {agent.model} repriced since training: cost ×{factor:.3g}"


def unseen_note(router: Router, agent: Any) -> str:
    """What a decision's ``why`` says of a chosen agent the router was not trained on."""
    if getattr(router, "inductive", False):
        return f"{agent.key} unseen in training: scored from its descriptor"
    return f"{agent.key} unseen in training: scored by the training mean (new agents allowed)"


def shrunk_mean(
    values: np.ndarray, prior: np.ndarray, strength: float, weights: np.ndarray | None = None
) -> np.ndarray:
    """Per-column (Σ w·value + strength·prior) / (Σ w + strength) over logged cells (nan skipped);
    ``weights`` (same shape; default 1 per logged cell) are the table's fit weights.

    >>> shrunk_mean(np.array([[1.0], [1.0], [np.nan]]), np.array([0.5]), 2.0).tolist()
    [0.75]
    >>> shrunk_mean(np.array([[1.0], [0.0]]), np.array([0.5]), 0.0, np.array([[3.0], [1.0]])).tolist()
    [0.75]
    """
    logged = ~np.isnan(values)
    w = logged.astype(float) if weights is None else np.where(logged, weights, 0.0)
    count = w.sum(axis=0)
    total = (np.where(logged, values, 0.0) * w).sum(axis=0)
    denom = count + strength
    return np.where(denom > 0, (total + strength * prior) / np.where(denom > 0, denom, 1.0), prior)


def weighted_mean(values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Per-column Σ w·value / Σ w over logged (non-nan) cells; nan for a column with none.

    >>> weighted_mean(np.array([[1.0, np.nan], [0.0, np.nan]]), np.array([[3.0, 1.0], [1.0, 1.0]])).tolist()
    [0.75, nan]
    """
    logged = ~np.isnan(values)
    w = logged.astype(float) if weights is None else np.where(logged, weights, 0.0)
    total = (np.where(logged, values, 0.0) * w).sum(axis=0)
    count = w.sum(axis=0)
    return np.where(count > 0, total / np.where(count > 0, count, 1.0), np.nan)


# -- a logistic regression kept as arrays ------------------------------------------------------
@dataclass
class LogisticHead:
    """Multinomial logistic regression p(y | x) = softmax(W x + b), fitted by scikit-learn.

    Kept as plain arrays (``weight`` c × d, ``bias`` c, ``classes``) so that it saves to ``.npz``
    without pickle and predicts with numpy alone. Binary problems are stored in the same softmax
    form: rows (0, w) and (0, b), i.e. p(y₁ | x) = σ(w·x + b).
    """

    classes: list[str]
    weight: np.ndarray
    bias: np.ndarray

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        y: Sequence[str] | np.ndarray,
        *,
        c: float = 1.0,
        sample_weight: np.ndarray | None = None,
    ) -> LogisticHead:
        labels = np.asarray([str(v) for v in y])
        classes = sorted(set(labels.tolist()))
        if len(classes) < 2:
            raise ConfigurationError(f"a logistic head needs two classes or more (got {classes})")
        linear_model = require("sklearn.linear_model")
        model = linear_model.LogisticRegression(C=c, max_iter=2000)
        model.fit(x, labels, sample_weight=sample_weight)
        weight, bias = np.asarray(model.coef_, dtype=float), np.asarray(model.intercept_, dtype=float)
        if len(classes) == 2:
            weight = np.vstack([np.zeros_like(weight[0]), weight[0]])
            bias = np.array([0.0, bias[0]])
        return cls([str(k) for k in model.classes_], weight, bias)

    def proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (n × c), columns in the order of ``classes``."""
        z = np.asarray(x, dtype=float) @ self.weight.T + self.bias
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, x: np.ndarray) -> list[str]:
        return [self.classes[i] for i in np.argmax(self.proba(x), axis=1)]

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {
            f"{prefix}weight": self.weight,
            f"{prefix}bias": self.bias,
            f"{prefix}classes": np.asarray(self.classes),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> LogisticHead:
        return cls(
            [str(v) for v in arrays[f"{prefix}classes"].tolist()],
            np.asarray(arrays[f"{prefix}weight"], dtype=float),
            np.asarray(arrays[f"{prefix}bias"], dtype=float),
        )


# -- torch helpers -------------------------------------------------------------------------------
def module_arrays(module: Any, prefix: str = "net.") -> dict[str, np.ndarray]:
    """A torch module's ``state_dict`` as numpy arrays (for ``arrays.npz``)."""
    return {prefix + k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def load_module_arrays(module: Any, arrays: dict[str, np.ndarray], prefix: str = "net.") -> None:
    """Load what :func:`module_arrays` wrote; a missing or extra tensor is an error."""
    torch = import_torch()
    state = {
        k[len(prefix) :]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith(prefix)
    }
    module.load_state_dict(state, strict=True)
    module.eval()


def train_early_stopping(
    module: Any,
    train_loss: Callable[[Any], Any],
    val_loss: Callable[[], float],
    *,
    n_train: int,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    patience: int,
    seed: int,
    optimizer: str = "adam",
    desc: str | None = None,
) -> int:
    """Seeded minibatch training with early stopping; restores the best weights. Returns epochs run.

    A progress bar ``desc`` (default ``training <module class>``; :mod:`agentroute.progress`)
    counts the epochs, with the last epoch's mean training loss and validation loss.

    ``train_loss(batch_index_tensor)`` returns the loss of a minibatch (module in train mode);
    ``val_loss()`` the validation loss (called under ``no_grad``, module in eval mode). Shuffling
    uses its own ``torch.Generator`` seeded with ``seed``; the caller seeds parameter
    initialisation.
    """
    torch = import_torch()
    opt_cls = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
    opt = opt_cls(module.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    from agentroute.progress import fit_bar

    with fit_bar(epochs, desc or f"training {type(module).__name__}") as b:
        ran, best_state = _epochs(
            module, opt, gen, train_loss, val_loss, n_train, epochs, batch_size, patience, b
        )
    module.load_state_dict(best_state)
    module.eval()
    return ran


def _epochs(module: Any, opt: Any, gen: Any, train_loss: Callable[[Any], Any], val_loss: Callable[[], float],
            n_train: int, epochs: int, batch_size: int, patience: int, b: Any) -> tuple[int, Any]:  # fmt: skip
    """The loop of :func:`train_early_stopping`: (epochs run, best weights)."""
    torch = import_torch()
    best, best_state, stale, ran = np.inf, copy.deepcopy(module.state_dict()), 0, 0
    for epoch in range(1, epochs + 1):
        ran = epoch
        module.train()
        order = torch.randperm(n_train, generator=gen)
        total = torch.zeros(())
        for start in range(0, n_train, batch_size):
            opt.zero_grad()
            rows = order[start : start + batch_size]
            loss = train_loss(rows)
            loss.backward()
            opt.step()
            total += loss.detach() * len(rows)
        module.eval()
        with torch.no_grad():
            current = float(val_loss())
        b.advance(f"loss {float(total) / max(n_train, 1):.4f}, val {current:.4f}")
        if current < best - 1e-6:
            best, best_state, stale = current, copy.deepcopy(module.state_dict()), 0
        else:
            stale += 1
            if stale >= patience:
                break
    return ran, best_state


def validation_split(
    n: int, fraction: float, seed: int, *, minimum: int = 2, scores: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, validation) row indices; the validation part has at least ``minimum`` rows
    when ``n`` allows, and both parts are non-empty (with ``n == 1`` the row is used for both).

    With ``scores`` (n × agents, NaN: not logged), an agent whose scored rows all fell in the
    validation part has them trained on instead (else its head would learn nothing and score it at
    random); if that empties the validation part, it keeps those rows too."""
    if not 0 < fraction < 1:
        raise ConfigurationError(f"'validation_fraction' must be in (0, 1) (got {fraction!r})")
    order = np.random.default_rng(seed).permutation(n)
    if n < 2:
        return order, order
    n_val = min(n - 1, max(minimum, int(round(fraction * n))))
    fit, val = np.sort(order[n_val:]), np.sort(order[:n_val])
    if scores is None:
        return fit, val
    scored = ~np.isnan(np.asarray(scores, dtype=float))
    orphans = scored[val].any(axis=0) & ~scored[fit].any(axis=0)
    if not orphans.any():
        return fit, val
    moved = scored[val][:, orphans].any(axis=1)
    fit = np.sort(np.concatenate([fit, val[moved]]))
    return fit, (val[~moved] if not moved.all() else val)

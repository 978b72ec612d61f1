"""Stacking router: the existing routers' success predictions combined per agent on held-out rows.

Stacked generalisation (Wolpert, "Stacked generalization", Neural Networks 5, 1992; with the
non-negative weights of Breiman, "Stacked regressions", Machine Learning 24, 1996). For K base
routers with predictions ŝ_k(q, m) ∈ [0, 1], each agent m gets a logistic combiner

    ŝ(q, m) = σ(b_m + Σ_k w_mk · logit ŝ_k(q, m)),    w_mk ≥ 0,

fitted by (soft-label, importance-weighted) cross-entropy plus ``l2``·(‖w_m − 1/K‖² + b_m²), with
``l2`` chosen by 5-fold cross-validation of the combiner (with little data it picks a strong pull:
the average of the base logits). Honesty: the training table is cut into seeded folds (or, with
``folds=1``, one :func:`~agentroute.routers.utility.validation_split`); each fold's rows are
predicted by bases fitted on the other rows, these out-of-fold predictions fit the combiner
(Wolpert's cross-validated level-1 data), and the bases are then refitted on the whole training
table for serving. No test row is seen. Five folds beat one 25% split in cross-entropy on held-out
*train* rows of RouterBench, dcrouter and RouteLLM MMLU, at five times the base fits. The predicted
cost is the per-task base's when it is among the bases, else each agent's mean training cost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from agentroute._optional import require
from agentroute.errors import ConfigurationError
from agentroute.outcomes import OutcomeTable
from agentroute.routers.base import Router, _jsonable, check_range, get_router_class, make_router, register
from agentroute.routers.logreg import sigmoid
from agentroute.routers.utility import UtilityRouter, validation_split
from agentroute.types import RouteContext

DEFAULT_BASES = ("per-task", "knn", "logreg", "mlp", "mf")
#: The pulls toward the prior among which ``l2=None`` chooses by cross-validation of the combiner.
L2_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0)
_EPS = 1e-4


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def fit_combiner(z: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Non-negative logistic stacking of one agent: base logits ``z`` (n × K), targets ``y`` in
    [0, 1] (soft labels), sample weights ``w`` (n) → (weights K, bias), penalised by
    ``l2``·(‖weights − 1/K‖² + bias²). Fewer than two distinct targets: the prior (1/K each, bias 0)."""
    k = z.shape[1]
    prior = np.full(k, 1.0 / k)
    if len(y) < 2 or np.min(y) == np.max(y):
        return prior, 0.0
    optimize = require("scipy.optimize")
    anchor = np.concatenate([prior, [0.0]])

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        u = z @ theta[:k] + theta[k]
        ce = np.logaddexp(0.0, u) - y * u  # soft-label cross-entropy of σ(u), stably
        g = w * (sigmoid(u) - y)
        d = theta - anchor
        return float(w @ ce + l2 * d @ d), np.concatenate([z.T @ g, [g.sum()]]) + 2 * l2 * d

    bounds = [(0.0, None)] * k + [(None, None)]
    res = optimize.minimize(loss, anchor, jac=True, method="L-BFGS-B", bounds=bounds)
    return np.asarray(res.x[:k], dtype=float), float(res.x[k])


def fit_combiners(z: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`fit_combiner` per agent: ``z`` (n × m × K), ``y`` and ``w`` (n × m; nan ``y`` = not
    logged) → (weights m × K, biases m). ``l2`` is in units of an average row's weight."""
    m, k = z.shape[1], z.shape[2]
    weight, bias = np.zeros((m, k)), np.zeros(m)
    for j in range(m):
        rows = np.flatnonzero(~np.isnan(y[:, j]))
        scale = float(w[rows, j].mean()) if len(rows) else 1.0
        weight[j], bias[j] = fit_combiner(z[rows, j], y[rows, j], w[rows, j], l2 * scale)
    return weight, bias


def stacked(z: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """σ(b_m + Σ_k w_mk·z_nmk): (n × m × K) logits → (n × m) probabilities."""
    return sigmoid(np.einsum("nmk,mk->nm", z, weight) + bias)


def choose_l2(z: np.ndarray, y: np.ndarray, w: np.ndarray, seed: int, folds: int = 5) -> float:
    """The value of :data:`L2_GRID` with the least ``folds``-fold cross-validated cross-entropy of
    :func:`fit_combiners` on the held-out rows (ties: the stronger pull)."""
    fold = np.random.default_rng(seed).permutation(len(y)) % folds
    logged = ~np.isnan(y)
    best, best_loss = L2_GRID[-1], np.inf
    for l2 in sorted(L2_GRID, reverse=True):
        total = 0.0
        for f in range(folds):
            out = fold == f
            if out.all() or not out.any():
                continue
            weight, bias = fit_combiners(z[~out], y[~out], w[~out], l2)
            cell = logged[out]
            total += (
                cross_entropy(stacked(z[out], weight, bias)[cell], y[out][cell], w[out][cell])
                * w[out][cell].sum()
            )
        if total < best_loss - 1e-12:
            best, best_loss = l2, total
    return best


def cross_entropy(p: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """Weighted mean (soft-label) cross-entropy of predictions ``p`` against ``y``."""
    p = np.clip(p, _EPS, 1 - _EPS)
    return float(w @ -(y * np.log(p) + (1 - y) * np.log(1 - p)) / max(w.sum(), 1e-12))


@register
class StackRouter(UtilityRouter):
    """Per-agent non-negative logistic stacking of base routers (module docstring).

    Args:
        cost_weight: λ in ŝ − λ·ĉ/c_scale (the knob).
        bases: base routers: registered names of utility routers (a list, or one comma-separated
            string), or unfitted :class:`UtilityRouter` instances used as templates.
        base_params: keyword parameters per base name, e.g. ``{"knn": {"k": 20}}``.
        folds: the combiner is fitted on out-of-fold predictions of ``folds`` seeded folds of train;
            ``1``: on one validation split of ``validation_fraction`` of train (seeded).
        validation_fraction: share of train held out when ``folds=1``.
        l2: strength of the pull of each agent's weights toward 1/K and its bias toward 0, in units
            of an average held-out row; ``None``: chosen from :data:`L2_GRID` by 5-fold
            cross-validation on the held-out rows.
        seed: seeds the split; passed to the bases that take a seed.

    Fitted attributes: ``bases_`` (base routers fitted on all of train), ``weight_`` (m × K),
    ``bias_`` (m), ``l2_`` (the pull used), ``validation_loss_`` (cross-entropy of each base's
    held-out predictions, and of the stack's — in-sample for its combiner, which was fitted on them).
    """

    name = "stack"

    def __init__(
        self,
        *,
        cost_weight: float = 0.0,
        bases: str | Sequence[str | Router] = DEFAULT_BASES,
        base_params: dict[str, dict[str, Any]] | None = None,
        folds: int = 5,
        validation_fraction: float = 0.25,
        l2: float | None = None,
        seed: int = 0,
    ):
        self.cost_weight = cost_weight
        self.bases = bases
        self.base_params = base_params
        self.folds = folds
        self.validation_fraction = validation_fraction
        self.l2 = l2
        self.seed = seed

    def _templates(self) -> list[str | Router]:
        bases = self.bases.split(",") if isinstance(self.bases, str) else list(self.bases)
        return [b.strip() if isinstance(b, str) else b for b in bases]

    def _param_checks(self) -> dict[str, Callable[[], None]]:
        def bases() -> None:
            if not self._templates():
                raise ConfigurationError("stack: 'bases' names no router")
            try:
                for template in self._templates():
                    if isinstance(template, str):
                        get_router_class(template)  # an unknown name lists the registered routers
            except ConfigurationError as exc:
                raise ConfigurationError(f"stack: 'bases': {exc}") from None

        def base_params() -> None:
            try:
                for base, params in (self.base_params or {}).items():
                    get_router_class(base).check_params(params)
            except ConfigurationError as exc:
                raise ConfigurationError(f"stack: 'base_params': {exc}") from None

        return {
            **super()._param_checks(),
            "bases": bases,
            "base_params": base_params,
            "folds": partial(check_range, self, "folds", low=1, integer=True),
            "validation_fraction": partial(
                check_range, self, "validation_fraction", low=0, high=1, low_open=True, high_open=True
            ),
            "l2": partial(check_range, self, "l2", low=0, optional=True),
        }

    def _new_base(self, template: str | Router, params: dict[str, Any] | None = None) -> UtilityRouter:
        """An unfitted base from a template; ``params`` (saved ones, at load) replace the defaults."""
        if isinstance(template, Router):
            router: Router = type(template)(**template.get_params())
        else:
            if params is None:
                params = dict((self.base_params or {}).get(template, {}))
                if "seed" in get_router_class(template)._param_names():
                    params.setdefault("seed", self.seed)
            router = make_router(template, **params)
        if not isinstance(router, UtilityRouter) or router.name == self.name:
            raise ConfigurationError(
                f"stack: base {router.name!r} is not a utility router (score predictions)"
            )
        return router

    def base_names(self) -> list[str]:
        return (
            [b.name for b in self.bases_]
            if hasattr(self, "bases_")
            else [t if isinstance(t, str) else t.name for t in self._templates()]
        )

    # -- learning ---------------------------------------------------------------------------------
    def held_out_parts(self, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """(fit rows, held-out rows) per part: ``folds`` seeded folds, or with ``folds=1`` (or fewer
        than two rows) one :func:`~agentroute.routers.utility.validation_split`."""
        folds = min(int(self.folds), n)
        if folds < 2:
            return [validation_split(n, self.validation_fraction, self.seed)]
        fold = np.random.default_rng(self.seed).permutation(n) % folds
        return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(folds)]

    def _fit_table(self, table: OutcomeTable) -> None:
        templates = self._templates()
        z_all = np.full((len(table), len(self.columns_), len(templates)), np.nan)
        for fit_rows, out in self.held_out_parts(len(table)):
            ctxs = [RouteContext(query=table.queries[i], candidates=[]) for i in out]
            for k, template in enumerate(templates):
                base = self._new_base(template).fit(table.rows(fit_rows))
                z_all[out, :, k] = logit(base._predict_columns(ctxs)[0])
        val = np.flatnonzero(~np.isnan(z_all[:, 0, 0]))
        held_out, z_val = table.rows(val), z_all[val]  # n_val × m × K
        y_val, w_val = np.clip(held_out.scores, 0.0, 1.0), held_out.weights
        self.l2_ = choose_l2(z_val, y_val, w_val, self.seed) if self.l2 is None else float(self.l2)
        self.weight_, self.bias_ = fit_combiners(z_val, y_val, w_val, self.l2_)
        logged = ~np.isnan(y_val)
        p = [sigmoid(z_val[..., i]) for i in range(z_val.shape[2])]
        p.append(stacked(z_val, self.weight_, self.bias_))
        names = [t if isinstance(t, str) else t.name for t in templates]
        self.validation_loss_ = {
            name: cross_entropy(q[logged], y_val[logged], w_val[logged])
            for name, q in zip([*names, "stack"], p, strict=True)
        }
        self.bases_ = [self._new_base(t).fit(table) for t in templates]

    # -- prediction -------------------------------------------------------------------------------
    def _predict_columns(self, ctxs: Sequence[RouteContext]) -> tuple[np.ndarray, np.ndarray]:
        preds = [b._predict_columns(ctxs) for b in self.bases_]
        score = stacked(np.stack([logit(s) for s, _ in preds], axis=2), self.weight_, self.bias_)
        names = self.base_names()
        cost = (
            preds[names.index("per-task")][1]
            if "per-task" in names
            else np.tile(self.cost_mean_, (len(ctxs), 1))
        )
        return score, cost

    def fit_summary(self) -> str:
        self.check_fitted()
        losses = ", ".join(f"{k} {v:.4f}" for k, v in self.validation_loss_.items())
        return f"{super().fit_summary()}; l2 {self.l2_:g}; validation cross-entropy: {losses}"

    # -- persistence: each base as (name, params, state) + its arrays under "base{i}__" -----------
    def get_state(self) -> dict[str, Any]:
        return {
            **super().get_state(),
            "validation_loss": self.validation_loss_,
            "l2": self.l2_,
            "bases": [
                {"name": b.name, "params": _jsonable(b.get_params()), "state": b.get_state()}
                for b in self.bases_
            ],
        }

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.validation_loss_ = {str(k): float(v) for k, v in state["validation_loss"].items()}
        self.l2_ = float(state["l2"])
        self.bases_ = []
        for entry in state["bases"]:
            base = self._new_base(entry["name"], entry["params"])
            base.set_state(entry["state"])
            base.fitted_ = True
            self.bases_.append(base)

    def get_arrays(self) -> dict[str, np.ndarray]:
        arrays = {**super().get_arrays(), "weight": self.weight_, "bias": self.bias_}
        for i, base in enumerate(self.bases_):
            arrays.update({f"base{i}__{k}": v for k, v in base.get_arrays().items()})
        return arrays

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        super().set_arrays(arrays)
        self.weight_ = np.asarray(arrays["weight"], dtype=float)
        self.bias_ = np.asarray(arrays["bias"], dtype=float)
        for i, base in enumerate(self.bases_):
            prefix = f"base{i}__"
            base.set_arrays({k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)})

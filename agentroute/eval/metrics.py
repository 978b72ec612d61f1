"""Cost–quality metrics of routers on logged outcomes.

A router swept over its knob gives points ``(mean cost per query, mean quality)``; arrays of
points are ``(n, 2)`` with columns cost, quality.

**The hull convention (fixed).** Any two operating points can be mixed at random per query, so
every point on the segment between them is reachable, and spending more than needed buys nothing:
a router's curve ``R(c)`` is the *non-decreasing upper convex hull* of its sweep points, flat
above its best point (RouterBench, Hu et al., arXiv 2403.12031, §3.2; its zero router is the same
hull over the single models). For **AIQ** the hull also includes the cheapest single model's point
(the "anchor": a deployment can always send everything there), so below the router's cheapest
point the curve runs linearly from the anchor instead of counting as 0; a router dominated by the
cheapest model therefore scores that model's accuracy. The per-cost figures (quality at a cost,
cost to reach a quality, oracle gap closed) use the router's own hull, without the anchor.

**Which cheapest model anchors (fixed).** When several models tie for the cheapest mean cost
(within a relative 1e-9), the anchor is the tied model **the router actually uses**: the one it
chooses most often over its sweep, or — when it never chooses any of them — the *worst* of them
(``anchor_index``). A router is never credited for a cheap model it does not pick. The older
convention (the best of the tied models, ``anchor="best"``) is still computed by the harness as
``aiq_best_anchor``; without a tie the two are equal. The zero router's hull holds every single
model, so its AIQ is the same under both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agentroute.errors import ConfigurationError

ArrayLike = np.ndarray | Sequence[Sequence[float]]


# -- basics ------------------------------------------------------------------------------------------
def accuracy(scores: ArrayLike) -> float:
    """Mean score, ignoring nothing: missing outcomes must be dropped before (never scored 0).

    >>> accuracy([1, 0, 1, 1])
    0.75
    """
    values = np.asarray(scores, dtype=float)
    if np.isnan(values).any():
        raise ConfigurationError("scores contain nan: drop missing outcomes before scoring")
    return float(values.mean())


def mean_cost(costs: ArrayLike) -> float:
    """Mean cost per query (USD).

    >>> mean_cost([0.001, 0.003])
    0.002
    """
    return float(np.mean(np.asarray(costs, dtype=float)))


def single_model_points(scores: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """(cost, accuracy) of always choosing each model: one row per model column.

    >>> single_model_points(np.array([[1, 0], [0, 0]]), np.array([[1, 3], [1, 3]])).tolist()
    [[1.0, 0.5], [3.0, 0.0]]
    """
    return np.column_stack([np.mean(costs, axis=0), np.mean(scores, axis=0)]).astype(float)


def oracle_choice(scores: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """Per query, the model with the best score, the cheapest among ties.

    >>> oracle_choice(np.array([[1, 1, 0], [0, 0, 1]]), np.array([[3, 2, 1], [1, 2, 3]])).tolist()
    [1, 2]
    """
    best = scores.max(axis=1, keepdims=True)
    masked = np.where(scores == best, costs, np.inf)
    return masked.argmin(axis=1)


def oracle(scores: np.ndarray, costs: np.ndarray) -> tuple[float, float]:
    """(accuracy, mean cost) of the oracle: best score per query, cheapest among ties.

    >>> oracle(np.array([[1, 1, 0], [0, 0, 1]]), np.array([[3, 2, 1], [1, 2, 3]]))
    (1.0, 2.5)
    """
    pick = oracle_choice(scores, costs)
    rows = np.arange(len(pick))
    return float(scores[rows, pick].mean()), float(costs[rows, pick].mean())


# -- frontiers ---------------------------------------------------------------------------------------
def _points(points: ArrayLike) -> np.ndarray:
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    if len(pts) == 0:
        raise ConfigurationError("no (cost, quality) points")
    if not np.isfinite(pts).all():
        raise ConfigurationError(
            f"non-finite (cost, quality) points: {pts[~np.isfinite(pts).all(axis=1)].tolist()}"
        )
    return pts


def pareto_frontier(points: ArrayLike) -> np.ndarray:
    """The points no other point beats on both cost (lower) and quality (higher), by cost.

    >>> pareto_frontier([[1, 0.5], [2, 0.4], [3, 0.9], [3, 0.8]]).tolist()
    [[1.0, 0.5], [3.0, 0.9]]
    """
    pts = _points(points)
    pts = pts[np.lexsort((-pts[:, 1], pts[:, 0]))]  # by cost, best quality first among equal costs
    keep, best = [], -np.inf
    for cost, quality in pts:
        if quality > best:
            keep.append((cost, quality))
            best = quality
    return np.array(keep)


def nondecreasing_hull(points: ArrayLike) -> np.ndarray:
    """The upper convex hull from the cheapest point up to the best one (RouterBench's R̃).

    Non-decreasing by construction: points past the best quality, and points under a segment
    between two others, are dropped.

    >>> nondecreasing_hull([[0, 0], [1, 0.9], [2, 0.95], [3, 0.5], [1, 0.2]]).tolist()
    [[0.0, 0.0], [1.0, 0.9], [2.0, 0.95]]
    >>> nondecreasing_hull([[0, 0], [1, 0.2], [2, 1.0]]).tolist()  # (1, 0.2) lies under the chord
    [[0.0, 0.0], [2.0, 1.0]]
    """
    frontier = pareto_frontier(points)
    hull: list[np.ndarray] = []
    for p in frontier:
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], p) >= 0:
            hull.pop()
        hull.append(p)
    return np.array(hull)


def _cross(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    """> 0 when a → b → c turns left (b lies under the chord a–c on an upper hull)."""
    return float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))


def zero_router(single_points: ArrayLike) -> np.ndarray:
    """The "zero router": the non-decreasing convex hull of the single models (RouterBench §3.2),
    i.e. the best one can do by mixing fixed models at random without looking at the query."""
    return nondecreasing_hull(single_points)


@dataclass(frozen=True)
class Curve:
    """A router's achievable curve ``R(c)`` under the module's hull convention.

    Args:
        points: the router's (cost, quality) points.
        anchor: the cheapest single model's (cost, quality), always reachable.
    """

    hull: np.ndarray

    @classmethod
    def of(cls, points: ArrayLike, anchor: Sequence[float] | np.ndarray | None = None) -> Curve:
        pts = _points(points)
        if anchor is not None:
            pts = np.vstack([pts, np.asarray(anchor, dtype=float).reshape(1, 2)])
        return cls(nondecreasing_hull(pts))

    def __call__(self, cost: float | np.ndarray) -> np.ndarray:
        """R(c); ``nan`` below the curve's cheapest point (unreachable)."""
        c = np.asarray(cost, dtype=float)
        value = np.interp(c, self.hull[:, 0], self.hull[:, 1])
        return np.where(c < self.hull[0, 0] - 1e-15, np.nan, value)

    @property
    def max_quality(self) -> float:
        return float(self.hull[-1, 1])

    def area(self, c_min: float, c_max: float) -> float:
        """∫ R(c) dc over [c_min, c_max], exactly (R is piecewise linear)."""
        inside = self.hull[(self.hull[:, 0] > c_min) & (self.hull[:, 0] < c_max), 0]
        grid = np.concatenate([[c_min], inside, [c_max]])
        return float(np.trapezoid(self(grid), grid))

    def cost_to_reach(self, quality: float) -> float | None:
        """The least cost at which R(c) ≥ ``quality`` (``None`` when never reached)."""
        h = self.hull
        if h[-1, 1] < quality - 1e-12:
            return None
        k = int(np.argmax(h[:, 1] >= quality - 1e-12))
        if k == 0:
            return float(h[0, 0])
        (c0, q0), (c1, q1) = h[k - 1], h[k]
        return float(c0 + (quality - q0) * (c1 - c0) / (q1 - q0))


# -- RouterBench ---------------------------------------------------------------------------------------
def cheapest_models(single_points: ArrayLike, rtol: float = 1e-9) -> np.ndarray:
    """Indices of the models tied for the cheapest mean cost (within ``rtol``).

    >>> cheapest_models([[1.0, 0.5], [1.0, 0.7], [2.0, 0.9]]).tolist()
    [0, 1]
    """
    single = _points(single_points)
    low = float(single[:, 0].min())
    return np.flatnonzero(single[:, 0] <= low + rtol * max(abs(low), 1e-300))


def anchor_index(single_points: ArrayLike, choices: np.ndarray | None = None) -> int:
    """The model that anchors a router's AIQ (module docstring): among the models tied for the
    cheapest cost, the one the router chooses most often in ``choices`` (model column per sweep
    point and query, any shape), else the worst of them; without ``choices``, the best of them.

    >>> anchor_index([[1, 0.5], [1, 0.7], [2, 0.9]], np.array([[0, 2, 2]]))
    0
    >>> anchor_index([[1, 0.5], [1, 0.7], [2, 0.9]], np.array([[2, 2]]))  # never uses them: the worst
    0
    >>> anchor_index([[1, 0.5], [1, 0.7], [2, 0.9]])
    1
    """
    single = _points(single_points)
    tied = cheapest_models(single)
    if choices is None:
        return int(tied[np.argmax(single[tied, 1])])
    counts = np.array([np.sum(np.asarray(choices) == t) for t in tied])
    if counts.max() > 0:
        return int(tied[np.argmax(counts)])
    return int(tied[np.argmin(single[tied, 1])])


def aiq(points: ArrayLike, single_points: ArrayLike, anchor: int | None = None) -> float:
    """Average Improvement in Quality (RouterBench, arXiv 2403.12031, eq. 5).

    ``AIQ = ∫ R(c) dc / (c_max − c_min)`` over the single models' cost range ``[c_min, c_max]``,
    where ``R`` is the router's non-decreasing convex hull anchored at the cheapest single model
    (module docstring): linear from that anchor below the router's cheapest point, flat above its
    best point. The zero router's AIQ is ``aiq(single_points, single_points)``. ``anchor`` is the
    row of ``single_points`` that anchors (default: the best of the models tied for cheapest; the
    harness passes :func:`anchor_index` of the router's choices).

    >>> singles = [[1, 0.5], [3, 0.9]]
    >>> aiq(singles, singles)  # the chord from (1, .5) to (3, .9): mean .7
    0.7
    >>> aiq([[2, 0.9]], singles)  # (1,.5)→(2,.9) then flat: (.7·1 + .9·1) / 2
    0.8
    """
    single = _points(single_points)
    c_min, c_max = float(single[:, 0].min()), float(single[:, 0].max())
    curve = Curve.of(points, anchor=_cheapest(single) if anchor is None else single[anchor])
    if c_max <= c_min:
        return float(curve(c_min))
    return curve.area(c_min, c_max) / (c_max - c_min)


def _cheapest(single: np.ndarray) -> np.ndarray:
    cheapest = single[single[:, 0] == single[:, 0].min()]
    return cheapest[np.argmax(cheapest[:, 1])]


def quality_at_cost(
    points: ArrayLike, cost: float, anchor: Sequence[float] | np.ndarray | None = None
) -> float:
    """R(cost): the best mean quality the router reaches for at most ``cost`` per query, mixing its
    own knob settings (its non-decreasing hull, flat above its best point); ``nan`` below its
    cheapest point. With ``anchor`` (the cheapest single model) the curve is AIQ's anchored hull.

    >>> quality_at_cost([[1, 0.5], [3, 1.0]], 2.0)
    0.75
    >>> quality_at_cost([[2, 0.9]], 1.5, anchor=[1, 0.5])
    0.7
    """
    return float(Curve.of(points, anchor=anchor)(cost))


def cost_to_reach(
    points: ArrayLike, quality: float, anchor: Sequence[float] | np.ndarray | None = None
) -> float | None:
    """Least mean cost at which the router's hull reaches ``quality`` (``None``: never).

    >>> cost_to_reach([[1, 0.5], [3, 1.0]], 0.75)
    2.0
    >>> cost_to_reach([[1, 0.5], [3, 1.0]], 1.1) is None
    True
    """
    return Curve.of(points, anchor=anchor).cost_to_reach(quality)


def best_single(single_points: ArrayLike) -> np.ndarray:
    """The best single model's (cost, accuracy): highest accuracy, cheapest among ties."""
    single = _points(single_points)
    top = single[single[:, 1] == single[:, 1].max()]
    return top[np.argmin(top[:, 0])]


def oracle_gap_closed(points: ArrayLike, single_points: ArrayLike, oracle_quality: float) -> float:
    """Share of the gap between the best single model and the oracle that the router closes at the
    best single model's cost: ``(R(c_best) − q_best) / (q_oracle − q_best)`` with ``R`` as in
    :func:`quality_at_cost` (negative: worse than the best model; ``nan`` if it cannot spend so little).

    >>> round(oracle_gap_closed([[2, 0.95]], [[1, 0.5], [3, 0.9]], 1.0), 6)
    0.5
    """
    c_best, q_best = best_single(single_points)
    gap = oracle_quality - q_best
    if gap <= 0:
        return float("nan")
    return float((quality_at_cost(points, c_best) - q_best) / gap)


# -- RouteLLM ----------------------------------------------------------------------------------------
def pgr_curve(strong_share: ArrayLike, quality: ArrayLike, q_weak: float, q_strong: float) -> np.ndarray:
    """(share of calls to the strong model, performance gap recovered) sorted by share, with the
    all-weak (0, 0) and all-strong (1, 1) end points added (RouteLLM, arXiv 2406.18665, §5).

    ``PGR = (q − q_weak) / (q_strong − q_weak)``.

    >>> pgr_curve([0.5], [0.75], 0.5, 1.0).tolist()
    [[0.0, 0.0], [0.5, 0.5], [1.0, 1.0]]
    """
    if q_strong == q_weak:
        raise ConfigurationError(f"PGR undefined: strong and weak models score the same ({q_strong})")
    share = np.asarray(strong_share, dtype=float)
    pgr = (np.asarray(quality, dtype=float) - q_weak) / (q_strong - q_weak)
    pts = np.vstack([[0.0, 0.0], np.column_stack([share, pgr]), [1.0, 1.0]])
    best: dict[float, float] = {}  # one point per share: the best PGR
    for s, g in pts:
        best[float(s)] = max(best.get(float(s), -np.inf), float(g))
    return np.array(sorted(best.items()))


def apgr(strong_share: ArrayLike, quality: ArrayLike, q_weak: float, q_strong: float) -> float:
    """Average Performance Gap Recovered (RouteLLM, arXiv 2406.18665, eq. 3): the area under the
    router's PGR against the share of strong-model calls on [0, 1], linearly interpolated between
    its sweep points and the all-weak/all-strong end points. A random router scores 0.5.

    >>> apgr([0.5], [0.75], 0.5, 1.0)
    0.5
    >>> apgr([0.2], [0.9], 0.5, 1.0)  # (0,0)→(.2,.8)→(1,1): .08 + .72
    0.8
    """
    curve = pgr_curve(strong_share, quality, q_weak, q_strong)
    return float(np.trapezoid(curve[:, 1], curve[:, 0]))


def cpt(
    strong_share: ArrayLike, quality: ArrayLike, q_weak: float, q_strong: float, target: float = 0.5
) -> float:
    """Call-Performance Threshold (RouteLLM §5): the least share of strong-model calls at which the
    PGR reaches ``target`` (e.g. 0.5 for CPT(50%)), on the router's running-best PGR curve.

    >>> round(cpt([0.2, 0.6], [0.6, 0.95], 0.5, 1.0, target=0.5), 4)  # .2 + (.5−.2)/(.9−.2)·.4
    0.3714
    """
    curve = pgr_curve(strong_share, quality, q_weak, q_strong)
    share, pgr = curve[:, 0], np.maximum.accumulate(curve[:, 1])
    k = int(np.argmax(pgr >= target - 1e-12))
    if k == 0:
        return float(share[0])
    s0, s1, g0, g1 = share[k - 1], share[k], pgr[k - 1], pgr[k]
    return float(s0 + (target - g0) * (s1 - s0) / (g1 - g0))


# -- uncertainty ---------------------------------------------------------------------------------------
#: The bootstrap intervals :func:`bootstrap_aiq_difference` gives (see there).
INTERVALS = ("percentile", "basic")
#: The interval reported unless asked otherwise: ``basic``, since the percentile interval keeps the
#: hull's optimism (see :func:`bootstrap_aiq_difference`).
DEFAULT_INTERVAL = "basic"


def min_resamples(level: float) -> int:
    """The fewest bootstrap resamples a ``level`` interval can use: each tail then holds at least
    one draw (20 at 90%, 40 at 95%). With fewer, the bounds are the extreme draws or between them:
    an interval narrower than the spread, a confident figure from a handful of draws."""
    return math.ceil(
        2 / (1 - float(level)) * (1 - 1e-4)
    )  # 1e-4: 0.9 or a float32 0.8 is 20 or 10, not one more


def check_bootstrap(n_boot: int, level: float, interval: str) -> None:
    """Refuse bootstrap settings that cannot give the interval asked for (``n_boot`` 0: none)."""
    if isinstance(level, bool) or not isinstance(level, int | float | np.floating) or not 0 < level < 1:
        raise ConfigurationError(f"level must be a coverage in (0, 1), e.g. 0.9 for 90% (got {level!r})")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 0:
        raise ConfigurationError(
            f"n_boot must be a whole number of resamples ≥ 0, 0 for none (got {n_boot!r})"
        )
    if 0 < n_boot < min_resamples(level):
        raise ConfigurationError(
            f"n_boot {n_boot} is too few for a {100 * level:g}% interval: at least {min_resamples(level)} "
            "(each tail needs one resample), 0 for none"
        )
    if interval not in INTERVALS:
        raise ConfigurationError(f"interval must be one of {list(INTERVALS)} (got {interval!r})")


def bootstrap_aiq_difference(
    a: tuple[np.ndarray, np.ndarray],
    b: tuple[np.ndarray, np.ndarray] | None,
    single: tuple[np.ndarray, np.ndarray],
    *,
    n_boot: int = 1000,
    level: float = 0.9,
    seed: int = 0,
    anchor_a: int | None = None,
    anchor_b: int | None = None,
    interval: str = DEFAULT_INTERVAL,
) -> tuple[float, float, float]:
    """Paired bootstrap of ``AIQ(a) − AIQ(b)`` over queries: (difference, low, high).

    Each of ``a`` and ``b`` is ``(scores, costs)`` of shape (n_points, n_queries): the chosen
    model's outcome per sweep point and query; ``b=None`` compares with the zero router.
    ``single`` is ``(scores, costs)`` of shape (n_queries, n_models). Every resample draws the
    same queries for both routers and the singles. ``anchor_a``/``anchor_b``: the single-model
    column anchoring each AIQ (:func:`anchor_index`; default the best of the tied cheapest).
    ROUTERS.md §8: about ±0.010 AIQ (90%) on the RouterBench subset, ±0.022 on dcrouter's 500
    test queries.

    ``interval``: ``"basic"`` (the default) or ``"percentile"`` (the draws' quantiles). Basic is the reflected
    interval ``[2d − q_high, 2d − q_low]`` (Davison & Hinkley, *Bootstrap Methods and their
    Application*, 1997, §5.2). A router's AIQ takes the upper hull of its sweep points on the same
    test queries, so it sits above the router's true curve by about those points' noise, and the
    hull of a resample sits above again: the percentile interval inherits that optimism, the basic
    one subtracts the bootstrap's estimate of it. Against the zero router, on 3,000 queries of
    random outcomes, a 48-point router that knows nothing got a percentile interval above 0 in 15 of
    30 draws, a basic one in 0 (``tests/test_own_log_files.py``). The difference ``d`` is the
    plain AIQ(a) − AIQ(b) either way; where the optimism is large, it lies above a basic interval.
    """
    check_bootstrap(n_boot, level, interval)
    rng = np.random.default_rng(seed)
    n = single[0].shape[0]

    def diff(idx: np.ndarray) -> float:
        singles = single_model_points(single[0][idx], single[1][idx])
        pa = np.column_stack([a[1][:, idx].mean(1), a[0][:, idx].mean(1)])
        if b is None:
            return aiq(pa, singles, anchor_a) - aiq(singles, singles)
        pb = np.column_stack([b[1][:, idx].mean(1), b[0][:, idx].mean(1)])
        return aiq(pa, singles, anchor_a) - aiq(pb, singles, anchor_b)

    full = diff(np.arange(n))
    draws = np.array([diff(np.asarray(rng.integers(0, n, size=n))) for _ in range(n_boot)])
    tail = (1 - level) / 2
    draw_low, draw_high = np.quantile(draws, [tail, 1 - tail])
    if interval == "basic":
        return full, float(2 * full - draw_high), float(2 * full - draw_low)
    return full, float(draw_low), float(draw_high)


# -- calibration of predicted success probabilities -------------------------------------------------
def reliability(pred: ArrayLike, outcome: ArrayLike, bins: int = 10) -> dict[str, np.ndarray | float]:
    """Reliability table of predicted success probabilities against outcomes in [0, 1] (nan cells
    dropped): equal-width bins of the prediction, each with its mean prediction, mean outcome and
    count; ``ece`` (expected calibration error: the count-weighted mean |outcome − prediction| over
    bins; Naeini et al., AAAI 2015) and ``brier`` (mean squared error; Brier, 1950).

    >>> r = reliability([0.1, 0.1, 0.9, 0.9], [0, 0, 1, 1], bins=2)
    >>> round(float(r["ece"]), 3), round(float(r["brier"]), 3), r["count"].tolist()
    (0.1, 0.01, [2, 2])
    """
    p, y = np.asarray(pred, dtype=float).ravel(), np.asarray(outcome, dtype=float).ravel()
    if len(p) != len(y):
        raise ConfigurationError(
            f"reliability: {len(p)} predictions but {len(y)} outcomes; give one outcome per prediction"
        )
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise ConfigurationError(f"reliability: bins must be a whole number ≥ 1 (got {bins!r})")
    keep = ~(np.isnan(p) | np.isnan(y))
    p, y = np.clip(p[keep], 0.0, 1.0), y[keep]
    idx = np.minimum((p * bins).astype(int), bins - 1)
    count = np.bincount(idx, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pred = np.bincount(idx, weights=p, minlength=bins) / count
        mean_out = np.bincount(idx, weights=y, minlength=bins) / count
    filled = count > 0
    ece = float(np.sum(count[filled] * np.abs(mean_out[filled] - mean_pred[filled])) / max(1, count.sum()))
    brier = float(np.mean((p - y) ** 2)) if len(p) else float("nan")
    return {"mean_pred": mean_pred, "mean_outcome": mean_out, "count": count, "ece": ece, "brier": brier}

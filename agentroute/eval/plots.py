"""Cost–quality plot of an evaluation: every router's curve, the single models, the zero router, the oracle.

Drawn with matplotlib's object API on an Agg canvas (no pyplot state, no display needed).
Curves are the routers' anchored non-decreasing hulls (:mod:`agentroute.eval.metrics`), sampled
densely so that the linear-in-cost interpolation reads correctly on the log-cost axis; the
router's own sweep points are drawn as small markers on top.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from agentroute._optional import require
from agentroute.eval import metrics as M
from agentroute.eval.results import EvalResult, RouterResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_curves(result: EvalResult, path: str | Path, *, title: str | None = None, dpi: int = 130) -> Path:
    """Write a PNG of the cost–quality curves of ``result`` to ``path``; returns the path."""
    return save_figure(curves_figure(result, title=title), path, dpi=dpi)


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 130) -> Path:
    """Save ``fig`` to ``path`` (format from its suffix, PNG without one), written aside and moved in
    last: an interrupted save leaves the file there before as it was, never a cut-short image."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.partial")
    try:
        fig.savefig(staged, dpi=dpi, format=path.suffix.lstrip(".").lower() or "png")
        staged.replace(path)
    finally:
        staged.unlink(missing_ok=True)
    return path


def curves_figure(result: EvalResult, *, title: str | None = None) -> Figure:
    """The cost–quality figure of ``result`` (a matplotlib ``Figure``; a notebook shows it inline).

    Each router's curve starts from the single model anchoring its AIQ (``RouterResult.anchor``).
    Routers whose curves coincide are one line whose legend names them all (``a = b``): otherwise
    the last one drawn hides the others.
    """
    require("matplotlib")
    from agentroute.viz.figure import new_figure

    singles = np.array([[s.cost, s.accuracy] for s in result.single_models])
    cheapest = int(np.argmin(singles[:, 0]))
    ok = _distinct_curves([r for r in result.routers if r.curve])
    all_costs = np.concatenate(
        [singles[:, 0], [result.oracle.cost], *[np.array(r.curve)[:, 0] for _, r in ok]]
    )
    log, lo, hi, edge = _cost_axis(all_costs)

    def x(costs: ArrayLike) -> np.ndarray:  # a free point (cost 0) on a log axis: at its left edge
        return (
            np.where(np.asarray(costs, dtype=float) > 0, costs, edge)
            if log
            else np.asarray(costs, dtype=float)
        )

    fig = new_figure(10.5, 6.2, layout="constrained")  # shown inline by a notebook
    ax = fig.add_subplot()
    ax.set_xscale("log" if log else "linear")

    zero = M.Curve.of(singles)
    _draw_curve(
        ax,
        zero,
        lo,
        hi,
        color="k",
        ls=(0, (4, 3)),
        lw=1.3,
        zorder=3.5,  # above the routers' curves: a router equal to it still shows both
        label=f"zero router (AIQ {result.zero_router_aiq:.3f})",
    )
    ax.scatter(x(singles[:, 0]), singles[:, 1], s=30, c="0.25", marker="o", zorder=4, label="single models")
    for s in result.single_models:
        ax.annotate(_short(s.model), (float(x(s.cost)), s.accuracy), textcoords="offset points", xytext=(4, -9),
                    fontsize=7, color="0.3")  # fmt: skip
    ax.scatter(x([result.oracle.cost]), [result.oracle.accuracy], s=160, marker="*", c="gold", edgecolors="k",
               zorder=5, label=f"oracle ({result.oracle.accuracy:.3f})")  # fmt: skip

    for (color, style), (names, r) in zip(_styles(len(ok)), ok, strict=True):
        pts = np.array(r.curve)
        curve = M.Curve.of(pts, anchor=singles[cheapest if r.anchor is None else r.anchor])
        label = f"{names} (AIQ {r.aiq:.3f})" if r.aiq is not None else names
        _draw_curve(ax, curve, lo, hi, color=color, ls=style, lw=2.0, label=label)
        ax.scatter(x(pts[:, 0]), pts[:, 1], s=12, color=color, alpha=0.7, zorder=3)

    best = result.best_single
    ax.axhline(best.accuracy, color="0.7", lw=0.8, ls=":")
    ax.axvline(float(x(best.cost)), color="0.7", lw=0.8, ls=":")
    ax.set_xlim(lo, hi)
    ax.set_ylim(*_quality_limits(result))
    free = "; cost 0 drawn at the left edge" if log and (all_costs <= 0).any() else ""
    ax.set_xlabel(
        f"mean cost per query (USD, log scale{free})"
        if log
        else "mean cost per query (USD; every model logged at 0)"
    )
    ax.set_ylabel("mean quality (accuracy)")
    dropped = result.dropped_by_split.get("test", result.dropped_rows)
    ax.set_title(
        title or f"{result.dataset}: test split, {result.n_test} queries ({dropped} incomplete rows dropped)"
    )
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    failed = [r.name for r in result.routers if r.error]
    if failed:
        fig.text(0.01, 0.005, f"failed: {', '.join(failed)}", fontsize=7, color="firebrick")
    return fig


def _distinct_curves(routers: list[RouterResult]) -> list[tuple[str, RouterResult]]:
    """One entry per distinct (curve, anchor, AIQ): ``("a = b", a)`` for routers that coincide."""
    groups: list[tuple[list[str], RouterResult]] = []
    for r in routers:
        same = next(
            (g for g in groups if g[1].anchor == r.anchor and g[1].aiq == r.aiq
             and np.shape(g[1].curve) == np.shape(r.curve) and np.allclose(g[1].curve, r.curve, rtol=1e-9, atol=0)),
            None,
        )  # fmt: skip
        if same is None:
            groups.append(([r.name], r))
        else:
            same[0].append(r.name)
    return [(" = ".join(names), r) for names, r in groups]


def _cost_axis(costs: np.ndarray) -> tuple[bool, float, float, float]:
    """(log scale?, left, right, where a cost-0 point is drawn). Costs on a log axis; a free model
    (cost 0) among priced ones is drawn at a left edge below the cheapest priced point; every
    model free: a linear axis around 0."""
    positive = costs[costs > 0]
    if not positive.size:
        return False, -5e-8, 1e-6, 0.0
    low, hi = float(positive.min()), float(costs.max()) * 1.5
    if (costs <= 0).any():
        return True, low / 3, hi, low / 2
    return True, low / 1.5, hi, low


def _quality_limits(result: EvalResult) -> tuple[float, float]:
    """The quality axis: from just below the lowest single model or router point (a point at 0
    stays whole) to just above the oracle."""
    lowest = min([s.accuracy for s in result.single_models] + [q for r in result.routers for _, q in r.curve])
    return max(-0.02, lowest - 0.05), min(1.02, result.oracle.accuracy + 0.04)


def _draw_curve(ax, curve: M.Curve, lo: float, hi: float, **style) -> None:  # noqa: ANN001, ANN003
    start = max(lo, float(curve.hull[0, 0]))
    xs = np.geomspace(start, hi, 300) if start > 0 else np.linspace(start, hi, 300)
    ax.plot(xs, curve(xs), **style)


def _short(model: str) -> str:
    return model.rsplit("/", 1)[-1]


def _styles(n: int) -> list[tuple[object, object]]:
    """(colour, line style) per router: the ten tab10 colours, then again dashed, then dotted."""
    import matplotlib as mpl

    cmap = mpl.colormaps["tab10"]
    return [(cmap(i % 10), ("-", (0, (5, 2)), (0, (1, 1)))[min(2, i // 10)]) for i in range(n)]


def plot_reliability(
    curves: dict[str, dict],
    path: str | Path,
    *,
    title: str = "Reliability of predicted success",
    dpi: int = 130,
) -> Path:
    """Reliability diagram: one line per entry of ``curves`` (name → :func:`~agentroute.eval.
    metrics.reliability` output), mean outcome against mean prediction per bin, the diagonal for a
    calibrated model, ECE and Brier in the legend; below, the share of predictions per bin."""
    require("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 8.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax, hist = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="calibrated")
    for name, r in curves.items():
        filled = np.asarray(r["count"]) > 0
        line = ax.plot(np.asarray(r["mean_pred"])[filled], np.asarray(r["mean_outcome"])[filled], marker="o", ms=4,
                       label=f"{name} (ECE {r['ece']:.3f}, Brier {r['brier']:.3f})")  # fmt: skip
        bins = len(r["count"])
        centres = (np.arange(bins) + 0.5) / bins
        hist.plot(
            centres,
            np.asarray(r["count"]) / max(1, int(np.sum(r["count"]))),
            color=line[0].get_color(),
            marker=".",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("observed success rate")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    hist.set_xlabel("predicted success probability")
    hist.set_ylabel("share of predictions")
    return save_figure(fig, path, dpi=dpi)

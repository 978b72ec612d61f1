"""Drawings of an ant colony's pheromone matrices (the routing evidence of AMRO-S, arXiv 2603.12933).

Every function takes the JSON of :meth:`AntColonyRouter.export_pheromones` (so a saved colony can be
drawn without the router) and draws with matplotlib's object API on an Agg canvas. Each ``draw_*``
writes a PNG; its ``*_figure`` twin returns the figure, which a notebook shows inline:

- :func:`draw_heatmap` — one heatmap per task type: source node (``START`` or an agent of the
  previous layer) × target agent, colour = log₁₀ τᵗ, blank where no edge exists;
- :func:`draw_overview` — the specialists side by side: task type × agent, colour = the pheromone
  the agent receives from its previous layer (the mean over its incoming edges);
- :func:`draw_paths` — the layered path graph of one task type: layers left to right, edge width
  ∝ τᵗ (relative to the largest edge drawn), the strongest edge out of every node in red.

:func:`write_evidence` writes the JSON and all of them into a folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agentroute._optional import require

if TYPE_CHECKING:
    from agentroute.viz.figure import InlineFigure

START = "START"


def _figure(width: float, height: float) -> InlineFigure:
    require("matplotlib")
    from agentroute.viz.figure import new_figure

    return new_figure(width, height, layout="constrained")


def _save(fig: InlineFigure, path: str | Path, dpi: int) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    return path


def short(node: str, width: int = 28) -> str:
    """A readable label: ``stage/vendor/model`` → ``stage/model``, ellipsised.

    >>> short("solve/mistralai/mixtral-8x7b-chat")
    'solve/mixtral-8x7b-chat'
    """
    if node == START:
        return node
    stage, _, agent = node.partition("/")
    label = f"{stage}/{agent.rsplit('/', 1)[-1]}" if stage != "*" else agent.rsplit("/", 1)[-1]
    return label if len(label) <= width else label[: width - 1] + "…"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "task"


def _ordered_nodes(export: dict[str, Any]) -> list[str]:
    """Node ids layer by layer (path order), by name within a layer."""
    return [n for layer in export["layers"] for n in sorted(layer["nodes"])]


def _matrix(export: dict[str, Any], task: str) -> tuple[list[str], list[str], np.ndarray]:
    """τᵗ as a dense source × target matrix (rows/columns without an edge dropped), in path order."""
    targets = _ordered_nodes(export)
    sources = [START, *targets]
    m = np.full((len(sources), len(targets)), np.nan)
    si = {s: i for i, s in enumerate(sources)}
    ti = {t: i for i, t in enumerate(targets)}
    for e in export["edges"]:
        m[si[e["source"]], ti[e["target"]]] = e["tau"][task]
    rows = [i for i in range(len(sources)) if not np.isnan(m[i]).all()]
    cols = [j for j in range(len(targets)) if not np.isnan(m[:, j]).all()]
    return [sources[i] for i in rows], [targets[j] for j in cols], m[np.ix_(rows, cols)]


NO_EDGES = (
    "no pheromone yet: the colony has learned no path (it routes by its heuristic until tasks are observed)"
)


def _no_edges(fig: InlineFigure, title: str) -> InlineFigure:
    """An empty colony (untrained, ``warm_start=False``): say so instead of drawing empty axes."""
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, NO_EDGES, ha="center", va="center", wrap=True, fontsize=10, transform=ax.transAxes)
    ax.set_title(title, fontsize=10)
    return fig


def _log_range(m: np.ndarray) -> tuple[float, float]:
    """The colour range: the data's log₁₀ range (a flat matrix gets ±0.1)."""
    finite = np.log10(m[np.isfinite(m) & (m > 0)])
    if not finite.size:
        return -1.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    return (lo - 0.1, hi + 0.1) if hi - lo < 1e-6 else (lo, hi)


def draw_heatmap(export: dict[str, Any], task: str, path: str | Path, *, dpi: int = 120) -> Path:
    """Write :func:`heatmap_figure` to ``path`` (a PNG); returns the path."""
    return _save(heatmap_figure(export, task), path, dpi)


def heatmap_figure(export: dict[str, Any], task: str) -> InlineFigure:
    """Heatmap of τᵗ for one task type: source × target, colour = log₁₀ τ (blank: no edge)."""
    sources, targets, m = _matrix(export, task)
    lo, hi = _log_range(m)
    fig = _figure(max(6.0, 0.55 * len(targets) + 3.0), max(3.4, 0.42 * len(sources) + 2.6))
    title = f"pheromone τ, task type '{task}' ({export.get('updates', 0)} online updates)"
    if not m.size:
        return _no_edges(fig, title)
    ax, image = _log_heatmap(
        fig, m, (lo, hi), "viridis", [short(t) for t in targets], [short(s) for s in sources]
    )
    ax.set_xlabel("to (agent of this layer)")
    ax.set_ylabel("from")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="log₁₀ τ")
    return fig


def draw_overview(export: dict[str, Any], path: str | Path, *, dpi: int = 120) -> Path:
    """Write :func:`overview_figure` to ``path`` (a PNG); returns the path."""
    return _save(overview_figure(export), path, dpi)


def overview_figure(export: dict[str, Any]) -> InlineFigure:
    """Task type × agent: the mean pheromone on the agent's incoming edges, per specialist."""
    tasks = export["task_types"]
    targets = _ordered_nodes(export)
    sums = np.zeros((len(tasks), len(targets)))
    counts = np.zeros(len(targets))
    ti = {t: i for i, t in enumerate(targets)}
    for e in export["edges"]:
        j = ti[e["target"]]
        counts[j] += 1
        sums[:, j] += [e["tau"][t] for t in tasks]
    m = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    lo, hi = _log_range(m)
    fig = _figure(max(6.0, 0.55 * len(targets) + 3.0), max(3.4, 0.42 * len(tasks) + 2.6))
    if not export["edges"]:
        return _no_edges(fig, "pheromone specialists: mean τ into each agent, per task type")
    ax, image = _log_heatmap(fig, m, (lo, hi), "magma", [short(t) for t in targets], list(tasks))
    ax.set_title("pheromone specialists: mean τ into each agent, per task type")
    fig.colorbar(image, ax=ax, label="log₁₀ τ")
    return fig


def _drawn_layers(export: dict[str, Any]) -> list[dict[str, Any]]:
    """The layers of the path graph: the stage-less warm-start layer (``*``) only when it is the
    only one (once real stages exist it is their prior, shown in the heatmaps)."""
    real = [layer for layer in export["layers"] if layer["stage"] != "*"]
    return real or list(export["layers"])


def _positions(export: dict[str, Any], task: str) -> dict[str, tuple[float, float]]:
    """Layer x, then rank by ability within the layer (best on top); ``START`` at x = 0."""
    ability = export.get("ability", {})
    pos = {START: (0.0, 0.0)}
    for x, layer in enumerate(_drawn_layers(export), start=1):
        nodes = sorted(layer["nodes"], key=lambda n: -ability.get(n, {}).get(task, 0.0))
        for r, node in enumerate(nodes):
            pos[node] = (float(x), (len(nodes) - 1) / 2.0 - r)
    return pos


def draw_paths(export: dict[str, Any], task: str, path: str | Path, *, dpi: int = 120) -> Path:
    """Write :func:`paths_figure` to ``path`` (a PNG); returns the path."""
    return _save(paths_figure(export, task), path, dpi)


def paths_figure(export: dict[str, Any], task: str) -> InlineFigure:
    """The layered path graph of one task type: edge width ∝ τᵗ (relative to the largest drawn);
    red: the strongest edge out of each node (where that node's pheromone points)."""
    pos = _positions(export, task)
    layers = _drawn_layers(export)
    height = max(3.4, 0.45 * max([len(layer["nodes"]) for layer in layers] + [1]) + 1.8)
    fig = _figure(4.2 + 3.0 * len(layers), height)
    edges = [
        (e["source"], e["target"], e["tau"][task])
        for e in export["edges"]
        if e["source"] in pos and e["target"] in pos
    ]
    if not edges:
        return _no_edges(fig, f"task type '{task}': the layered path graph")
    ax = fig.add_subplot()
    top_tau = max([t for _, _, t in edges] + [1e-12])
    best_out: dict[str, float] = {}
    for src, _, tau in edges:
        best_out[src] = max(best_out.get(src, 0.0), tau)
    for src, dst, tau in sorted(edges, key=lambda e: e[2]):
        top = tau >= best_out[src] * (1 - 1e-9)
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        ax.plot(
            [x0, x1], [y0, y1], color="#b2182b" if top else "#2166ac", lw=0.2 + 8.0 * tau / top_tau,
            alpha=0.9 if top else 0.3, solid_capstyle="round", zorder=1,
        )  # fmt: skip
    ability = export.get("ability", {})
    for node, (x, y) in pos.items():
        a = ability.get(node, {}).get(task)
        ax.scatter([x], [y], s=160, color="white", edgecolor="black", zorder=2)
        label = short(node, 34) + (f"  (ability {a:.2f})" if a is not None else "")
        ax.annotate(
            label, (x, y), xytext=(7, 5), textcoords="offset points", fontsize=7.5, va="bottom", zorder=3
        )
    names = [START] + [
        ("any stage (warm start)" if layer["stage"] == "*" else layer["stage"]) for layer in layers
    ]
    ax.set_xticks(range(len(layers) + 1), names)
    ax.set_yticks([])
    ax.set_xlim(-0.3, len(layers) + 1.2)
    ys = [y for _, y in pos.values()]
    ax.set_ylim(min(ys) - 0.7, max(ys) + 0.7)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(
        f"task type '{task}': width ∝ τ (max {top_tau:.3g})\nred = strongest edge out of a node", fontsize=10
    )
    return fig


def write_evidence(export: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """``pheromones.json``, the overview, and a heatmap and a path graph per task type."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "pheromones.json"]
    written[0].write_text(json.dumps(export, indent=1))
    written.append(draw_overview(export, out / "pheromone_overview.png"))
    for task in export["task_types"]:
        slug = _slug(task)
        written.append(draw_heatmap(export, task, out / f"pheromone_{slug}.png"))
        written.append(draw_paths(export, task, out / f"paths_{slug}.png"))
    return written


def _log_heatmap(fig: Any, m: np.ndarray, span: tuple[float, float], cmap: str, columns: list[str],
                 rows: list[str]) -> tuple[Any, Any]:  # fmt: skip
    """``m`` on a log₁₀ colour scale over ``span`` (NaN blank), each cell written in when it has at most
    400: the axes and the image, for the caller's labels and colour bar."""
    lo, hi = span
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(np.log10(m)), cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
    ax.set_xticks(range(len(columns)), columns, rotation=55, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    if m.size <= 400:
        for (i, j), value in np.ndenumerate(m):
            if not np.isnan(value):
                light = np.log10(value) < (lo + hi) / 2
                ax.text(
                    j,
                    i,
                    f"{value:.2g}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if light else "black",
                )
    return ax, image

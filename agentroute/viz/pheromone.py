"""Drawings of an ant colony's pheromone matrices (the routing evidence of AMRO-S, arXiv 2603.12933).

Every function takes the JSON of :meth:`AntColonyRouter.export_pheromones` (so a saved colony can be
drawn without the router) and writes PNGs with matplotlib's object API on an Agg canvas:

- :func:`draw_heatmap` — one heatmap per task type: source node (``START`` or an agent of the
  previous layer) × target agent, colour = log₁₀ τᵗ, blank where no edge exists;
- :func:`draw_overview` — the specialists side by side: task type × agent, colour = the pheromone
  the agent receives from its previous layer (the mean over its incoming edges);
- :func:`draw_paths` — the layered path graph of one task type: layers left to right, edge width
  ∝ τᵗ (line width scaled between τ_min and τ_max), the strongest incoming edge of every node drawn
  darkest.

:func:`write_evidence` writes the JSON and all of them into a folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from agentroute._optional import require

START = "START"


def _figure(width: float, height: float) -> Any:
    require("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


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


def _matrix(export: dict[str, Any], task: str) -> tuple[list[str], list[str], np.ndarray]:
    sources = [START] + [n["id"] for n in export["nodes"]]
    targets = [n["id"] for n in export["nodes"]]
    m = np.full((len(sources), len(targets)), np.nan)
    si = {s: i for i, s in enumerate(sources)}
    ti = {t: i for i, t in enumerate(targets)}
    for e in export["edges"]:
        m[si[e["source"]], ti[e["target"]]] = e["tau"][task]
    rows = [i for i in range(len(sources)) if not np.isnan(m[i]).all()]
    cols = [j for j in range(len(targets)) if not np.isnan(m[:, j]).all()]
    return [sources[i] for i in rows], [targets[j] for j in cols], m[np.ix_(rows, cols)]


def draw_heatmap(export: dict[str, Any], task: str, path: str | Path, *, dpi: int = 120) -> Path:
    """Heatmap of τᵗ for one task type: source × target, colour = log₁₀ τ (blank: no edge)."""
    sources, targets, m = _matrix(export, task)
    bounds = export.get("bounds", {})
    lo, hi = np.log10(bounds.get("tau_min", 0.01)), np.log10(bounds.get("tau_max", 10.0))
    fig = _figure(max(6.0, 0.55 * len(targets) + 3.0), max(2.6, 0.42 * len(sources) + 2.2))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(np.log10(m)), cmap="viridis", vmin=lo, vmax=hi, aspect="auto")
    ax.set_xticks(range(len(targets)), [short(t) for t in targets], rotation=55, ha="right", fontsize=8)
    ax.set_yticks(range(len(sources)), [short(s) for s in sources], fontsize=8)
    if m.size <= 400:
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                if not np.isnan(m[i, j]):
                    light = np.log10(m[i, j]) < (lo + hi) / 2
                    ax.text(j, i, f"{m[i, j]:.2g}", ha="center", va="center", fontsize=7, color="white" if light else "black")
    ax.set_xlabel("to (agent of this layer)")
    ax.set_ylabel("from (previous layer)")
    ax.set_title(f"pheromone τ — task type '{task}' ({export.get('updates', 0)} online updates)")
    fig.colorbar(image, ax=ax, label="log₁₀ τ")
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    return path


def draw_overview(export: dict[str, Any], path: str | Path, *, dpi: int = 120) -> Path:
    """Task type × agent: the mean pheromone on the agent's incoming edges, per specialist."""
    tasks = export["task_types"]
    targets = [n["id"] for n in export["nodes"]]
    sums = np.zeros((len(tasks), len(targets)))
    counts = np.zeros(len(targets))
    ti = {t: i for i, t in enumerate(targets)}
    for e in export["edges"]:
        j = ti[e["target"]]
        counts[j] += 1
        sums[:, j] += [e["tau"][t] for t in tasks]
    m = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    bounds = export.get("bounds", {})
    lo, hi = np.log10(bounds.get("tau_min", 0.01)), np.log10(bounds.get("tau_max", 10.0))
    fig = _figure(max(6.0, 0.55 * len(targets) + 3.0), max(2.6, 0.42 * len(tasks) + 2.2))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(np.log10(m)), cmap="magma", vmin=lo, vmax=hi, aspect="auto")
    ax.set_xticks(range(len(targets)), [short(t) for t in targets], rotation=55, ha="right", fontsize=8)
    ax.set_yticks(range(len(tasks)), tasks, fontsize=8)
    if m.size <= 400:
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                if not np.isnan(m[i, j]):
                    light = np.log10(m[i, j]) < (lo + hi) / 2
                    ax.text(j, i, f"{m[i, j]:.2g}", ha="center", va="center", fontsize=7, color="white" if light else "black")
    ax.set_title("pheromone specialists: mean τ into each agent, per task type")
    fig.colorbar(image, ax=ax, label="log₁₀ τ")
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    return path


def _positions(export: dict[str, Any], task: str) -> dict[str, tuple[float, float]]:
    """Layer x, then rank by ability within the layer (best on top)."""
    ability = export.get("ability", {})
    pos = {START: (0.0, 0.0)}
    for x, layer in enumerate(export["layers"], start=1):
        nodes = sorted(layer["nodes"], key=lambda n: -ability.get(n, {}).get(task, 0.0))
        for r, node in enumerate(nodes):
            pos[node] = (float(x), (len(nodes) - 1) / 2.0 - r)
    return pos


def draw_paths(export: dict[str, Any], task: str, path: str | Path, *, dpi: int = 120) -> Path:
    """The layered path graph of one task type with edge widths ∝ τᵗ."""
    pos = _positions(export, task)
    bounds = export.get("bounds", {})
    tmin, tmax = bounds.get("tau_min", 0.01), bounds.get("tau_max", 10.0)
    layers = export["layers"]
    height = max(3.0, 0.45 * max([len(layer["nodes"]) for layer in layers] + [1]) + 1.5)
    fig = _figure(3.2 + 3.0 * len(layers), height)
    ax = fig.add_subplot()
    edges = [(e["source"], e["target"], e["tau"][task]) for e in export["edges"]]
    best_in: dict[str, float] = {}
    for _, dst, tau in edges:
        best_in[dst] = max(best_in.get(dst, 0.0), tau)
    for src, dst, tau in sorted(edges, key=lambda e: e[2]):
        if src not in pos or dst not in pos:
            continue
        share = (np.log(tau) - np.log(tmin)) / max(np.log(tmax) - np.log(tmin), 1e-9)
        top = tau >= best_in[dst] * (1 - 1e-9)
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        ax.plot(
            [x0, x1], [y0, y1], color="#b2182b" if top else "#2166ac", lw=0.3 + 7.7 * float(np.clip(share, 0, 1)),
            alpha=0.85 if top else 0.35, solid_capstyle="round", zorder=1,
        )  # fmt: skip
    ability = export.get("ability", {})
    for node, (x, y) in pos.items():
        if node != START and not any(node in layer["nodes"] for layer in layers):
            continue
        a = ability.get(node, {}).get(task)
        ax.scatter([x], [y], s=160, color="white", edgecolor="black", zorder=2)
        label = short(node, 34) + (f"  (ability {a:.2f})" if a is not None else "")
        ax.text(x + 0.08, y, label, fontsize=7.5, va="center", zorder=3)
    ax.set_xticks(range(len(layers) + 1), [START] + [layer["stage"] for layer in layers])
    ax.set_yticks([])
    ax.set_xlim(-0.3, len(layers) + 1.4)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"paths for task type '{task}': edge width ∝ log τ (red: strongest edge into each agent)")
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    return path


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

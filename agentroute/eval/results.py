"""The evaluation result: a pydantic structure written as JSON (the ``--json`` shape) and CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, PrivateAttr


class SingleModel(BaseModel):
    model: str
    accuracy: float
    cost: float


class OraclePoint(BaseModel):
    accuracy: float
    cost: float
    aiq: float | None = None


class RouterResult(BaseModel):
    """One router's sweep on the test split. Metrics are ``None`` when the router failed (``error``)."""

    name: str
    router: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    knob: str | None = None
    mode: str = "serve"
    aiq: float | None = None
    aiq_best_anchor: float | None = Field(
        default=None, description="AIQ anchored at the best of the models tied for cheapest"
    )
    anchor: int | None = Field(default=None, description="single-model column anchoring aiq")
    anchor_model: str | None = None
    vs_zero: list[float] | None = Field(
        default=None, description="[AIQ − zero router, low, high] (paired bootstrap)"
    )
    vs_reference: list[float] | None = Field(
        default=None, description="[AIQ − best peer, low, high] (paired bootstrap)"
    )
    max_accuracy: float | None = None
    cost_to_match_best: float | None = None
    accuracy_at_best_cost: float | None = None
    oracle_gap_closed: float | None = None
    apgr: float | None = None
    cpt50: float | None = None
    cpt80: float | None = None
    curve: list[list[float]] = Field(default_factory=list, description="[[cost, accuracy], …] per knob value")
    knob_values: list[float | None] = Field(default_factory=list)
    strong_share: list[float] | None = None
    fit_s: float | None = None
    route_us: float | None = None
    sweep: str = ""
    error: str | None = None
    trained_on_test: int | None = Field(
        default=None, description="test queries a saved router was trained on (None: not known)"
    )


class EvalResult(BaseModel):
    """Everything one evaluation produced; ``model_dump()`` is the JSON of ``agentroute eval --json``."""

    dataset: str
    n_train: int
    n_test: int
    dropped_rows: int
    dropped_by_split: dict[str, int] = Field(default_factory=dict)
    single_models: list[SingleModel]
    oracle: OraclePoint
    zero_router_aiq: float
    best_single: SingleModel
    routers: list[RouterResult]
    cost_estimate: str = ""
    seed: int = 0
    notes: dict[str, Any] = Field(default_factory=dict)
    peers: list[str] = Field(default_factory=list, description="simple references that ran")
    reference: str | None = Field(
        default=None, description="the best peer by test AIQ (vs_reference compares with it)"
    )
    boot: dict[str, Any] = Field(default_factory=dict)
    _outcomes: dict[str, tuple[np.ndarray, np.ndarray]] = PrivateAttr(default_factory=dict)

    def router(self, name: str) -> RouterResult:
        for r in self.routers:
            if r.name == name:
                return r
        raise KeyError(f"no router {name!r} in this result; have {[r.name for r in self.routers]}")

    def outcomes(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(scores, costs) of shape (n_points, n_test) realised by a router's sweep (for bootstraps)."""
        return self._outcomes[name]

    def to_json(self) -> str:
        return json.dumps(self.model_dump(), indent=1, default=_default)

    def write(self, out: str | Path, *, plot: bool = False, dpi: int = 130) -> dict[str, Path]:
        """Write ``results.json`` and ``results.csv`` (one row per router) into ``out``; with ``plot``,
        ``curves.png`` too (:func:`~agentroute.eval.plots.curves_figure`: an :class:`ImportError`
        without matplotlib, before anything is written).

        The files are one run's: each is written aside first (the plot's drawing included), then all
        are moved in together, ``results.json`` last (a Ctrl-C or SIGTERM waits for the moves), and
        a ``curves.png`` of an earlier run is removed when no plot is written. A write that fails or
        is interrupted leaves the files there before — or none — as they were. Only a hard kill
        between the moves (SIGKILL, a power cut) can leave new files beside an older
        ``results.json``, with its ``.results.json.partial`` left beside it: ``results.json`` is
        the record of the run."""
        from agentroute._signals import signals_deferred

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"csv": out / "results.csv", "png": out / "curves.png", "json": out / "results.json"}
        staged = {kind: out / f".{path.name}.partial" for kind, path in paths.items()}
        try:
            if plot:
                from agentroute.eval.plots import curves_figure

                curves_figure(self).savefig(staged["png"], dpi=dpi, format="png")
            self._write_csv(staged["csv"])
            staged["json"].write_text(self.to_json())
            with signals_deferred():
                for kind, path in paths.items():  # results.json last
                    if staged[kind].exists():
                        staged[kind].replace(path)
                    else:
                        path.unlink(missing_ok=True)  # an earlier run's plot
        finally:
            for path in staged.values():
                path.unlink(missing_ok=True)
        return {kind: paths[kind] for kind in ("json", "csv", "png") if paths[kind].exists()}

    def _write_csv(self, file: Path) -> None:
        columns = [
            "name", "mode", "aiq", "aiq_best_anchor", "anchor_model", *_INTERVAL_COLUMNS, "max_accuracy",
            "cost_to_match_best", "accuracy_at_best_cost", "oracle_gap_closed", "apgr", "cpt50", "cpt80", "fit_s",
            "route_us", "points", "trained_on_test", "error",
        ]  # fmt: skip
        with file.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            for r in self.routers:
                row = {c: getattr(r, c, None) for c in columns if hasattr(r, c)}
                writer.writerow({**row, **_interval_cells(r), "points": len(r.curve)})


#: A paired interval ``[gain, low, high]`` as three CSV columns, numbers a spreadsheet reads.
_INTERVAL_COLUMNS = (
    "vs_zero",
    "vs_zero_low",
    "vs_zero_high",
    "vs_reference",
    "vs_reference_low",
    "vs_reference_high",
)


def _interval_cells(r: RouterResult) -> dict[str, float | None]:
    cells: dict[str, float | None] = {}
    for name in ("vs_zero", "vs_reference"):
        gain, low, high = getattr(r, name) or (None, None, None)
        cells |= {name: gain, f"{name}_low": low, f"{name}_high": high}
    return cells


def _default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)

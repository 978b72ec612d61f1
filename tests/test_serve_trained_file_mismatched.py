"""``agentroute serve --router DIR`` where DIR's ``router.json`` names fewer agents than its
``arrays.npz`` holds (an edited file, or files of two saves mixed), or holds a ``cost_scale`` that is
not a finite number > 0: exit 2 with one line naming the file (was: served, each remaining agent
scored by whichever array column its position picked; with the bad scale every route failed and
each request was sent to every model in turn)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from agentroute.outcomes import OutcomeTable
from agentroute.routers.reference import PerTaskRouter

ROOT = Path(__file__).resolve().parents[1]


def _saved(tmp_path: Path) -> Path:
    models = ["acme-fast", "acme-smart", "acme-pro"]
    table = OutcomeTable(
        query_ids=[f"q{i}" for i in range(6)], queries=[f"question {i}" for i in range(6)], models=models,
        scores=np.array([[i % 2, 1, 1] for i in range(6)], dtype=float),
        costs=np.tile([0.0002, 0.004, 0.02], (6, 1)),
    )  # fmt: skip
    return PerTaskRouter().fit(table).save(tmp_path / "r")


def _serve(tmp_path: Path, saved: Path) -> subprocess.CompletedProcess[str]:
    pool = tmp_path / "pool.yaml"
    pool.write_text("models:\n" + "".join(f"  - {{id: {m}, backend: replay}}\n" for m in ("acme-fast", "acme-pro")))
    return subprocess.run(
        [sys.executable, "-m", "agentroute", "serve", "--pool", str(pool), "--router", str(saved), "--port", "0"],
        cwd=ROOT, env={**os.environ, "COLUMNS": "300"}, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_serve_refuses_a_saved_router_whose_columns_do_not_match_its_arrays(tmp_path: Path) -> None:
    saved = _saved(tmp_path)
    manifest = json.loads((saved / "router.json").read_text())
    manifest["state"]["columns"] = ["acme-fast", "acme-pro"]  # acme-smart's record would be read as acme-pro's
    (saved / "router.json").write_text(json.dumps(manifest))
    done = _serve(tmp_path, saved)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: {saved / 'router.json'}: incompatible state for 'per-task': its arrays hold 3 agents' outcomes but "
        "its \"columns\" name 2: the files were edited or come from different saves; train it again"
    ], done.stderr


def test_serve_refuses_a_saved_router_whose_cost_scale_is_not_positive(tmp_path: Path) -> None:
    saved = _saved(tmp_path)
    text = (saved / "router.json").read_text()
    (saved / "router.json").write_text(text.replace('"cost_scale": ', '"cost_scale": NaN, "was": '))  # JSON as Python writes nan
    done = _serve(tmp_path, saved)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: {saved / 'router.json'}: incompatible state for 'per-task': 'cost_scale' must be a finite number > 0 "
        "(got nan)"
    ], done.stderr

"""An outcomes file with an absurd but finite cost (``1e308``: a unit or export error) is refused by
``agentroute train`` and ``agentroute eval``, exit 2 naming the file, the row and the bound (was:
``train`` saved a router whose cost scale was 5e305, every other cost read as 0; ``eval`` stopped
on ``input_price must be finite and at most 1e+15 (got inf)`` after an overflow warning)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentroute.eval.datasets import load_outcomes

AGENTROUTE = [sys.executable, "-m", "agentroute"]  # run from the repository root: this checkout's code
ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, huge: float) -> Path:
    rows = [
        {"query": f"question {i}", "model": model, "score": int(model == "acme-pro" or i % 2 == 0),
         "cost_usd": cost, "split": "test" if i % 4 == 0 else "train"}
        for i in range(12) for model, cost in (("acme-fast", 0.0002), ("acme-pro", 0.02))
    ]  # fmt: skip
    rows[5]["cost_usd"] = huge  # row 6
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.parametrize("command", ["train", "eval"])
def test_a_huge_cost_is_refused_naming_the_row(tmp_path: Path, command: str) -> None:
    path = _write(tmp_path / "logs.csv", 1e308)
    argv = {"train": ["train", "knn", "--out", str(tmp_path / "r")], "eval": ["eval", "--routers", "knn", "--boot", "0"]}
    done = subprocess.run([*AGENTROUTE, *argv[command], "--dataset", f"outcomes:{path}"], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, env={**os.environ, "COLUMNS": "300"})  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    err = " ".join(done.stderr.split())
    assert f"{path}: a cost must be a finite number ≥ 0 (row 6: 1e+308), at most 1e+09 USD a call" in err, err
    assert "Traceback" not in done.stderr and "RuntimeWarning" not in done.stderr
    assert not (tmp_path / "r").exists()


def test_the_largest_cost_allowed_still_loads(tmp_path: Path) -> None:
    load_outcomes(_write(tmp_path / "logs.csv", 1e9))  # outcomes.MAX_COST_USD

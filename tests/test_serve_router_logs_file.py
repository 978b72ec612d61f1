"""``agentroute serve --router logs.csv`` (the outcomes file a router was trained on, given for the
router itself) is one line saying it is not a saved router and what is expected, exit 2 (was:
``logs.csv: not valid JSON (Expecting value: line 1 column 1 (char 0))``, which sent the user to fix
the file's JSON)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentroute.errors import StateFileError
from agentroute.loading import load_router

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = "not a saved router (expected router.json written by `agentroute train`, or its folder)"


def _logs(tmp_path: Path) -> Path:
    path = tmp_path / "logs.csv"
    path.write_text("query,model,score,cost_usd\nq,a,1,0.1\n")
    return path


def test_serve_names_an_outcomes_file_given_as_the_router(tmp_path: Path) -> None:
    logs = _logs(tmp_path)
    done = subprocess.run([sys.executable, "-m", "agentroute", "serve", "--router", str(logs), "--port", "0"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, env={**os.environ, "COLUMNS": "300"})  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == f"error: {logs}: {EXPECTED}", done.stderr


def test_load_router_says_the_same(tmp_path: Path) -> None:
    logs = _logs(tmp_path)
    with pytest.raises(StateFileError, match="not a saved router"):
        load_router(str(logs))


def test_eval_names_an_outcomes_file_given_as_a_router(tmp_path: Path) -> None:
    """``agentroute eval --routers knn,logs.csv`` says the same, before the dataset loads (was:
    ``unknown router '…/logs.csv'; known: …``, a list of names for what was a path)."""
    logs = _logs(tmp_path)
    argv = ["eval", "--routers", f"knn,{logs}", "--dataset", f"outcomes:{tmp_path / 'missing.csv'}"]
    done = subprocess.run([sys.executable, "-m", "agentroute", *argv], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={**os.environ, "COLUMNS": "300"})  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == f"error: {logs}: {EXPECTED}", done.stderr

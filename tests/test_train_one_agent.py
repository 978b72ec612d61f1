"""``agentroute train`` on logs of one agent warns that the router can only ever choose it (was: a
silent fit and "trained … saved", a router with nothing to route between); the fit still saves."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_training_on_one_agent_warns(tmp_path: Path) -> None:
    logs = tmp_path / "logs.csv"
    with logs.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["query", "model", "score", "cost_usd"])
        writer.writerows([f"question {i}", "acme-fast", i % 2, 0.001] for i in range(30))
    out = tmp_path / "r"
    done = subprocess.run(
        [sys.executable, "-m", "agentroute", "train", "per-task", "--dataset", f"outcomes:{logs}", "--out", str(out)],
        cwd=ROOT, env={**os.environ, "COLUMNS": "300"}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    err = " ".join(done.stderr.split())
    assert ("warning: the training data holds one agent (acme-fast): per-task can only ever choose it "
            "(log the outcomes of at least two agents)") in err, err  # fmt: skip
    assert (out / "router.json").is_file()

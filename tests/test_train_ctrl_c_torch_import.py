"""Ctrl-C while ``agentroute train mlp`` is still importing torch ends it with exit 130 and one line
(``interrupted: --out DIR: nothing was saved``), ``--out`` absent. Before, the report of what was
kept imported the half-initialized torch again to read a checkpoint that did not exist: exit 1 and
a 40-line traceback (``partially initialized module 'torch'``). The signal goes once the child has
mapped libtorch, i.e. while ``import torch`` runs."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _torch_loading(pid: int) -> bool:
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def test_ctrl_c_during_the_torch_import_of_a_fit_exits_130_with_one_line(tmp_path: Path) -> None:
    logs = tmp_path / "logs.csv"
    with logs.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["query", "model", "score", "cost_usd"])
        writer.writerows([f"q {i}", m, (i + j) % 2, 0.001 * (j + 1)] for i in range(20) for j, m in enumerate("ab"))
    out = tmp_path / "r"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentroute", "train", "mlp", "--dataset", f"outcomes:{logs}", "--out", str(out)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "300"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not _torch_loading(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == f"interrupted: --out {out}: nothing was saved", err
    assert not out.exists()

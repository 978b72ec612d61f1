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

import pytest

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


# a process whose `import torch` a Ctrl-C stops (sent once libtorch is mapped), then asked what its
# --out keeps, as `agentroute train` is after a Ctrl-C (cli.train_cmd.kept_after_stop); "whole" when
# the import ended before the signal came (a loaded machine): the test tries again
STOPPED_IMPORT = """import os, signal, sys, threading, time
from pathlib import Path
import numpy  # as train has it (its data) before torch loads
from agentroute.cli.train_cmd import kept_after_stop
def ctrl_c():
    while "libtorch" not in Path(f"/proc/{os.getpid()}/maps").read_text():
        time.sleep(0.001)
    os.kill(os.getpid(), signal.SIGINT)
threading.Thread(target=ctrl_c, daemon=True).start()
try:
    import torch
    print("whole", flush=True)
    os._exit(0)
except KeyboardInterrupt:
    if "torch" in sys.modules:
        print("whole", flush=True)
    else:
        print(kept_after_stop(Path(sys.argv[1]), existed=False), flush=True)
"""


def test_ctrl_c_during_the_torch_import_with_a_checkpoint_to_resume_says_so(tmp_path: Path) -> None:
    """A bopo/graph-planner run resumed from ``--out/checkpoint.pt`` and stopped while torch imports:
    the report names the checkpoint without importing torch again (was: a segmentation fault, -11)."""
    torch = pytest.importorskip("torch")
    torch.save({"done": "12 BoPO iterations"}, tmp_path / "checkpoint.pt")  # as TrainingCheckpoint keeps it
    for _ in range(3):  # bounded: the import may end before the signal comes
        done = subprocess.run([sys.executable, "-c", STOPPED_IMPORT, str(tmp_path)], cwd=ROOT, capture_output=True,
                              text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
        if not done.stdout.startswith("whole"):
            break
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    expected = f"a checkpoint after its last save ({tmp_path / 'checkpoint.pt'}): rerun the same command to resume"
    assert done.stdout.strip() == expected, done.stdout + done.stderr[-2000:]

"""results.json, results.csv and curves.png are one run's files (helper-68's review of bb4e815):
a real Ctrl-C while ``agentroute eval`` writes them leaves the earlier run's three files."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentroute.eval import evaluate

pytest.importorskip("matplotlib")


def _eval(out: Path, routers: str) -> list[str]:
    return [sys.executable, "-m", "agentroute", "eval", "--dataset", "routerbench", "--routers", routers,
            "--limit", "80", "--boot", "0", "--out", str(out)]  # fmt: skip


def _files(out: Path) -> tuple[list[str], list[str], bytes]:
    names = [r["name"] for r in json.loads((out / "results.json").read_text())["routers"]]
    with (out / "results.csv").open() as fh:
        rows = [r["name"] for r in csv.DictReader(fh)]
    return names, rows, (out / "curves.png").read_bytes()


#: Loaded by the second run only (PYTHONPATH): matplotlib's savefig says it started, then takes
#: its time, so the real Ctrl-C lands while the plot is being written.
_SLOW_SAVEFIG = """
import os, pathlib, time
import matplotlib.figure

_savefig = matplotlib.figure.Figure.savefig

def savefig(self, *args, **kwargs):
    pathlib.Path(os.environ["H68_SAVEFIG_STARTED"]).touch()
    time.sleep(300)
    return _savefig(self, *args, **kwargs)

matplotlib.figure.Figure.savefig = savefig
"""


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a shell's background job ignores it


def test_ctrl_c_while_eval_writes_leaves_the_earlier_runs_three_files(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    env = {**os.environ, "COLUMNS": "200"}
    first = subprocess.run(_eval(out, "cheapest"), capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr
    before = _files(out)
    assert before[0] == before[1] and "strongest" not in before[0]  # the peers are added beside cheapest
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_SLOW_SAVEFIG)
    started = tmp_path / "savefig-started"
    slow = {**env, "PYTHONPATH": os.pathsep.join([str(hook), env.get("PYTHONPATH", "")]), "H68_SAVEFIG_STARTED": str(started)}
    second = subprocess.Popen(_eval(out, "cheapest,strongest"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=slow, preexec_fn=_default_sigint)  # fmt: skip
    deadline = time.monotonic() + 600
    while not started.exists():
        assert second.poll() is None and time.monotonic() < deadline, second.communicate()
        time.sleep(0.05)
    second.send_signal(signal.SIGINT)
    _, stderr = second.communicate(timeout=60)
    assert second.returncode == 130, stderr
    assert _files(out) == before  # not the second run's results beside the first run's plot
    assert sorted(p.name for p in out.iterdir()) == ["curves.png", "results.csv", "results.json"]


def test_results_written_without_a_plot_remove_an_earlier_runs_plot(tmp_path: Path, routerbench) -> None:
    data = routerbench(limit=60)
    first = evaluate(data, ["cheapest"], n_boot=0)
    paths = first.write(tmp_path, plot=True)
    assert sorted(paths) == ["csv", "json", "png"] and paths["png"].read_bytes()[:4] == b"\x89PNG"
    second = evaluate(data, ["cheapest", "strongest"], n_boot=0)
    assert sorted(second.write(tmp_path)) == ["csv", "json"]
    assert not (tmp_path / "curves.png").exists()  # it drew the first run's routers only

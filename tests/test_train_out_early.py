"""``agentroute train graph-planner`` and ``train router-r1`` refuse an ``--out`` that cannot be a
directory before they read data or fit (run as a user does: the real CLI in a subprocess)."""

import subprocess
import sys
import time

import pytest

pytest.importorskip("torch")


def _train(*args, cwd=None):
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "agentroute", "train", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)
    return proc, time.perf_counter() - started


def test_graph_planner_out_under_a_file_is_refused_before_the_fit(tmp_path, data_dir):
    (tmp_path / "notes.txt").write_text("mine")
    out = tmp_path / "notes.txt" / "gp"
    recipe = tmp_path / "gp.yaml"  # a fit that would outlast the subprocess's timeout
    recipe.write_text("router: graph-planner\nparams:\n  episodes: 10000000\n  episodes_per_update: 16\n")
    proc, seconds = _train("graph-planner", "--dataset", f"routerbench:{data_dir / 'routerbench'}",
                           "--config", str(recipe), "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    assert f"cannot write there ({tmp_path / 'notes.txt'} is a file, not a directory)" in proc.stderr
    assert "training graph-planner" not in proc.stdout  # refused before the data is read and PPO runs
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert seconds < 100


def test_graph_planner_out_that_is_a_file_is_refused_before_the_fit(tmp_path, data_dir):
    out = tmp_path / "gp"
    out.write_text("mine")
    recipe = tmp_path / "gp.yaml"
    recipe.write_text("router: graph-planner\nparams:\n  episodes: 10000000\n  episodes_per_update: 16\n")
    proc, _ = _train("graph-planner", "--dataset", f"routerbench:{data_dir / 'routerbench'}",
                     "--config", str(recipe), "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    assert f"--out {out} is a file, not a directory" in proc.stderr
    assert "training graph-planner" not in proc.stdout
    assert out.read_text() == "mine"


def test_router_r1_out_under_a_file_is_refused_before_training(tmp_path):
    pytest.importorskip("trl")
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "notes.txt").write_text("mine")
    out = tmp_path / "notes.txt" / "r1"
    proc, _ = _train("router-r1", "--config", str(root / "training" / "router_r1.yaml"), "--out", str(out), cwd=root)
    assert proc.returncode == 2, proc.stderr
    assert f"cannot write there ({tmp_path / 'notes.txt'} is a file, not a directory)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"

"""``agentroute eval`` on a user's own outcomes file, end to end, and what it leaves in ``--out`` when
it is interrupted: the results there before (or none), never a cut-short or mismatched pair."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentroute.eval import load_dataset
from agentroute.eval.harness import evaluate

SKILL = {
    "small": (1e-4, {"maths": 0.2, "history": 0.8, "code": 0.3}),
    "mid": (1e-3, {"maths": 0.6, "history": 0.8, "code": 0.6}),
    "big": (1e-2, {"maths": 0.9, "history": 0.85, "code": 0.9}),
}


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """A user's log in the documented long format (docs/outcomes.md): one row per query × model."""
    rng = random.Random(0)
    path = tmp_path / "my_logs.jsonl"
    with path.open("w") as fh:
        for i in range(120):
            task = ("maths", "history", "code")[i % 3]
            query = f"{task} question {i}: explain item {i * 7 % 31} of {task}"
            for model, (cost, skill) in SKILL.items():
                row = {"query": query, "model": model, "score": int(rng.random() < skill[task]), "cost_usd": cost, "task": task}
                fh.write(json.dumps(row) + "\n")
    return path


def _interrupt_on_second_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C that lands while the CSV is being written (after its header and first row)."""
    real = csv.DictWriter.writerow
    calls = {"n": 0}

    def writerow(self, row):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, row)

    monkeypatch.setattr(csv.DictWriter, "writerow", writerow)


def test_an_interrupted_write_leaves_the_earlier_results_whole(logs: Path, tmp_path: Path, monkeypatch) -> None:
    data = load_dataset(f"outcomes:{logs}", seed=0)
    out = tmp_path / "eval"
    first = evaluate(data, "cheapest,strongest", seed=0, n_boot=0, peers=False, progress=False)
    first.write(out)
    before = {name: (out / name).read_text() for name in ("results.json", "results.csv")}
    second = evaluate(data, "cheapest,strongest,random", seed=0, n_boot=0, peers=False, progress=False)
    _interrupt_on_second_row(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        second.write(out)
    assert {name: (out / name).read_text() for name in before} == before  # was: a new JSON beside a cut CSV
    assert sorted(p.name for p in out.iterdir()) == ["results.csv", "results.json"]


def test_an_interrupted_first_write_leaves_no_results(logs: Path, tmp_path: Path, monkeypatch) -> None:
    data = load_dataset(f"outcomes:{logs}", seed=0)
    result = evaluate(data, "cheapest,strongest", seed=0, n_boot=0, peers=False, progress=False)
    _interrupt_on_second_row(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        result.write(tmp_path / "eval")
    assert list((tmp_path / "eval").iterdir()) == []  # was: a results.json with no results.csv


def _cli(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.Popen(
        [sys.executable, "-m", "agentroute", *args], cwd=cwd, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def test_eval_of_own_logs_with_several_routers_writes_results_and_plot(logs: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    proc = _cli("eval", "--dataset", f"outcomes:{logs}", "--routers", "knn:k=10,per-task,cheapest",
                "--boot", "0", "--out", "ev", cwd=tmp_path)  # fmt: skip
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    result = json.loads((tmp_path / "ev" / "results.json").read_text())
    names = [r["name"] for r in result["routers"]]
    assert {"knn:k=10", "per-task", "cheapest", "logreg"} <= set(names), names  # logreg: a peer, added
    with (tmp_path / "ev" / "results.csv").open() as fh:
        assert [row["name"] for row in csv.DictReader(fh)] == names
    assert (tmp_path / "ev" / "curves.png").stat().st_size > 0
    assert "wrote" in out


def test_ctrl_c_during_eval_exits_130_and_leaves_no_results(logs: Path, tmp_path: Path) -> None:
    proc = _cli("eval", "--dataset", f"outcomes:{logs}", "--routers", "knn,mlp,per-task", "--boot", "0",
                "--out", "ev", cwd=tmp_path)  # fmt: skip
    time.sleep(2.0)  # reading, embedding or fitting by now
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:  # finished before the signal: then the results must be whole
        json.loads((tmp_path / "ev" / "results.json").read_text())
        return
    assert proc.returncode == 130, err
    assert not (tmp_path / "ev").exists() or not any((tmp_path / "ev").iterdir())


def test_an_interrupted_plot_leaves_the_earlier_plot_whole(logs: Path, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("matplotlib")
    import io

    from matplotlib.figure import Figure

    from agentroute.eval.plots import plot_curves

    data = load_dataset(f"outcomes:{logs}", seed=0)
    result = evaluate(data, "cheapest,strongest", seed=0, n_boot=0, peers=False, progress=False)
    target = plot_curves(result, tmp_path / "curves.png")
    before = target.read_bytes()
    real = Figure.savefig

    def cut_short(self, fname, **kwargs):  # type: ignore[no-untyped-def]
        buffer = io.BytesIO()
        real(self, buffer, **{**kwargs, "format": "png"})
        Path(fname).write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])  # Ctrl-C halfway
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", cut_short)
    with pytest.raises(KeyboardInterrupt):
        plot_curves(result, target, title="again")
    assert target.read_bytes() == before  # was: half a PNG
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_the_table_keeps_every_name_and_figure_in_80_columns(logs: Path, tmp_path: Path) -> None:
    """``agentroute eval … > report.txt`` (rich takes a pipe as 80 columns) printed `per-…`,
    `+0.0…`, `[-0.…`: the table without its figures. Now it is printed at its own width."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "80"}
    proc = subprocess.run(
        [sys.executable, "-m", "agentroute", "eval", "--dataset", f"outcomes:{logs}", "--routers",
         "per-task:prior_strength=2,cheapest", "--boot", "30", "--out", "ev"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert "…" not in proc.stdout
    for r in result["routers"]:
        assert f"│ {r['name']} " in proc.stdout, r["name"]
        assert f"{r['aiq']:.3f}" in proc.stdout
        if r["vs_zero"]:
            d, lo, hi = r["vs_zero"]
            assert f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" in proc.stdout

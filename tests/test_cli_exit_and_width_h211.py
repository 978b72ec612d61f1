"""Exit codes of ``agentroute memory …`` / ``feedback`` on bad input, and ``agentroute eval``'s table
in 100 columns: every router name and figure whole, no line wider than the terminal."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from agentroute.memory import SQLMemory
from agentroute.types import Task
from tests.small_data import small_routerbench

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "100"}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentroute", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


@pytest.fixture
def memory_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'memory.db'}"
    with SQLMemory(url) as memory:
        for task_id in ("abc111", "abc222", "def333"):
            task = Task(id=task_id, query=f"question {task_id}", graph="qa")
            memory.start_task(task)
            task.status, task.answer = "done", "yes"
            memory.finish_task(task)
    return url


def _one_error_line(proc: subprocess.CompletedProcess[str], code: int, start: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(start), proc.stderr
    return lines[0]


def test_an_ambiguous_task_id_is_bad_input_and_an_unknown_one_a_missing_row(memory_url: str, tmp_path: Path) -> None:
    """A prefix of several tasks never becomes one task again (fix your input: 2, as the README says of
    bad input); a prefix of none may name a task another process has not stored yet (1, a missing row)."""
    for command in (["memory", "show", "{}"], ["feedback", "{}", "--score", "1"]):
        ambiguous = _cli(*(a.format("abc") for a in command), "--memory", memory_url, cwd=tmp_path)
        line = _one_error_line(ambiguous, 2, "error: task id 'abc' is ambiguous")
        assert "abc111" in line and "abc222" in line, line
        unknown = _cli(*(a.format("zzz") for a in command), "--memory", memory_url, cwd=tmp_path)
        assert "def333" in _one_error_line(unknown, 1, "error: no task 'zzz'")  # names the latest tasks
    with SQLMemory(memory_url) as memory:
        assert memory.stats()["feedback"] == 0  # nothing was scored


def test_an_in_memory_database_is_refused_where_a_memory_is_read(tmp_path: Path) -> None:
    """``--memory sqlite://`` (or ``sqlite:///``) is a fresh, empty database in the process: `memory
    stats` printed zero tasks and exited 0, `memory show` said the memory holds no tasks."""
    for url in ("sqlite://", "sqlite:///:memory:"):
        line = _one_error_line(_cli("memory", "stats", "--memory", url, cwd=tmp_path), 2, "error: ")
        assert url in line and "in-memory" in line, line


@pytest.fixture(scope="module")
def evaluated(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``COLUMNS=100 agentroute eval`` on a small RouterBench (a terminal, a CI log of 100 columns)."""
    where = tmp_path_factory.mktemp("eval")
    dataset = small_routerbench(data_dir, where / "routerbench", rows=40)
    proc = _cli("eval", "--dataset", f"routerbench:{dataset}", "--routers", "cheapest,per-task:prior_strength=2,knn",
                "--boot", "30", "--out", "ev", cwd=where)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc, where / "ev" / "results.json"


def _figures(result: dict) -> list[str]:
    """Every figure of the table, as the table writes it."""
    shown = []
    for r in result["routers"]:
        shown += [r["name"], f"{r['aiq']:.3f}", f"{r['max_accuracy']:.3f}", f"{r['fit_s']:.2f}"]
        shown += [f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for d, lo, hi in filter(None, (r["vs_zero"], r["vs_reference"]))]
        if r["cost_to_match_best"] is not None:
            shown.append(f"${r['cost_to_match_best']:.6f}")
        if r.get("apgr") is not None:
            shown += [f"{r['apgr']:.3f}", f"{100 * r['cpt50']:.1f}%", f"{100 * r['cpt80']:.1f}%"]
    return shown


def _check_fits(text: str, result: dict, width: int = 100) -> None:
    assert "…" not in text, text
    assert max(map(len, text.splitlines())) <= width, text
    for figure in _figures(result):
        assert any(figure in line for line in text.splitlines()), (figure, text)


def test_the_eval_table_fits_100_columns_with_every_figure(evaluated) -> None:
    proc, results = evaluated
    table = proc.stdout[proc.stdout.index("test split") : proc.stdout.index("wrote ")]
    _check_fits(table, json.loads(results.read_text()))


def test_the_table_with_apgr_columns_fits_100_columns_rendered(evaluated) -> None:
    """The table as rich renders it in a console of 100 columns writing to a string, with the
    APGR/CPT columns a dataset with two models adds and a long saved router's name."""
    from agentroute.cli.eval_cmd import print_table
    from agentroute.eval.results import EvalResult

    result = EvalResult.model_validate_json(evaluated[1].read_text())
    for r in result.routers:
        r.apgr, r.cpt50, r.cpt80 = 0.4567, 0.1234, 0.8765
    result.routers[0].name = "runs/knn-routerbench-2026-12-07"
    console = Console(width=100, file=io.StringIO(), force_terminal=False)
    print_table(console, result)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    _check_fits(text, json.loads(result.to_json()))

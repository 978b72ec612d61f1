"""``--out``'s one rule, as a user meets it (``python -m agentroute`` in a subprocess, in a fresh
folder): every command creates the missing folders of ``--out`` (``mkdir -p``, as ``train --out``
always did), and a file where a folder must be is one line on standard error and exit 2, no
traceback. ``run --out new/dir/out.jsonl`` and ``run web --out …`` exited 2 on a missing folder,
while ``memory export --out new/dir/logs.jsonl`` created it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import agentroute
from tests.helpers import logged_memory
from tests.test_batch_server import GRAPH_PY, StubOpenAIServer, pool_yaml
from tests.test_own_logs_user_paths import _own_log, _write_jsonl

SOURCE = Path(agentroute.__file__).resolve().parents[1]  # the checkout under test, for the subprocesses


def _agentroute(*args: str | Path, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SOURCE), os.environ.get("PYTHONPATH", "")]))
    env.setdefault("OMP_NUM_THREADS", "1")
    command = [sys.executable, "-m", "agentroute", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def _assert_refused(proc: subprocess.CompletedProcess[str], blocker: Path) -> None:
    """Exit 2 with one line naming ``--out`` and the file in the way, no traceback."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(lines) == 1 and "--out" in lines[0] and f"{blocker} is a file" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert blocker.read_text() == "mine"


@pytest.fixture(scope="module")
def server():
    with StubOpenAIServer() as stub:
        yield stub


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's own outcome log (eval, train) and a router trained on it (routers show)."""
    folder = tmp_path_factory.mktemp("logs")
    path = _write_jsonl(folder / "logs.jsonl", _own_log(20, new_model=False))
    trained = _agentroute("train", "per-task", "--dataset", f"outcomes:{path}", "--out", folder / "r", cwd=folder)
    assert trained.returncode == 0, trained.stderr
    return path


def _blocked(tmp_path: Path) -> Path:
    """A file where ``--out`` needs a folder."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    return blocker


def _run_args(tmp_path: Path, server: StubOpenAIServer) -> list[str | Path]:
    (tmp_path / "pool.yaml").write_text(pool_yaml(server.url))
    (tmp_path / "graph.py").write_text(GRAPH_PY)
    (tmp_path / "in.jsonl").write_text('{"query": "What is one?"}\n')
    return ["run", tmp_path / "graph.py", "--input", tmp_path / "in.jsonl", "--pool", tmp_path / "pool.yaml",
            "--memory", f"sqlite:///{tmp_path / 'm.db'}"]  # fmt: skip


def test_run_creates_the_missing_folders_of_out(tmp_path, server):
    out = tmp_path / "new" / "dir" / "out.jsonl"
    proc = _agentroute(*_run_args(tmp_path, server), "--out", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"status": "done"' in out.read_text()


def test_run_refuses_an_out_under_a_file(tmp_path, server):
    blocker = _blocked(tmp_path)
    proc = _agentroute(*_run_args(tmp_path, server), "--out", blocker / "dir" / "out.jsonl", cwd=tmp_path)
    _assert_refused(proc, blocker)
    assert not (tmp_path / "m.db").exists()  # refused before the memory was opened


WEB = ["run", "web", "--tasks", "enter-text", "--episodes", "1", "--router", "always-skill", "--budget-calls", "1"]


@pytest.mark.browser
def test_run_web_creates_the_missing_folders_of_out(chromium, tmp_path):
    out = tmp_path / "new" / "dir" / "web.jsonl"
    proc = _agentroute(*WEB, "--memory", f"sqlite:///{tmp_path / 'web.db'}", "--out", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"task": "enter-text"' in out.read_text()


def test_run_web_refuses_an_out_under_a_file(tmp_path):
    blocker = _blocked(tmp_path)
    out = blocker / "dir" / "web.jsonl"
    proc = _agentroute(*WEB, "--memory", f"sqlite:///{tmp_path / 'web.db'}", "--out", out, cwd=tmp_path)
    _assert_refused(proc, blocker)


@pytest.mark.parametrize("format", ["jsonl", "outcomes"])
def test_memory_export_creates_the_missing_folders_of_out_and_refuses_one_under_a_file(tmp_path, format):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    logged_memory(url, 3)
    out = tmp_path / "new" / "dir" / "logs.jsonl"
    proc = _agentroute("memory", "export", "--memory", url, "--format", format, "--out", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.read_text().count("\n") >= 3
    blocker = _blocked(tmp_path)
    proc = _agentroute("memory", "export", "--memory", url, "--format", format, "--out", blocker / "d" / "l.jsonl",
                       cwd=tmp_path)  # fmt: skip
    _assert_refused(proc, blocker)


def _eval_args(logs: Path) -> list[str | Path]:
    return ["eval", "--dataset", f"outcomes:{logs}", "--routers", "cheapest", "--no-peers", "--boot", "0"]


def test_eval_creates_the_missing_folders_of_out_and_refuses_one_under_a_file(tmp_path, logs):
    out = tmp_path / "new" / "dir" / "eval"
    proc = _agentroute(*_eval_args(logs), "--out", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / "results.csv").is_file()
    blocker = _blocked(tmp_path)
    _assert_refused(_agentroute(*_eval_args(logs), "--out", blocker / "eval", cwd=tmp_path), blocker)


def test_routers_show_creates_the_missing_folders_of_out_and_refuses_one_under_a_file(tmp_path, logs):
    show = ["routers", "show", "per-task", "--state", logs.parent / "r"]
    out = tmp_path / "new" / "dir" / "evidence"
    proc = _agentroute(*show, "--out", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert any(out.iterdir())
    blocker = _blocked(tmp_path)
    _assert_refused(_agentroute(*show, "--out", blocker / "evidence", cwd=tmp_path), blocker)


def test_train_creates_the_missing_folders_of_out_and_refuses_one_under_a_file(tmp_path, logs):
    train = ["train", "per-task", "--dataset", f"outcomes:{logs}"]
    out = tmp_path / "new" / "dir" / "r"
    proc = _agentroute(*train, "--out", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert any(out.iterdir())
    blocker = _blocked(tmp_path)
    _assert_refused(_agentroute(*train, "--out", blocker / "r", cwd=tmp_path), blocker)


def test_train_graph_planner_creates_the_missing_folders_of_out(tmp_path, data_dir):
    """(``--out`` under a file: tests/test_train_out_early.py, for graph-planner and router-r1.)"""
    pytest.importorskip("torch")
    recipe = tmp_path / "gp.yaml"
    recipe.write_text("router: graph-planner\nparams:\n  episodes: 16\n  episodes_per_update: 16\n")
    out = tmp_path / "new" / "dir" / "gp"
    proc = _agentroute("train", "graph-planner", "--dataset", f"routerbench:{data_dir / 'routerbench'}",
                       "--config", recipe, "--out", out, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert any(out.iterdir())

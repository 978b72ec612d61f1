"""A command refused after its ``--out`` was checked leaves no folder behind (``python -m agentroute``
in a subprocess). ``run … --out new/dir/x.jsonl`` and ``memory export --out new/dir/x.jsonl``
created ``new/dir`` before the memory was opened, so an unreachable memory URL or a bad pool (exit
2) left an empty ``new/dir``; now the folders are made when the command first writes there."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_cli_out_folders_a232 import WEB, _agentroute, _run_args, server  # noqa: F401 - the stub server fixture

UNREACHABLE = "postgresql://who:secret@127.0.0.1:1/nothing"  # a closed port: refused at once


def _refused_without_a_folder(proc, tmp_path: Path, reason: str) -> None:
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in output, output
    assert reason in proc.stderr, proc.stderr
    assert not (tmp_path / "new").exists()  # was: new/dir, empty


@pytest.mark.parametrize(
    ("option", "value", "reason"),
    [("--memory", UNREACHABLE, "cannot open the memory"), ("--pool", "missing.yaml", "missing.yaml")],
)
def test_run_refused_after_the_out_check_leaves_no_folder(tmp_path, server, option, value, reason):  # noqa: F811
    pytest.importorskip("psycopg")
    args = [str(a) for a in _run_args(tmp_path, server)]
    args[args.index(option) + 1] = value
    proc = _agentroute(*args, "--out", "new/dir/x.jsonl", cwd=tmp_path)
    _refused_without_a_folder(proc, tmp_path, reason)


def test_memory_export_refused_by_an_unreachable_memory_leaves_no_folder(tmp_path):
    pytest.importorskip("psycopg")
    proc = _agentroute("memory", "export", "--memory", UNREACHABLE, "--out", "new/dir/x.jsonl", cwd=tmp_path)
    _refused_without_a_folder(proc, tmp_path, "cannot open the memory")


def test_run_web_refused_by_an_unreachable_memory_leaves_no_folder(chromium, tmp_path):  # noqa: F811
    pytest.importorskip("psycopg")
    proc = _agentroute(*WEB, "--memory", UNREACHABLE, "--out", "new/dir/web.jsonl", cwd=tmp_path)
    _refused_without_a_folder(proc, tmp_path, "cannot open the memory")

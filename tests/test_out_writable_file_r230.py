"""``--out`` naming a file the user may write, in a folder they may not (``python -m agentroute`` in
a subprocess, as a user without root's override of permissions): ``--out /dev/null``,
``--out /dev/stdout``, a process substitution's ``/dev/fd/63``, a file an admin made for them in a
shared folder. The file is written; only a file to create needs its folder writable. Was: refused,
exit 2, "cannot write there (/dev is not writable)", before anything ran.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import logged_memory
from tests.test_batch_server import StubOpenAIServer
from tests.test_cli_out_folders_a232 import SOURCE, _run_args

if os.geteuid() == 0 and shutil.which("setpriv") is None:
    pytest.skip("root here, and no setpriv to run the command without root's override", allow_module_level=True)
# as root: the command runs without CAP_DAC_OVERRIDE, so a folder's mode binds it as it binds a user
AS_USER = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []


def _agentroute(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SOURCE), os.environ.get("PYTHONPATH", "")]))
    command = [*AS_USER, sys.executable, "-m", "agentroute", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=cwd, env=env)


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Path]:
    """A folder the user cannot write, holding ``out.jsonl``, a file they can."""
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "out.jsonl").write_text("old\n")
    (folder / "out.jsonl").chmod(0o666)
    folder.chmod(0o555)
    try:
        yield folder
    finally:
        folder.chmod(0o755)


def test_memory_export_writes_a_writable_file_in_a_folder_it_cannot_write(tmp_path, shared):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    logged_memory(url, 3)
    proc = _agentroute("memory", "export", "--memory", url, "--out", shared / "out.jsonl", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr  # was: 2, "cannot write there (…/shared is not writable)"
    assert (shared / "out.jsonl").read_text().count("\n") >= 3
    proc = _agentroute("memory", "export", "--memory", url, "--out", "/dev/null", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = _agentroute("memory", "export", "--memory", url, "--out", shared / "new.jsonl", cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()  # a file to create there: still refused, one line
    assert proc.returncode == 2 and len(lines) == 1 and f"{shared} is not writable" in lines[0], proc.stderr


def test_run_appends_to_a_writable_file_in_a_folder_it_cannot_write(tmp_path, shared):
    with StubOpenAIServer() as server:
        proc = _agentroute(*_run_args(tmp_path, server), "--out", shared / "out.jsonl", "--resume", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    old, line = (shared / "out.jsonl").read_text().splitlines()
    assert old == "old" and '"status": "done"' in line


def _read_only(tmp_path: Path) -> Path:
    out = tmp_path / "kept.jsonl"
    out.write_text("mine\n")
    out.chmod(0o444)
    return out


def _refused_read_only(proc: subprocess.CompletedProcess[str], out: Path) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr  # was: 1, PermissionError's traceback
    assert len(lines) == 1 and "--out" in lines[0] and f"{out} is read-only" in lines[0], proc.stderr
    assert out.read_text() == "mine\n"


def test_memory_export_to_a_read_only_file_is_one_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    logged_memory(url, 3)
    out = _read_only(tmp_path)
    _refused_read_only(_agentroute("memory", "export", "--memory", url, "--out", out, cwd=tmp_path), out)


def test_run_to_a_read_only_file_is_one_line_before_the_batch(tmp_path):
    out = _read_only(tmp_path)
    with StubOpenAIServer() as server:
        proc = _agentroute(*_run_args(tmp_path, server), "--out", out, "--resume", cwd=tmp_path)
    _refused_read_only(proc, out)
    assert not (tmp_path / "m.db").exists()  # refused before the memory was opened


def test_memory_export_through_a_link_to_a_missing_folder_creates_it(tmp_path):
    """``--out`` a symbolic link to a file in a folder that does not exist yet: made, as for a path."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    logged_memory(url, 3)
    link = tmp_path / "latest.jsonl"
    link.symlink_to(tmp_path / "runs" / "r1" / "logs.jsonl")
    proc = _agentroute("memory", "export", "--memory", url, "--out", link, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr  # was: 1, FileNotFoundError's traceback
    assert (tmp_path / "runs" / "r1" / "logs.jsonl").read_text().count("\n") >= 3

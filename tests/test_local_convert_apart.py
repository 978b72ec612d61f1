"""The GGUF conversion running apart (``convert_apart``), met by a user script: an interrupt of the
script stops its conversion, and a cache that cannot be written is converted once, not twice."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.test_local_exit import _alive, _children_of, _running
from tests.tiny_gguf import write_tiny_gguf

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="reads child processes off /proc"
)

# a plain script (no CLI): load the model, report how, or what stopped it; then stay alive (a notebook's kernel)
SCRIPT = textwrap.dedent("""
    import sys, time
    from agentroute.pool.backends.local import LocalModel
    try:
        print(LocalModel.shared(sys.argv[1]).loaded_from, flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        time.sleep(30)
""")


def _converting(pid: int) -> list[int]:
    return [child for child, command in _children_of(pid) if "local_convert" in command and _alive(child)]


def test_an_interrupt_of_the_script_stops_its_conversion(tmp_path: Path) -> None:
    """SIGINT to the script alone (a notebook's interrupt, an IDE's stop): the conversion child is
    stopped before the KeyboardInterrupt reaches the script (was: left converting, unsupervised, and a
    second load started a second conversion beside it)."""
    interrupt_stops_the_conversion(tmp_path, SCRIPT)


def interrupt_stops_the_conversion(tmp_path: Path, script: str) -> None:
    """Run ``script`` (a tiny GGUF's path its argument; it prints "interrupted" at a KeyboardInterrupt),
    SIGINT it once its conversion child runs: the child is gone by then, nothing half-written left."""
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    env = {"AGENTROUTE_CACHE": str(tmp_path / "cache"), "AGENTROUTE_PROGRESS": "0"}
    with _running([sys.executable, "-c", script, str(gguf)], stdout=subprocess.PIPE,
                  env={**os.environ, **env}, cwd=tmp_path) as proc:  # fmt: skip
        deadline = time.monotonic() + 120
        while not (children := _converting(proc.pid)):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate(timeout=60)
            time.sleep(0.01)
        proc.send_signal(2)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "interrupted"
        assert [c for c in children if _alive(c)] == []
        assert not list((tmp_path / "cache").glob("models/.tmp-*"))


def test_a_cache_that_cannot_be_written_is_converted_once(tmp_path: Path) -> None:
    """$AGENTROUTE_CACHE under a file (as a read-only disk): the model loads from its GGUF in the
    process, no child converts it first only to fail to cache it (was: converted twice, ~30 s each)."""
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    (tmp_path / "file").write_text("")
    env = {"AGENTROUTE_CACHE": str(tmp_path / "file" / "cache"), "AGENTROUTE_PROGRESS": "0"}
    loads_in_process(tmp_path, SCRIPT, gguf, env)


def loads_in_process(tmp_path: Path, script: str, gguf: Path, env: dict[str, str]) -> None:
    """Run ``script`` on ``gguf``: it loads the model from the GGUF itself, no conversion child ever started."""
    with _running([sys.executable, "-W", "ignore", "-c", script, str(gguf)], stdout=subprocess.PIPE,
                  env={**os.environ, **env}, cwd=tmp_path) as proc:  # fmt: skip
        seen: set[int] = set()
        while proc.poll() is None:
            seen.update(_converting(proc.pid))
            time.sleep(0.01)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.strip() == "gguf"
    assert seen == set()


def test_a_conversion_stopped_by_the_exit_says_so(tmp_path: Path) -> None:
    """The script ends while a thread of its own converts (a non-daemon one, which Python would wait
    for): the load is refused saying the process is exiting (was: 'the conversion of the model was
    interrupted (exit None)')."""
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    script = textwrap.dedent("""
        import os, sys, threading, time
        from pathlib import Path
        from agentroute.pool.backends.local import LocalModel
        threading.Thread(target=LocalModel.shared, args=(sys.argv[1],)).start()
        def converting():  # a child process of this one runs the conversion
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == os.getpid():
                        return True
                except (OSError, ValueError, IndexError):
                    pass
        while not converting():
            time.sleep(0.01)
    """)
    env = {**os.environ, "AGENTROUTE_CACHE": str(tmp_path / "cache"), "AGENTROUTE_PROGRESS": "0"}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(gguf)], capture_output=True, text=True, env=env, timeout=240
    )
    assert proc.stderr.strip().splitlines()[-1] == (
        f"agentroute.errors.BackendError: {gguf}: the local model was not loaded: the process is exiting"
    ), proc.stderr[-2000:]
    assert not list((tmp_path / "cache").glob("models/.tmp-*"))


def test_the_conversion_ignores_modules_in_the_working_folder(tmp_path: Path) -> None:
    """A script run from elsewhere, in a folder holding a ``gguf.py`` of the user's: the child imports
    what the script imports, not the folder's files (was: ``python -m`` put the working folder first
    on the child's path, its conversion failed and the script converted again in-process)."""
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    scripts, work = tmp_path / "scripts", tmp_path / "work"
    scripts.mkdir()
    work.mkdir()
    (scripts / "load.py").write_text(SCRIPT)
    (work / "gguf.py").write_text("raise RuntimeError('the working folder was imported')\n")
    env = {**os.environ, "AGENTROUTE_CACHE": str(tmp_path / "cache"), "AGENTROUTE_PROGRESS": "0"}
    proc = subprocess.run(
        [sys.executable, str(scripts / "load.py"), str(gguf)], capture_output=True, text=True, env=env, cwd=work, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "cache", proc.stderr[-2000:]  # converted by the child, loaded from its cache
    assert "working folder" not in proc.stderr


def test_a_frozen_app_converts_in_process(tmp_path: Path) -> None:
    """An app frozen into one executable (PyInstaller sets ``sys.frozen``; ``sys.executable`` is the
    app): no child is started with it — that would start the app again — and the model loads."""
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    env = {"AGENTROUTE_CACHE": str(tmp_path / "cache"), "AGENTROUTE_PROGRESS": "0"}
    loads_in_process(tmp_path, "import sys; sys.frozen = True\n" + SCRIPT, gguf, env)

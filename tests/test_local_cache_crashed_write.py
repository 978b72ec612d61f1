"""A process that dies while it writes a converted model's cache leaves its temporary folder
(``<cache>/models/.tmp-<name>-<pid>-<hex>``, the whole model's size); the next load of a GGUF model
sweeps it once nothing has written there for ``STALE_TMP_S``, by the rule that sweeps the old
SmolLM2 copy's leftovers (was: kept for ever). A live writer's folder, younger, is kept."""

from __future__ import annotations

import os
import resource
import signal
import time
from pathlib import Path

import pytest

pytest.importorskip("gguf")
pytest.importorskip("transformers")
pytest.importorskip("torch")

from agentroute.pool.backends.local import LocalModel  # noqa: E402
from tests.tiny_gguf import write_tiny_gguf  # noqa: E402


def crashing_load(gguf_file: Path, cache: Path) -> int:
    """The signal that killed a process loading ``gguf_file``: the kernel's SIGXFSZ when the cache
    it writes outgrows 64 KiB, as it would kill a process anyhow mid-write (a fork of this one, so torch is not imported again)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it (a write fails instead)
            resource.setrlimit(resource.RLIMIT_FSIZE, (65536, resource.RLIM_INFINITY))
            LocalModel.load(str(gguf_file), cache=cache)
        finally:
            os._exit(3)
    deadline = time.monotonic() + 120  # bounded: a child stuck after the fork is killed, not waited on for ever
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked load neither finished nor crashed within 120 s")
    status = done[1]
    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status)


def test_a_crashed_cache_write_is_swept_by_a_later_load_once_stale(tmp_path: Path) -> None:
    gguf_file = write_tiny_gguf(tmp_path / "tiny.gguf", width=128)
    LocalModel.load(str(gguf_file), cache=tmp_path / "warm")  # transformers' lazy imports, once for both processes
    cache = tmp_path / "cache"
    assert crashing_load(gguf_file, cache) == signal.SIGXFSZ
    (left,) = (cache / "models").glob(".tmp-*")  # the crash's half-written cache
    live = cache / "models" / f".tmp-tiny-80-{os.getpid()}-0123abcd"  # another process writing now
    live.mkdir()
    (live / "model.safetensors").write_bytes(b"\0" * 8)
    old = time.time() - 86400  # a day: past STALE_TMP_S
    for path in (left, *left.iterdir()):
        os.utime(path, (old, old))
    model = LocalModel.load(str(gguf_file), cache=cache)
    assert model.loaded_from == "gguf" and not left.exists()
    assert (live / "model.safetensors").is_file()  # young: perhaps a live writer's
    assert [p.name for p in (cache / "models").iterdir() if p.name.startswith(".tmp-")] == [live.name]

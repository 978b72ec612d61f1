"""``HFPolicy.load`` of a GGUF (the default Router-R1 policy, SmolLM2) converts it as the local
backend does, in a child process (``convert_apart``), met by a user script: an interrupt stops the
conversion, and a script that ends while a thread of its own loads the policy exits in one line.

Before: the policy converted the GGUF in its own process, a conversion neither an interrupt of the
caller nor the interpreter's exit could stop (SIGABRT when it ran in a thread as Python finalized)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.test_local_convert_apart import _converting, interrupt_stops_the_conversion, pytestmark  # noqa: F401 (the /proc skip)
from tests.tiny_gguf import write_tiny_gguf

# a plain script: load the policy, report its model's width, or what stopped it; then stay alive (a notebook's kernel)
SCRIPT = textwrap.dedent("""
    import sys, time
    from agentroute.training.lm_policy import HFPolicy
    try:
        print(HFPolicy.load(sys.argv[1]).model.config.hidden_size, flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        time.sleep(30)
""")


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "AGENTROUTE_CACHE": str(tmp_path / "cache"), "AGENTROUTE_PROGRESS": "0"}


def test_an_interrupt_stops_the_policys_conversion(tmp_path: Path) -> None:
    interrupt_stops_the_conversion(tmp_path, SCRIPT)  # was: no child, converted in the script's process


def test_the_policy_loads_from_the_cache_its_child_wrote(tmp_path: Path) -> None:
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    for _ in range(2):  # converted once, then read from the cache
        done = subprocess.run([sys.executable, "-W", "ignore", "-c", SCRIPT, str(gguf)], env=_env(tmp_path),
                              cwd=tmp_path, capture_output=True, text=True, timeout=240)  # fmt: skip
        assert (done.returncode, done.stdout.strip()) == (0, "64"), done.stderr[-2000:]
    assert len(list((tmp_path / "cache").glob("models/*/agentroute-cache.json"))) == 1


def test_a_policy_load_stopped_by_the_exit_says_so(tmp_path: Path) -> None:
    """The script ends while a thread of its own loads the policy: the load is refused saying the
    process is exiting, the conversion stopped."""
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    script = textwrap.dedent("""
        import os, sys, threading, time
        from agentroute.training.lm_policy import HFPolicy
        from tests.test_local_convert_apart import _converting
        loading = threading.Thread(target=HFPolicy.load, args=(sys.argv[1],))
        loading.start()
        while loading.is_alive() and not _converting(os.getpid()):
            time.sleep(0.01)
    """)
    proc = subprocess.run([sys.executable, "-c", script, str(gguf)], capture_output=True, text=True,
                          env={**_env(tmp_path), "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
                          timeout=240)  # fmt: skip
    assert proc.stderr.strip().splitlines()[-1] == (
        f"agentroute.errors.BackendError: {gguf}: the local model was not loaded: the process is exiting"
    ), proc.stderr[-2000:]
    assert not list((tmp_path / "cache").glob("models/.tmp-*"))


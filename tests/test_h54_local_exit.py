"""A process that ends while the local model is generating exits as it was ending, promptly:
was SIGABRT ("terminate called without an active exception", rc -6), the daemon worker thread
still inside torch while Python finalized."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

# generation has begun (first text seen), then the script ends as the test says, the pool never closed
SCRIPT = textwrap.dedent("""
    import asyncio, sys, time
    from agentroute.pool.backends.local import LocalBackend, RowWatcher
    from agentroute.pool.card import ModelCard

    card = ModelCard(id="smol", backend="local", model="SmolLM2-135M-Instruct.Q4_1.gguf",
                     input_price=0.05, output_price=0.2, max_tokens=2000)
    seen = []
    batcher = LocalBackend().batcher(card)
    answer = batcher.submit([{"role": "user", "content": "Write a very long story about a dragon."}],
                            2000, 0.0, None, RowWatcher(on_text=seen.append))
    queued = batcher.submit([{"role": "user", "content": "And another one."}], 2000, 0.0, None)
    while not seen:
        time.sleep(0.02)
    print("generating", flush=True)
    if sys.argv[1] == "wait":
        time.sleep(600)  # until the test's SIGINT
    sys.exit(int(sys.argv[1]))
""")


def _start(tmp_path: Path, how: str) -> subprocess.Popen[str]:
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    return subprocess.Popen(
        [sys.executable, str(script), how], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _wait_generating(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    assert proc.stdout.readline() == "generating\n", proc.communicate(timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("code", [0, 3])
def test_a_script_ending_mid_generation_exits_with_its_own_code(tmp_path: Path, code: int) -> None:
    proc = _start(tmp_path, str(code))
    _wait_generating(proc)
    ended = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "terminate called" not in err
    assert time.monotonic() - ended < 5


@pytest.mark.slow
def test_ctrl_c_mid_generation_ends_by_sigint_promptly(tmp_path: Path) -> None:
    proc = _start(tmp_path, "wait")
    _wait_generating(proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    _, err = proc.communicate(timeout=60)
    took = time.monotonic() - sent
    assert proc.returncode == -signal.SIGINT, err  # Python's own end for an uncaught KeyboardInterrupt
    assert "terminate called" not in err and "KeyboardInterrupt" in err
    assert took < 5, took  # the worker stops within a token (0.04 s measured); the rest is torch's teardown

"""A signal sent to a real ``agentroute`` process at a chosen point of its start-up or work: once a
given module has imported, as ``-X importtime`` reports it (each import prints a line on standard
error as it completes)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


def signal_after_import(command: list[str], module: str, sig: int, *, cwd: Path, env: dict[str, str],
                        timeout_s: float = 300) -> tuple[int, list[str]]:
    """Run ``command`` (in ``cwd``, under ``env``), send it ``sig`` as soon as ``module`` has
    imported, and return its exit status and the standard-error lines that are not import timings.

    The process starts with SIGINT's default action, as a shell's foreground job has (a test run in
    the background may ignore SIGINT, and Python then leaves Ctrl-C unhandled); it is killed if it
    outlives ``timeout_s``."""
    proc = subprocess.Popen(  # faulthandler: a SIGABRT prints every thread's stack (see below)
        command, cwd=cwd, env=dict(env, PYTHONPROFILEIMPORTTIME="1", PYTHONFAULTHANDLER="1"), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    lines: list[str] = []
    sent = threading.Event()

    def read() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            if line.startswith("import time:"):
                if not sent.is_set() and line.rstrip().split("|")[-1].strip() == module:
                    proc.send_signal(sig)
                    sent.set()
            else:
                lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    hung = False
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:  # where it hangs, for the failure to show: its threads' stacks
        hung = True
        proc.send_signal(signal.SIGABRT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    assert sent.is_set(), f"{module} was never imported by {command}: {lines}"
    assert not hung, f"still running {timeout_s:g} s after the signal; its stderr:\n" + "\n".join(lines[-150:])
    return proc.returncode, lines


#: A ``train router-r1`` recipe whose SFT warm-up makes 50 calls of the real local SmolLM2 (minutes
#: on CPU): a run of it can be stopped while its pool calls run. Append ``policy: DIR``.
ROUTER_R1_TRACES = """
pool:
  - {id: smol-direct, backend: local, model: SmolLM2-135M-Instruct.Q4_1.gguf, input_price: 0.05,
     output_price: 0.20, max_tokens: 48, strategies: [direct], timeout_s: 900}
data: {train: 50}
loop: {max_turns: 1, turn_tokens: 16, info_tokens: 48}
sft: {enabled: true, traces: 50, epochs: 1, batch_size: 4, direct_every: 0}
"""


def signal_while_traces_are_built(args: list[str], sig: int, *, cwd: Path, env: dict[str, str]) -> tuple[int, list[str]]:
    """Run ``python -m <args>`` (a ``train router-r1`` on :data:`ROUTER_R1_TRACES`), send it ``sig``
    2 s after the policy's weights and then the pool's model (at the first trace's call) have loaded,
    and return its exit status and the standard-error lines other than weight loading."""
    proc = subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=cwd)  # fmt: skip
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(proc.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:  # a failure never leaves the training run going
        deadline = time.monotonic() + 300
        while sum("Loading weights: 100%" in line for line in err) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)
        assert proc.poll() is None, "".join(err)
        proc.send_signal(sig)
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    return proc.returncode, [line for line in err if "Loading weights" not in line and line.strip()]

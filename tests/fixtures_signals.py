"""A signal sent to a real ``agentroute`` process at a chosen point of its start-up or work: once a
given module has imported, as ``-X importtime`` reports it (each import prints a line on standard
error as it completes)."""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path


def signal_after_import(command: list[str], module: str, sig: int, *, cwd: Path, env: dict[str, str],
                        timeout_s: float = 300) -> tuple[int, list[str]]:
    """Run ``command`` (in ``cwd``, under ``env``), send it ``sig`` as soon as ``module`` has
    imported, and return its exit status and the standard-error lines that are not import timings.

    The process starts with SIGINT's default action, as a shell's foreground job has (a test run in
    the background may ignore SIGINT, and Python then leaves Ctrl-C unhandled); it is killed if it
    outlives ``timeout_s``."""
    proc = subprocess.Popen(
        command, cwd=cwd, env=dict(env, PYTHONPROFILEIMPORTTIME="1"), stdout=subprocess.DEVNULL,
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
    try:
        proc.wait(timeout=timeout_s)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    assert sent.is_set(), f"{module} was never imported by {command}: {lines}"
    return proc.returncode, lines

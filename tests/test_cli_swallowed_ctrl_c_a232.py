"""A Ctrl-C that lands where Python cannot raise it, while a command runs: in an object's ``__del__``
or a weakref callback (the garbage collector runs them wherever it happens to run). Python swallows
the ``KeyboardInterrupt`` there ("Exception ignored in …") and the command ran on: once in CI a
``train mlp`` of a million epochs did not stop in 120 s after a Ctrl-C. Now the command stops as
for any Ctrl-C: one line, exit 130. A real SIGINT, in a real process started as the ``agentroute``
script starts (``agentroute.cli`` imported as the command, then :func:`agentroute.cli.main`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import agentroute

SOURCE = Path(agentroute.__file__).resolve().parents[1]  # the checkout under test, for the subprocess

# a command that runs SECONDS unless stopped; WHERE: the finaliser that gets the Ctrl-C (or raises)
PROGRAM = textwrap.dedent(
    """
    import gc, os, signal, sys, time, weakref
    sys.argv = ["agentroute", "spin"]  # as the console script: agentroute.cli arms its start-up handler
    from agentroute.cli import app, main

    WHERE, SECONDS = os.environ["WHERE"], float(os.environ["SECONDS"])

    class Finalised:
        def __del__(self):
            if WHERE == "del-raises":
                raise ValueError("not a stop")
            stop = signal.SIGTERM if WHERE == "del-sigterm" else signal.SIGINT
            os.kill(os.getpid(), stop)  # the KeyboardInterrupt (or Terminated) is raised here, in __del__

    class Node:
        pass

    def finalise() -> None:
        # drop an object whose finaliser gets the Ctrl-C (or raises)
        if WHERE == "weakref":
            node = Node()
            weakref.finalize(node, os.kill, os.getpid(), signal.SIGINT)
            node.cycle = node  # freed by the collector: its callback runs inside the collection
            del node
            gc.collect()
        else:
            Finalised()  # dropped at once

    @app.command("spin")
    def spin() -> None:
        from agentroute.training.stopping import exit_stopped, terminate_as_interrupt

        with terminate_as_interrupt(exiting=True):  # as train and run web: a SIGTERM is a stop, exit 143
            try:
                finalise()
                deadline = time.monotonic() + SECONDS
                while time.monotonic() < deadline:
                    time.sleep(0.01)
            except KeyboardInterrupt as stop:
                exit_stopped(stop, "terminated: spin" if WHERE == "del-sigterm" else "interrupted: spin")
        print("ran on")

    main()
    """
)


def _run(where: str, seconds: float = 30) -> subprocess.CompletedProcess[str]:
    """The program, with SIGINT's default action (as a shell's foreground job has it)."""
    path = os.pathsep.join([str(SOURCE), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, WHERE=where, SECONDS=str(seconds), PYTHONPATH=path)
    return subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=120, env=env,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip


@pytest.mark.parametrize("where", ["del", "weakref"])
def test_a_ctrl_c_swallowed_in_a_finaliser_stops_the_command_with_one_line_and_130(where):
    proc = _run(where)
    assert proc.returncode == 130, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == ["interrupted: spin"], proc.stderr
    assert "ran on" not in proc.stdout


def test_a_sigterm_stop_swallowed_in_a_finaliser_stops_the_command_with_143():
    """Its handler ignores SIGTERM from the first one on: the stop is raised again all the same."""
    proc = _run("del-sigterm")
    assert proc.returncode == 143, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == ["terminated: spin"], proc.stderr
    assert "ran on" not in proc.stdout


def test_another_error_in_a_finaliser_is_still_reported_and_the_command_runs_on():
    """Only a stop is delivered again; any other exception goes to the hook that was there before."""
    proc = _run("del-raises", seconds=0.2)
    assert proc.returncode == 0, proc.stderr
    assert "Exception ignored in" in proc.stderr and "ValueError: not a stop" in proc.stderr
    assert "ran on" in proc.stdout

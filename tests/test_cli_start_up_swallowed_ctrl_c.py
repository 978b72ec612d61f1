"""A Ctrl-C of the command's start-up that lands where Python cannot raise (a weakref callback of the
import system: the project's CI saw it in importlib's module-lock callback) is swallowed there, and
the command still ends on the one line ``interrupted``, exit 130 — no "Exception ignored in …"
traceback (it failed tests/test_cli_signals.py once by timing)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_a_start_up_ctrl_c_swallowed_in_a_weakref_callback_prints_one_line():
    script = textwrap.dedent(
        """
        import signal, sys, weakref
        sys.argv[0] = "agentroute"  # the console script: the package sets its start-up handler
        import agentroute.cli as cli

        class Lock:
            pass

        lock = Lock()
        ref = weakref.ref(lock, lambda r: cli._interrupted_while_starting(signal.SIGINT, None))
        del lock  # the handler runs in the callback: its SystemExit cannot leave it
        cli.start_command()
        print("ran on")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 130, (done.returncode, done.stdout, done.stderr)
    assert done.stderr.strip() == "interrupted", done.stderr
    assert "ran on" not in done.stdout


def test_other_unraisable_errors_are_still_shown():
    script = textwrap.dedent(
        """
        import sys, weakref
        sys.argv[0] = "agentroute"
        import agentroute.cli as cli

        class Thing:
            pass

        thing = Thing()
        ref = weakref.ref(thing, lambda r: 1 / 0)
        del thing
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "ZeroDivisionError" in done.stderr and "Exception ignored" in done.stderr, done.stderr

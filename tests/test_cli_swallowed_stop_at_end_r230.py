"""A Ctrl-C swallowed in a ``__del__`` as a command ends stays with that command.

``agentroute.cli.main`` called from Python (a notebook cell, a script running two commands): the
first command's last act drops an object whose finaliser gets the Ctrl-C. Python swallows it there;
the CLI raises it again in the main thread, from a helper thread — which was still on its way when
``main()`` returned: the ``KeyboardInterrupt`` then hit the caller's next line, outside any command
(exit 0 said the command was not stopped). Now ``main()`` waits for that stop: exit 130, one line,
and the caller's code and the next command run undisturbed. A real SIGINT, in a real process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from tests.test_cli_swallowed_ctrl_c_a232 import SOURCE

PROGRAM = textwrap.dedent(
    """
    import os, signal, sys, time
    from agentroute.cli import app, main

    class Finalised:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)  # the KeyboardInterrupt is raised here, in __del__

    @app.command("spin")
    def spin(stop: bool = False) -> None:
        print("ran")
        if stop:
            Finalised()  # dropped at once, as the command ends

    for args in (["spin", "--stop"], ["spin"]):
        sys.argv = ["agentroute", *args]
        try:
            main()
        except SystemExit as end:
            print("exit", end.code)
        try:
            time.sleep(0.5)  # the caller's own code, after the command
        except KeyboardInterrupt:
            print("leaked into the caller")
    """
)


def test_a_ctrl_c_swallowed_as_a_command_ends_stops_that_command_not_the_callers_next_line():
    path = os.pathsep.join([str(SOURCE), os.environ.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=path),
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == ["ran", "exit 130", "ran", "exit 0"], proc.stdout  # was: leaked
    assert proc.stderr.splitlines() == ["interrupted"], proc.stderr

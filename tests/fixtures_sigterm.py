"""The test run's own signals (a plugin of this suite, listed in conftest.py).

* A SIGTERM (``timeout``'s, a CI cancel) ends the run as a Ctrl-C does. By default it killed
  pytest at once, and what its session fixtures had started stayed behind: a PostgreSQL server
  (run by ``pg_ctl`` in a session of its own) with its ``/tmp/agentroute-pg-*`` folder, the tests'
  subprocesses. Now the running test is interrupted and every fixture is torn down; a second
  SIGTERM kills.
* A run started where SIGINT is ignored (a background job of a shell without job control,
  ``cmd &`` in a script) handles Ctrl-C as in a terminal. An ignored SIGINT is inherited across
  ``exec``: every ``agentroute`` the tests started ignored the Ctrl-C they send it, and ran on
  until the test's timeout (a training run of 200,000 episodes, a 600 s sleep).
"""

from __future__ import annotations

import signal
from types import FrameType

import pytest


def pytest_sessionstart(session: pytest.Session) -> None:
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # children start with SIGINT's default
    if not hasattr(signal, "SIGTERM") or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def terminated(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        session.shouldstop = "terminated by SIGTERM"  # stops after this test, if it swallows the interrupt
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, terminated)

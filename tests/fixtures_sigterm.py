"""A SIGTERM ends a test run as a Ctrl-C does (a plugin of this suite, listed in conftest.py).

By default a SIGTERM (``timeout``'s, a CI cancel) killed pytest at once, and what its session
fixtures had started stayed behind: a PostgreSQL server (run by ``pg_ctl`` in a session of its own)
with its ``/tmp/agentroute-pg-*`` folder, the tests' subprocesses. Now the running test is
interrupted and every fixture is torn down; a second SIGTERM kills.
"""

from __future__ import annotations

import signal
from types import FrameType

import pytest


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(signal, "SIGTERM") or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def terminated(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        session.shouldstop = "terminated by SIGTERM"  # stops after this test, if it swallows the interrupt
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, terminated)

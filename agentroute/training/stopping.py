"""A training run stopped by Ctrl-C or SIGTERM (a job scheduler's end of a job) keeps its checkpoint.

Python's default SIGTERM ends the process at once: no ``finally`` block runs, so the last finished
update is never written. Inside :func:`terminate_as_interrupt` a SIGTERM is a :class:`Terminated`
(a ``KeyboardInterrupt``) instead, so every path that keeps a checkpoint on Ctrl-C keeps it on
SIGTERM too; :func:`exit_stopped` then ends the command as a shell expects (130 SIGINT, 143 SIGTERM;
:func:`agentroute.cli.exit_interrupted`, every command's exit on a stop).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import NoReturn


class Terminated(KeyboardInterrupt):
    """A SIGTERM, raised in the main thread where a Ctrl-C's ``KeyboardInterrupt`` would be."""

    signum = int(getattr(signal, "SIGTERM", 15))


def _raise_terminated(signum: int, frame: FrameType | None) -> NoReturn:
    signal.signal(signum, signal.SIG_IGN)  # a second SIGTERM must not cut the checkpoint write short
    raise Terminated()


@contextlib.contextmanager
def terminate_as_interrupt(*, exiting: bool = False) -> Iterator[None]:
    """Within the block a SIGTERM raises :class:`Terminated` (main thread, POSIX; elsewhere, or when
    SIGTERM is ignored, nothing changes). The previous handler is restored at the end — but with
    ``exiting`` (a command that ends on the stop), after a SIGTERM later ones stay ignored, so one
    arriving while the command says what it kept and exits does not end it by the signal (-15, the
    line unsaid) instead of 143."""
    if not hasattr(signal, "SIGTERM") or threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGTERM)
    if before is signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        if not (exiting and signal.getsignal(signal.SIGTERM) is signal.SIG_IGN):  # SIG_IGN: a SIGTERM came
            signal.signal(signal.SIGTERM, before)


def stop_signal(stop: BaseException) -> int:
    """The signal ``stop`` stands for: SIGTERM for a :class:`Terminated` or an exception that says it
    stands for one (``terminated = True``, e.g. a trainer's own interrupt naming what it saved), else
    SIGINT (a Ctrl-C's ``KeyboardInterrupt``)."""
    if isinstance(stop, Terminated) or getattr(stop, "terminated", False) is True:
        return Terminated.signum
    return int(signal.SIGINT)


def is_terminated(stop: BaseException) -> bool:
    """Whether ``stop`` is a SIGTERM's (:func:`stop_signal`)."""
    return stop_signal(stop) == Terminated.signum


def stop_word(stop: KeyboardInterrupt) -> str:
    """``terminated`` for a SIGTERM, ``interrupted`` for a Ctrl-C: how a stop message starts."""
    return "terminated" if is_terminated(stop) else "interrupted"


def exit_stopped(stop: KeyboardInterrupt, message: str) -> NoReturn:
    """``message`` on standard error (plain text), then exit 128 + the signal ``stop`` stands for:
    143 for a SIGTERM, 130 for a Ctrl-C (:func:`agentroute.cli.exit_interrupted`, every command's exit)."""
    from agentroute.cli import exit_interrupted

    exit_interrupted(message, stop_signal(stop))

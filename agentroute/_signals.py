"""Signals held over a block that must not be cut short (a file swap, a checkpoint write)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """A Ctrl-C or SIGTERM arriving within the block takes effect when it ends, as it would have
    (main thread; elsewhere nothing changes): a checkpoint write is never cut short, whoever sends
    a second signal. Python-level, unlike a thread's signal mask, which a signal delivered to
    another thread (torch's, a progress bar's) would pass."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        caught.append(signum)

    held = [s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None)) if s is not None]
    before = {s: signal.getsignal(s) for s in held}
    held = [s for s in held if before[s] not in (signal.SIG_IGN, None)]  # an ignored one stays ignored
    for s in held:
        signal.signal(s, note)
    try:
        yield
    finally:
        for s in held:
            signal.signal(s, before[s])
        for s in reversed(held):  # a SIGTERM's first: it says more (exit 143) than the Ctrl-C it would hide
            if s in caught:
                signal.raise_signal(s)  # now, to the handler it would have met

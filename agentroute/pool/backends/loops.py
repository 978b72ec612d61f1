"""Connections kept per event loop, each closed on its own loop.

An asyncio connection (an ``openai.AsyncOpenAI`` client's sockets) belongs to the event loop that
opened it: it cannot be used from another loop, nor closed once its loop is closed (its transport
would schedule the close on the dead loop, and is left to warn ``unclosed transport`` when
collected). A user who calls ``asyncio.run(...)`` once per question runs a new loop each time.
:class:`PerLoop` keeps one value per loop and closes it on that loop: when the loop shuts down
(``asyncio.run`` and ``asyncio.Runner`` close the loop's asynchronous generators first, through
``loop.shutdown_asyncgens()``, and each value is watched by one), or at :meth:`PerLoop.aclose`.
A loop closed without ``shutdown_asyncgens()`` cannot close what it opened: ``await aclose()``
before closing such a loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

#: How long :meth:`PerLoop.aclose` waits for another thread's loop to close its value (a loop that
#: is blocked waiting for the caller would otherwise never answer).
OTHER_LOOP_WAIT_S = 10.0


class PerLoop(Generic[T]):
    """One value per event loop (``make()`` on the loop's first :meth:`get`), closed by
    ``close(value)`` on its own loop when that loop shuts down or at :meth:`aclose`."""

    def __init__(self, make: Callable[[], T], close: Callable[[T], Awaitable[None]]) -> None:
        self._make, self._close = make, close
        # loop → (value, the generator whose end closes it: the loop's shutdown_asyncgens ends it)
        self._values: dict[asyncio.AbstractEventLoop, tuple[T, AsyncGenerator[None, None]]] = {}

    def get(self) -> T:
        """The running loop's value."""
        loop = asyncio.get_running_loop()
        entry = self._values.get(loop)
        if entry is None:
            for old in [
                lp for lp in list(self._values) if lp.is_closed()
            ]:  # closed without shutdown_asyncgens
                self._values.pop(old, None)  # list(): other threads' loops add and drop theirs meanwhile
            value = self._make()
            watch = self._watch(loop, value)
            # its first step, here: the running loop's first-iteration hook now tracks it (for
            # shutdown_asyncgens), and the generator waits at its ``yield`` until it is closed
            with contextlib.suppress(StopIteration):
                watch.asend(None).send(None)
            entry = self._values[loop] = (value, watch)
        return entry[0]

    async def _watch(self, loop: asyncio.AbstractEventLoop, value: T) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            if self._values.get(loop, (None,))[0] is value:
                self._values.pop(loop, None)
            try:
                await self._close(value)
            except Exception as exc:  # best effort: neither the loop's shutdown nor aclose() fails on it
                log.warning("closing an event loop's connections failed: %s: %s", type(exc).__name__, exc)

    async def aclose(self) -> None:
        """Close every loop's value on its loop: the running loop's here, a loop running in another
        thread there, a loop left idle (``loop.run_until_complete`` done, not closed) run once more
        in a worker thread to close it. One already closed has lost it."""
        here = asyncio.get_running_loop()
        for loop in list(self._values):
            entry = self._values.pop(loop, None)  # claimed: an aclose() in another thread skips it
            if entry is None or loop.is_closed():
                continue
            watch = entry[1]
            if loop is here:
                await watch.aclose()
            elif loop.is_running():
                done = asyncio.run_coroutine_threadsafe(_finish(watch), loop)
                try:  # waited on in a thread: on a timeout the close stays scheduled there, not cancelled
                    await asyncio.to_thread(done.result, OTHER_LOOP_WAIT_S)
                except (TimeoutError, concurrent.futures.TimeoutError):
                    log.warning(
                        "an event loop in another thread did not close its connections within %g s "
                        "(it is busy or blocked): it closes them when it is free",
                        OTHER_LOOP_WAIT_S,
                    )
            else:  # idle: run once more to close it (its owner starting it meanwhile keeps its value)
                finish = _finish(watch)
                try:
                    await asyncio.to_thread(loop.run_until_complete, finish)
                except RuntimeError:
                    finish.close()
                    self._values.setdefault(loop, entry)


async def _finish(watch: AsyncGenerator[None, None]) -> None:
    with contextlib.suppress(RuntimeError):  # already being closed (its loop shutting down meanwhile)
        await watch.aclose()


__all__ = ["OTHER_LOOP_WAIT_S", "PerLoop"]

"""A connection that fails to close is one warning line, and the other loops' connections are still
closed. Before, a failure at ``asyncio.run``'s shutdown printed asyncio's traceback ("an error
occurred during closing of asynchronous generator"), and in ``pool.aclose()`` it was raised,
leaving the other loops' connections (and the other backends) unclosed."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from agentroute.pool.backends.loops import PerLoop

closed: list[dict[str, str]] = []


async def _close(value: dict[str, str]) -> None:
    if value.get("fails"):
        raise OSError("connection reset")
    closed.append(value)


def test_a_failed_close_at_loop_shutdown_is_one_warning_line(caplog: pytest.LogCaptureFixture) -> None:
    values = PerLoop(dict, _close)

    async def ask() -> None:
        values.get()["fails"] = "yes"

    with caplog.at_level(logging.WARNING):
        asyncio.run(ask())
    assert [(r.levelno, r.exc_info) for r in caplog.records] == [(logging.WARNING, None)], caplog.text
    assert caplog.records[0].getMessage() == "closing an event loop's connections failed: OSError: connection reset"
    assert values._values == {}


def test_a_failed_close_does_not_stop_aclose_closing_the_other_loops(caplog: pytest.LogCaptureFixture) -> None:
    closed.clear()
    values = PerLoop(dict, _close)
    ready = threading.Event()
    other = asyncio.new_event_loop()

    def run_other() -> None:
        other.call_soon(lambda: (values.get().update(name="other"), ready.set()))
        other.run_forever()

    thread = threading.Thread(target=run_other)

    async def here() -> None:
        values.get()["fails"] = "yes"  # this loop's value is closed first, and fails
        thread.start()
        assert await asyncio.to_thread(ready.wait, 2)
        await values.aclose()  # raised OSError before: the other loop's value stayed open

    try:
        with caplog.at_level(logging.WARNING):
            asyncio.run(here())
        assert closed == [{"name": "other"}]
        assert "OSError: connection reset" in caplog.text
    finally:
        if thread.is_alive():
            other.call_soon_threadsafe(other.stop)
            thread.join(2)
        other.close()


def test_a_blocked_loop_in_another_thread_is_named_when_aclose_gives_up(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentroute.pool.backends import loops

    monkeypatch.setattr(loops, "OTHER_LOOP_WAIT_S", 0.2)
    values = PerLoop(dict, _close)
    ready, release = threading.Event(), threading.Event()
    other = asyncio.new_event_loop()

    def blocked() -> None:  # a callback that blocks its loop, as sync code inside it would
        values.get()
        ready.set()
        release.wait(5)

    thread = threading.Thread(target=lambda: (other.call_soon(blocked), other.run_forever()))
    thread.start()
    try:
        assert ready.wait(2)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING):
            asyncio.run(values.aclose())
        assert time.monotonic() - started < 2
        assert "did not close its connections within 0.2 s" in caplog.text  # was silent
        closed.clear()
        release.set()
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0.05), other).result(2)
        assert closed == [{}]  # the close it gave up waiting for ran once the loop was free
    finally:
        release.set()
        other.call_soon_threadsafe(other.stop)
        thread.join(2)
        other.close()


def test_two_threads_closing_at_once_close_each_value_once() -> None:
    closes: list[str] = []

    async def slow_close(value: dict[str, str]) -> None:
        await asyncio.sleep(0.1)
        closes.append(value["name"])

    values = PerLoop(dict, slow_close)
    ready = threading.Event()
    other = asyncio.new_event_loop()
    thread = threading.Thread(
        target=lambda: (other.call_soon(lambda: (values.get().update(name="other"), ready.set())), other.run_forever())
    )
    thread.start()
    failures: list[BaseException] = []

    def close_from_a_thread() -> None:
        try:
            asyncio.run(values.aclose())
        except BaseException as exc:  # noqa: BLE001 - what the user would see
            failures.append(exc)

    busy, release = threading.Event(), threading.Event()
    try:
        assert ready.wait(2)
        other.call_soon_threadsafe(lambda: (busy.set(), release.wait(5)))  # busy while both closers ask it to close
        assert busy.wait(2)
        closers = [threading.Thread(target=close_from_a_thread) for _ in range(2)]
        for closer in closers:
            closer.start()
        deadline = time.monotonic() + 2  # until both asked (old code) or one found nothing left to close
        while len(other._ready) < 2 and all(c.is_alive() for c in closers) and time.monotonic() < deadline:
            time.sleep(0.01)
        release.set()
        for closer in closers:
            closer.join(5)
        assert failures == [] and closes == ["other"]  # was: RuntimeError 'asynchronous generator is already running'
    finally:
        release.set()
        other.call_soon_threadsafe(other.stop)
        thread.join(2)
        other.close()

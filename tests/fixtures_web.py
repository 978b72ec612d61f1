"""Fixtures of the web-agent tests: a real headless Chromium (skipped with the reason when Debian's
``chromium`` + ``chromium-driver`` or the ``web`` extra are missing) and a SQLite memory."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def chromium() -> None:
    pytest.importorskip("miniwob")
    pytest.importorskip("selenium")
    from agentroute.web.env import BrowserNotFoundError, find_chromium

    try:
        find_chromium()
    except BrowserNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def store(tmp_path):
    """A SQLite memory in the test's folder (``tests/test_memory.py`` has its own ``store``)."""
    from agentroute.memory import open_memory

    memory = open_memory(f"sqlite:///{tmp_path / 'web.db'}")
    yield memory
    memory.close()

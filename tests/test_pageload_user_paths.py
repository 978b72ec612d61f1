"""The web agent's page-load limit as users set it: ``$AGENTROUTE_WEB_PAGE_LOAD_S``,
``WebAgent(page_load_timeout_s=)`` and ``run web --page-load-timeout``, against a real loopback
server that accepts the page request and never answers; and, after the limit, no Chromium or
chromedriver of the run is left — counted by the ``TMPDIR`` every browser of the run inherits, so a
process re-parented away from the test (an orphan) is counted too."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentroute.errors import ConfigurationError
from tests.fixtures_reply_server import POLL_S
from tests.fixtures_web import chromium, store  # noqa: F401 (fixtures)
from tests.test_web_h61_user_paths import Hanging

browser = pytest.mark.browser


def browsers_in(folder: Path) -> list[int]:
    """Live processes started with ``TMPDIR`` inside ``folder`` (every browser of this test's run)."""
    mark = f"TMPDIR={folder}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                environ = f.read().split(b"\0")
            with open(f"/proc/{name}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state != b"Z" and any(var.startswith(mark) for var in environ):
            found.append(int(name))
    return found


@pytest.fixture
def hanging() -> Iterator[Hanging]:
    server = Hanging()
    threading.Thread(target=server.serve_forever, args=(POLL_S,), daemon=True).start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def browser_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The run's temporary folder: each browser's own folder (and its processes' TMPDIR) goes inside.
    A short path: Chromium's singleton socket inside must fit a Unix socket name (108 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="ar-pl-"))
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def play_one(monkeypatch: pytest.MonkeyPatch, server: Hanging, store, tmp: Path, **options) -> tuple:  # noqa: F811
    """One click-test episode whose page never loads; the browsers counted while it waits."""
    import miniwob.selenium_instance

    from agentroute.web import WebAgent

    monkeypatch.setattr(miniwob.selenium_instance, "DEFAULT_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}/")
    seen: list[int] = []
    outcome: dict = {}

    def play() -> None:
        try:
            with WebAgent(router="always-skill", memory=store, max_steps=2, **options) as agent:
                outcome["result"] = asyncio.run(agent.run_episode("click-test", seed=0))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            outcome["error"] = exc

    started = time.monotonic()
    worker = threading.Thread(target=play)
    worker.start()
    deadline = time.monotonic() + 60
    while not server.asked.wait(0.1) and worker.is_alive() and time.monotonic() < deadline:
        pass
    assert server.asked.is_set(), f"the browser never asked for the page: {outcome}"
    seen.extend(browsers_in(tmp))  # while the page hangs: the browser is up
    worker.join(90)
    assert not worker.is_alive() and "error" not in outcome, outcome
    return outcome["result"], time.monotonic() - started, seen


@browser
def test_the_environment_variable_sets_the_limit_and_no_browser_is_left(chromium, store, hanging, browser_tmp, monkeypatch):  # noqa: F811
    """Before, the limit was a module constant (30 s): ``$AGENTROUTE_WEB_PAGE_LOAD_S`` was not read."""
    monkeypatch.setenv("AGENTROUTE_WEB_PAGE_LOAD_S", "2")
    assert browsers_in(browser_tmp) == []
    result, elapsed, seen = play_one(monkeypatch, hanging, store, browser_tmp)
    assert result.status == "failed" and "did not load within 2 s" in (result.error or ""), result.error
    assert "AGENTROUTE_WEB_PAGE_LOAD_S" in result.error
    assert elapsed < 25, elapsed
    assert len(seen) >= 2, seen  # chromedriver and Chromium were counted while they ran
    deadline = time.monotonic() + 5  # a SIGKILLed process may take a moment to be reaped
    while browsers_in(browser_tmp) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert browsers_in(browser_tmp) == []
    assert store.get_task(result.task_id).task.status == "failed"


@browser
def test_the_keyword_wins_over_the_environment(chromium, store, hanging, browser_tmp, monkeypatch):  # noqa: F811
    monkeypatch.setenv("AGENTROUTE_WEB_PAGE_LOAD_S", "600")
    result, elapsed, _ = play_one(monkeypatch, hanging, store, browser_tmp, page_load_timeout_s=1.5)
    assert result.status == "failed" and "did not load within 1.5 s" in (result.error or ""), result.error
    assert elapsed < 25, elapsed


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), "soon", True])
def test_a_bad_keyword_is_refused_when_the_agent_is_built(value):
    pytest.importorskip("miniwob")
    from agentroute.web import WebAgent

    with pytest.raises(ConfigurationError, match="page_load_timeout_s must be a number of seconds > 0"):
        WebAgent(router="always-skill", page_load_timeout_s=value)


@pytest.mark.parametrize(("env", "option", "message"), [
    ({"AGENTROUTE_WEB_PAGE_LOAD_S": "abc"}, [], "AGENTROUTE_WEB_PAGE_LOAD_S must be a number of seconds > 0 (got 'abc')"),
    ({"AGENTROUTE_WEB_PAGE_LOAD_S": "-3"}, [], "AGENTROUTE_WEB_PAGE_LOAD_S must be a number of seconds > 0"),
    ({}, ["--page-load-timeout", "0"], "--page-load-timeout must be a number of seconds > 0"),
    ({}, ["--page-load-timeout", "nan"], "--page-load-timeout must be a number of seconds > 0"),
])  # fmt: skip
def test_run_web_refuses_a_bad_limit_before_any_browser(tmp_path, env, option, message):
    pytest.importorskip("miniwob")
    proc = subprocess.run(
        [sys.executable, "-m", "agentroute", "run", "web", "--tasks", "click-test", "--episodes", "1",
         "--memory", f"sqlite:///{tmp_path / 'm.db'}", *option],
        capture_output=True, text=True, timeout=120, env={**os.environ, **env}, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr


@browser
def test_run_web_page_load_timeout_option_fails_the_episode_within_it(chromium, hanging, browser_tmp, tmp_path):  # noqa: F811
    """The command a user types, with MiniWoB's pages served by the hanging server: the option wins
    over the environment, the error names the page (not a Chromium that cannot start)."""
    port = hanging.server_address[1]
    script = (
        "import sys, miniwob.selenium_instance as m\n"
        f"m.DEFAULT_BASE_URL = 'http://127.0.0.1:{port}/'\n"
        "from agentroute.cli import main\n"
        "sys.exit(main())\n"
    )
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", script, "run", "web", "--router", "always-skill", "--tasks", "click-test",
         "--episodes", "1", "--memory", f"sqlite:///{tmp_path / 'm.db'}", "--page-load-timeout", "2"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(browser_tmp), "AGENTROUTE_WEB_PAGE_LOAD_S": "600"},
    )  # fmt: skip
    elapsed = time.monotonic() - started
    out = " ".join((proc.stdout + proc.stderr).split())
    assert hanging.asked.is_set(), out
    assert proc.returncode == 2 and "did not load within 2 s" in out and "No episode was played" in out, out
    assert "check that this Chromium starts" not in out  # Chromium started: the page is what hung
    assert elapsed < 90, elapsed
    assert browsers_in(browser_tmp) == []

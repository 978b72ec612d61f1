"""``run web --miniwob-url`` (``WebAgent(miniwob_url=)``): the task pages come from a MiniWoB++
server of the user's own. Before, the CLI had no such option (the pages were always the ``miniwob``
package's files). A bad URL is one line naming the option, exit 2, before any browser starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from agentroute.errors import ConfigurationError
from agentroute.web.env import check_miniwob_url
from tests.fixtures_web import chromium, miniwob_server  # noqa: F401 (fixtures)


@pytest.mark.browser
def test_run_web_plays_the_pages_of_the_server_its_miniwob_url_names(chromium, miniwob_server, tmp_path):  # noqa: F811
    base = miniwob_server.base.rstrip("/")  # as a user may write it: the trailing / is added
    proc = subprocess.run(
        [sys.executable, "-m", "agentroute", "run", "web", "--miniwob-url", base, "--tasks", "click-test",
         "--episodes", "2", "--router", "always-skill", "--memory", "sqlite:///web.db", "--out", "out.jsonl"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(r["seed"], r["status"], r["success"]) for r in rows] == [(0, "done", True), (1, "done", True)], rows
    assert "/miniwob/click-test.html" in miniwob_server.paths, miniwob_server.paths  # its page, over HTTP
    assert "/core/core.js" in miniwob_server.paths  # and the page's scripts, from beside it


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("127.0.0.1:8080", "is not an http(s):// or file:// URL"),
        ("ftp://h/miniwob/", "is not an http(s):// or file:// URL"),
        ("http://127.0.0.1:0/miniwob/", "the port must be a number 1-65535 (got '0')"),
        ("http://127.0.0.1:99999/", "the port must be a number 1-65535 (got '99999')"),
        ("http://h/miniwob/?task=1", "drop the ?query or #fragment"),
        ("file:///no/such/folder/", "the folder /no/such/folder/ does not exist"),
    ],
)
def test_a_bad_miniwob_url_is_one_line_naming_the_option_exit_2(url, says, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "agentroute", "run", "web", "--miniwob-url", url, "--tasks", "click-test",
         "--memory", "sqlite:///web.db"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --miniwob-url {url!r}") and says in lines[0], lines
    assert not (tmp_path / "web.db").exists()  # refused before the run opened anything


def test_the_python_api_names_its_argument_and_keeps_the_base_folder():
    with pytest.raises(ConfigurationError, match=r"^miniwob_url 'localhost:8080' is not an http"):
        check_miniwob_url("localhost:8080")
    assert check_miniwob_url(" http://127.0.0.1:8080/miniwob ") == "http://127.0.0.1:8080/miniwob/"
    assert check_miniwob_url("https://pages.example/mw/") == "https://pages.example/mw/"


def test_web_agent_refuses_a_bad_miniwob_url_before_any_browser_starts():
    pytest.importorskip("langgraph")
    from agentroute.web import WebAgent

    with pytest.raises(ConfigurationError, match="miniwob_url"):
        WebAgent(router="always-skill", miniwob_url="not a url")

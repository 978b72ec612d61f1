"""A `--policy-url` with an unclosed IPv6 bracket (`http://[::1:8001/v1`) is the one line every other
bad URL gets, exit 2 (was: urllib's `ValueError: Invalid IPv6 URL` traceback, exit 1)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agentroute.errors import ConfigurationError
from agentroute.routers.router_r1.graph import check_policy_url

LINE = "policy server URL {!r} is not an http(s) URL (e.g. http://127.0.0.1:8001/v1)"


@pytest.mark.parametrize("url", ["http://[::1:8001/v1", "http://::1]:8001/v1"])
def test_the_python_api_names_it(url):
    with pytest.raises(ConfigurationError) as caught:
        check_policy_url(url)
    assert str(caught.value) == LINE.format(url)


def test_ask_prints_the_line():
    url = "http://[::1:8001/v1"
    run = subprocess.run([sys.executable, "-m", "agentroute", "ask", "hi", "--graph", "router_r1", "--policy-url", url],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"})
    assert run.returncode == 2 and run.stderr.splitlines() == ["error: " + LINE.format(url)], run.stderr[-2000:]

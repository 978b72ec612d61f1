"""`ask --graph router_r1 --policy-url` that is no http(s) URL (a missing scheme, a typo): one line
naming it, exit 2, before any model loads (was: exit 1 after the pool's model loaded, with urllib's
traceback `ValueError: unknown url type: 'notaurl/models'` from inside the graph run)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agentroute.errors import ConfigurationError
from agentroute.routers.router_r1.graph import build_router_r1_graph, check_policy_url


def test_ask_names_a_policy_url_without_a_scheme():
    command = [sys.executable, "-m", "agentroute", "ask", "Who wrote Dune?", "--graph", "router_r1",
               "--policy-url", "gpu-box/v1", "--memory", "sqlite://"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"})
    assert run.returncode == 2, run.stderr[-2000:]
    assert run.stderr.splitlines() == [
        "error: policy server URL 'gpu-box/v1' is not an http(s) URL (e.g. http://127.0.0.1:8001/v1)"]


@pytest.mark.parametrize("url", ["notaurl", "http://", "ftp://host/v1"])  # a bad port: tests/test_router_r1_policy_port.py
def test_the_python_api_refuses_it_when_the_graph_is_built(url):
    with pytest.raises(ConfigurationError, match="is not an http\\(s\\) URL"):
        build_router_r1_graph(policy_url=url)


def test_a_served_policy_url_passes():
    assert check_policy_url("https://gpu-box:8001/v1") == "https://gpu-box:8001/v1"

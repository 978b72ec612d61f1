"""A `--policy-url` with a bad port says the port is wrong (was: "is not an http(s) URL", which sent
users looking at the scheme of `http://gpu-box:0/v1`). `agentroute ask --policy-url` prints the same
line (exit 2; the CLI path is tests/test_router_r1_policy_url.py)."""

from __future__ import annotations

import pytest

from agentroute.errors import ConfigurationError
from agentroute.routers.router_r1.graph import build_router_r1_graph, check_policy_url


@pytest.mark.parametrize(("url", "port"), [
    ("http://gpu-box:0/v1", "0"), ("http://gpu-box:99999/v1", "99999"), ("https://gpu-box:abc/v1", "abc"),
    ("http://[::1]:70000/v1", "70000"),
])
def test_the_python_api_names_the_port(url, port):
    with pytest.raises(ConfigurationError) as caught:
        build_router_r1_graph(policy_url=url)
    assert str(caught.value) == f"policy server URL {url!r}: the port must be a number 1-65535 (got {port!r})"


def test_good_ports_and_no_port_pass():
    for url in ("http://gpu-box:1/v1", "http://gpu-box:65535/v1", "http://[::1]/v1"):
        assert check_policy_url(url) == url

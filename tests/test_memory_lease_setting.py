"""``$AGENTROUTE_LEASE_CHECK_S``: how often a lease is checked, and with it a reconcile's grace."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("value", ["abc", "0", "nan", "1e9"])
def test_a_wrong_lease_check_is_refused_in_one_line(postgres_url, monkeypatch, value):
    from agentroute.errors import ConfigurationError
    from agentroute.memory import SQLMemory
    from agentroute.memory.claims import lease_grace_s

    monkeypatch.setenv("AGENTROUTE_LEASE_CHECK_S", value)
    with pytest.raises(ConfigurationError, match=r"\$AGENTROUTE_LEASE_CHECK_S must be a number of seconds in \[0.1, 600\]"):
        SQLMemory(postgres_url, migrate=False)
    with pytest.raises(ConfigurationError):
        lease_grace_s()


def test_the_lease_check_sets_the_grace(monkeypatch):
    from agentroute.memory import claims

    monkeypatch.delenv("AGENTROUTE_LEASE_CHECK_S", raising=False)
    assert (claims.LEASE_CHECK_S, claims.LEASE_GRACE_S) == (5.0, 15.0)
    monkeypatch.setenv("AGENTROUTE_LEASE_CHECK_S", " 0.25 ")
    assert (claims.lease_check_s(), claims.lease_grace_s(), claims.LEASE_GRACE_S) == (0.25, 0.75, 0.75)


def test_the_cli_names_the_wrong_setting(postgres_url):
    from agentroute.memory.pgserver import create_database

    url = create_database(postgres_url, "agentroute_memory_lease_setting")
    done = subprocess.run([sys.executable, "-m", "agentroute", "memory", "reconcile", "--memory", url],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "AGENTROUTE_LEASE_CHECK_S": "soon"})  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "$AGENTROUTE_LEASE_CHECK_S must be a number of seconds" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1

"""``agentroute routers list`` shows each option's default as the constructor declares it, and an
option that must be given as required (helper-68's review of d0953f8).

The listing is one real subprocess shared by the module's tests: the command imports every router
module (torch and torch-geometric for graph-router), seconds each time."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import pytest

from agentroute.routers import get_router_class


@pytest.fixture(scope="module")
def listing() -> str:
    run = subprocess.run([sys.executable, "-m", "agentroute", "routers", "list"], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "250"}, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_fixed_shows_its_model_as_required_not_an_empty_default(listing: str) -> None:
    assert "model (required)" in listing and "model=''" not in listing


def test_every_default_shown_is_the_constructors(listing: str) -> None:
    for name in ("knn", "mlp", "mf", "per-task", "random", "explore", "cascade", "ant-colony"):
        for p in inspect.signature(get_router_class(name)).parameters.values():
            assert f" {p.name}={p.default!r} " in listing, (name, p.name)

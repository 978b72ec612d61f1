"""Shared fixtures. Server fixtures live in their own plugin modules, listed here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("COLUMNS", "200")  # rich tables in CLI tests: no wrapping at 80 columns

# Property tests: no per-example deadline on shared 2-core machines; in CI the examples are
# derandomised, so a run is reproducible (locally they stay random, to keep finding new cases).
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("dev"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

pytest_plugins = ["tests.fixtures_postgres", "tests.fixtures_openai_server", "tests.fixtures_web"]

ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path | None:
    """``$AGENTROUTE_DATA``, else ``../shared/data`` beside the checkout."""
    path = Path(os.environ.get("AGENTROUTE_DATA", ROOT.parent / "shared" / "data"))
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = data_root()
    if path is None:
        pytest.skip("logged-outcome data not found: set AGENTROUTE_DATA (CI always has it)")
    return path

"""docs/routers_from_memory.md's Python example, run where a new user first runs it: a folder
whose memory holds no scored task yet."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentroute.errors import ConfigurationError
from agentroute.memory import SQLMemory
from agentroute.memory.export import learned_trajectories
from agentroute.routers import make_router


def test_a_memory_without_scored_tasks_says_how_to_score_them(tmp_path: Path) -> None:
    """Before: 'no scored steps in the trajectories: nothing to learn from' — not how many were
    read, nor how to score them or what else to train on."""
    with SQLMemory(f"sqlite:///{tmp_path / 'memory.db'}") as memory:
        logged = list(learned_trajectories(memory))
    with pytest.raises(ConfigurationError) as refused:
        make_router("knn").fit(logged)
    said = str(refused.value)
    assert "no scored steps in the 0 trajectories" in said and "agentroute feedback" in said and "docs/outcomes.md" in said, said

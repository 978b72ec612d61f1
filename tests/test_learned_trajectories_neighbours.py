"""The memory's learned tasks (``agentroute.memory.export.learned_trajectories``: the scored ones,
and the failed ones their agent's call failed) reach the neighbours of ``train --from``: the graph
planner's ``fit(memory)`` (was: ``trajectories(with_score=True)``, the failed tasks left out), and a
status that is none is refused as the memory refuses it (was: nothing read, no error)."""

from __future__ import annotations

import asyncio

import pytest

from agentroute import make_router
from agentroute.errors import ConfigurationError
from agentroute.memory import SQLMemory
from agentroute.memory.export import learned_trajectories
from agentroute.routers.explore import ExploreRouter
from tests.test_train_from_failed_calls import _log


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """flaky's failed calls fail their tasks (no fallback): a memory with failed tasks to learn."""
    url = f"sqlite:///{tmp_path_factory.mktemp('memory') / 'm.db'}"
    asyncio.run(_log(url, ExploreRouter(base="random", epsilon=0.5, seed=3), max_fallbacks=0))
    return url


def test_a_status_that_is_none_is_refused(url: str) -> None:
    with SQLMemory(url) as memory:
        with pytest.raises(ConfigurationError, match="fialed"):
            list(memory.iter_trajectories(status=["fialed"]))  # the memory's own rule
        with pytest.raises(ConfigurationError, match="fialed"):
            list(learned_trajectories(memory, status=["failed", "fialed"]))  # was: the failed tasks, no error


def test_graph_planner_fit_on_the_memory_learns_its_failed_tasks(url: str) -> None:
    params = {"episodes": 16, "episodes_per_update": 8, "hidden": 16, "seed": 0}
    with SQLMemory(url) as memory:
        learned = list(learned_trajectories(memory))
        assert any(t.task.status == "failed" for t in learned)
        from_memory = make_router("graph-planner", **params).fit(memory)
        from_list = make_router("graph-planner", **params).fit(learned)
    # the same data, the same seed: the same policy (was: the failed tasks' zeros left out of the memory's)
    mine, theirs = from_memory.net_.state_dict(), from_list.net_.state_dict()  # type: ignore[attr-defined]
    assert mine.keys() == theirs.keys()
    assert all(bool((mine[k] == theirs[k]).all()) for k in mine), "fit(memory) trained on other data"

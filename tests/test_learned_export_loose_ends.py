"""The memory's learned tasks (``agentroute.memory.export``): a bad ``limit`` is one line naming it
(was: Python's bare ``islice`` ValueError), and the count behind ``memory export --format
outcomes``' progress bar is the tasks exported (was: the failed tasks by an outage counted too,
which teach nothing and are not exported, so the bar stopped short of its total)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentroute.errors import ConfigurationError
from agentroute.memory import SQLMemory
from agentroute.memory.export import count_learned, learned_trajectories
from agentroute.routers.explore import ExploreRouter
from tests.test_train_from_failed_calls import N, _log

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``N`` tasks, flaky's failed calls failing theirs (no fallback), then ``N`` outages."""
    url = f"sqlite:///{tmp_path_factory.mktemp('memory') / 'm.db'}"
    asyncio.run(_log(url, ExploreRouter(base="random", epsilon=0.5, seed=3), max_fallbacks=0))
    asyncio.run(_log(url, ExploreRouter(base="random", epsilon=0.5, seed=3), first=1000))  # both fail: an outage
    return url


@pytest.mark.parametrize("limit", [-1, 2.5, True])
def test_a_bad_limit_is_one_line_naming_it(url: str, limit: object) -> None:
    with SQLMemory(url) as memory:
        for read in (learned_trajectories, count_learned):
            with pytest.raises(ConfigurationError, match=r"^limit must be a non-negative whole number") as caught:
                list(read(memory, limit=limit))  # type: ignore[arg-type, call-overload]
            assert "\n" not in str(caught.value)


def test_the_count_is_what_is_given(url: str) -> None:
    with SQLMemory(url) as memory:
        failed = memory.trajectories(status=["failed"])
        learned = list(learned_trajectories(memory))
        assert len(failed) > N  # flaky's failures and the outages
        assert len(learned) < 2 * N
        assert count_learned(memory) == len(learned)  # was: 2 * N, the outages counted
        assert count_learned(memory, status=["failed"]) == len(list(learned_trajectories(memory, status=["failed"])))
        assert count_learned(memory, limit=5) == len(list(learned_trajectories(memory, limit=5))) == 5


def test_the_outcomes_export_bar_ends_at_its_total(url: str, tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    env = {**os.environ, "AGENTROUTE_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "agentroute", "memory", "export", "--format", "outcomes", "--memory", url,
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    tasks = {json.loads(line)["task_id"] for line in out.read_text().splitlines()}
    assert len(tasks) == N, tasks  # one-step tasks: the outages left out
    assert f"/{N} " in done.stderr, done.stderr  # the bar's total (was: /48, the outages counted)

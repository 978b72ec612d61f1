"""``agentroute train --from MEMORY --sample F``: the seeded subset is drawn over task ids, so the same
logged tasks give the same subset whatever order the store returns them in (tasks run concurrently
are stored in a different order on each run; the subset followed that order)."""

from __future__ import annotations

import asyncio

from agentroute import AgentGraph, make_router
from agentroute.cli.train_cmd import training_data
from agentroute.memory import SQLMemory
from tests.helpers import replay_pool


def test_a_sample_of_the_same_logs_is_the_same_in_any_stored_order(tmp_path):
    kept = []
    for name, order in (("forward", 1), ("reverse", -1)):
        url = f"sqlite:///{tmp_path}/{name}.db"
        with SQLMemory(url) as memory:
            app = AgentGraph("one").add_role("executor", prompt="p").compile(
                pool=replay_pool(30), router=make_router("cheapest"), memory=memory
            )
            items = [{"query": f"question {i}", "query_id": f"q{i}", "task_id": f"t-{i:03d}"} for i in range(30)]
            asyncio.run(app.arun_many(items[::order], concurrency=1))
        trajectories, note = training_data(url, None, sample=0.5, seed=0)
        assert "seeded subset of 30" in note
        kept.append(sorted(t.task.id for t in trajectories))
    assert len(kept[0]) == 15 and kept[0] == kept[1]

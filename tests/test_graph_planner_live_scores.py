"""The live environment's episodes are scored by the graph as it finishes each task (``arun``'s
gold and metric: ``agentroute.routers.graph_planner.live_env``), so the router's
``observe(last_step, task)`` sees the MCQ score and the memory holds it as ``metric:mcq`` feedback.
Was: the score was added as feedback after the run returned; ``observe`` saw no score. On the real
SmolLM2-135M."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")
pytest.importorskip("torch")

from agentroute.memory import open_memory  # noqa: E402
from agentroute.memory.codec import FEEDBACK_KEY  # noqa: E402
from agentroute.routers.graph_planner.live import with_response_cache  # noqa: E402
from agentroute.routers.graph_planner.live_env import (  # noqa: E402
    FixedWorkflowRouter,
    init_policy,
    live_pool,
    mcq_score,
    run_questions,
    train_live,
)
from agentroute.routers.graph_planner.router import GraphPlannerRouter  # noqa: E402
from agentroute.types import Step, Task  # noqa: E402
from tests.test_graph_planner_live import AGENTS, QUESTION, _app  # noqa: E402

WRONG = {**QUESTION, "id": "q-wrong"}  # the same question, its gold another letter: one of the two scores 0


class _Scores:
    """What a router's ``observe`` was given at the end of each task: its score."""

    def __init__(self) -> None:
        self.seen: dict[str, float | None] = {}

    def observe(self, step: Step, task: Task | None = None) -> None:
        if task is not None:
            self.seen[task.id] = task.score


class _ObservedWorkflow(_Scores, FixedWorkflowRouter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        FixedWorkflowRouter.__init__(self, *args, **kwargs)
        _Scores.__init__(self)


class _ObservedPlanner(_Scores, GraphPlannerRouter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        GraphPlannerRouter.__init__(self, *args, **kwargs)
        _Scores.__init__(self)


@pytest.mark.slow
def test_run_questions_scores_reach_observe_and_the_memory(tmp_path: Path) -> None:
    memory = open_memory(f"sqlite:///{tmp_path}/m.db")
    try:
        live = live_pool(direct_tokens=8, cot_tokens=16)
        with_response_cache(live, memory)
        router = _ObservedWorkflow("smol-direct:direct", plan=False)
        rows = asyncio.run(run_questions(_app(router, live, memory), [QUESTION, WRONG], concurrency=1))
        assert all(r["status"] == "done" for r in rows), rows
        for row, q in zip(rows, (QUESTION, WRONG), strict=True):
            assert row["score"] == mcq_score(row["answer"], q)
            assert router.seen[row["task_id"]] == row["score"], router.seen  # was: None
            task = memory.get_task(row["task_id"]).task  # type: ignore[union-attr]
            assert task.score == row["score"] and task.metadata[FEEDBACK_KEY] == "metric:mcq"
    finally:
        memory.close()


@pytest.mark.slow
def test_train_live_episode_scores_reach_observe(tmp_path: Path) -> None:
    memory = open_memory(f"sqlite:///{tmp_path}/m.db")
    try:
        live = live_pool(direct_tokens=8, cot_tokens=16)
        with_response_cache(live, memory, charge_hits=True)
        router = init_policy(_ObservedPlanner(cost_weight=0.3, minibatch=4, ppo_epochs=1), AGENTS, cost_scale=5e-6)
        log = asyncio.run(train_live(router, _app(router, live, memory, greedy=False), [QUESTION], episodes=2,
                                     per_update=1, concurrency=1, memory=memory, seed=1))  # fmt: skip
        scored = [t.task for t in memory.trajectories() if t.task.score is not None]
        assert len(router.seen) == 2 and all(score is not None for score in router.seen.values()), router.seen  # was: None
        assert [router.seen[t.id] for t in scored] == [t.score for t in scored]
        assert [row["score"] for row in log] == [t.score for t in sorted(scored, key=lambda t: t.created_at)]
    finally:
        memory.close()

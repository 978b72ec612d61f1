"""The graph planner's history and the pheromone colonies learn a logged task's steps by the one
rule of ``agentroute.outcomes.learned_scores``: a failed call scores 0 for its agent, and feedback
judges the task's answer over the step's own score (was: each had its own copy, which left failed
calls out and let a web episode's last reward beat the feedback given on it)."""

from __future__ import annotations

import numpy as np

from agentroute.memory import SQLMemory
from agentroute.routers.graph_planner.memory import HistoryMemory
from agentroute.routers.pheromone import paths_from_trajectories
from agentroute.types import Agent, Step, Task, Trajectory

A, B = Agent(model="a"), Agent(model="b")


def _memory(url: str) -> SQLMemory:
    """A task whose call to ``a`` failed (HTTP 500) and fell back to ``b``, given feedback 0.7; a
    two-step episode whose last step's reward is 0.9, given feedback 0.4."""
    memory = SQLMemory(url)
    fallback, web = Task(query="q fallback", status="done", answer="x"), Task(query="q web", status="done", score=0.9)
    trajectories = [
        Trajectory(task=fallback, steps=[
            Step(task_id=fallback.id, index=0, stage="execute", agent=A, input="q fallback", status="failed", error="HTTP 500"),
            Step(task_id=fallback.id, index=1, stage="execute", agent=B, input="q fallback", output="x"),
        ]),
        Trajectory(task=web, steps=[
            Step(task_id=web.id, index=0, stage="act", agent=A, input="page 1", output="click", score=0.2),
            Step(task_id=web.id, index=1, stage="act", agent=B, input="page 2", output="y", score=0.9),
        ]),
    ]  # fmt: skip
    for trajectory in trajectories:
        memory.start_task(trajectory.task)
        for step in trajectory.steps:
            memory.record_step(step)
        memory.finish_task(trajectory.task)
    memory.add_feedback(fallback.id, 0.7)
    memory.add_feedback(web.id, 0.4)
    memory.flush()
    return memory


def test_the_graph_planners_history_learns_failed_calls_and_feedback(tmp_path):
    with _memory(f"sqlite:///{tmp_path / 'm.db'}") as memory:
        history = HistoryMemory.from_store(memory, embed=lambda texts: np.ones((len(texts), 4), np.float32))
    rows = sorted(zip(history.agent, history.score.tolist(), strict=True))
    assert rows == [("a:direct", 0.0), ("a:direct", 0.2), ("b:direct", 0.4), ("b:direct", 0.7)], rows


def test_a_colonys_paths_take_the_feedback_on_the_answer(tmp_path):
    with _memory(f"sqlite:///{tmp_path / 'm.db'}") as memory:
        records, _, _, _ = paths_from_trajectories(memory.trajectories())
    scores = sorted((s.column, s.score) for sample, _ in records for s in sample.steps)
    assert scores == [("a", 0.2), ("b", 0.4), ("b", 0.7)], scores

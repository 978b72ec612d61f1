"""Feedback on tasks of several steps is learned: it judges the task's answer (its last ``ok``
step) over that step's own score, a task with a fallback and a web episode included (was: feedback
reached one-step tasks alone, and a failed call whose fallback answered was learned as a success).
The memory's read says whether a task's score is feedback (``agentroute.memory.codec.FEEDBACK_KEY``)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from agentroute.errors import ConfigurationError
from agentroute.memory import SQLMemory
from agentroute.memory.codec import FEEDBACK_KEY
from agentroute.memory.export import outcome_rows
from agentroute.memory.tables import TASKS
from agentroute.outcomes import OutcomeTable, learned_scores
from agentroute.types import Agent, Step, Task, Trajectory
from tests.fixtures_memory import memory_url  # noqa: F401 - the fixture: SQLite, PostgreSQL

A, B = Agent(model="a"), Agent(model="b")


def _store(memory: SQLMemory) -> dict[str, Trajectory]:
    """A task whose call to ``a`` failed and fell back to ``b``; a web-like episode of two steps,
    each with its own reward, the last one's the task's; the same episode never given feedback."""
    out = {}
    fallback = Task(query="q fallback", status="done", answer="x")
    web, plain = (Task(query=f"q {name}", status="done", answer="y", score=0.9) for name in ("web", "plain"))
    out["fallback"] = Trajectory(task=fallback, steps=[
        Step(task_id=fallback.id, index=0, stage="execute", agent=A, input="q fallback", status="failed", error="HTTP 500"),
        Step(task_id=fallback.id, index=1, stage="execute", agent=B, input="q fallback", output="x"),
    ])  # fmt: skip
    for task in (web, plain):
        out[task.query[2:]] = Trajectory(task=task, steps=[
            Step(task_id=task.id, index=0, stage="act", agent=A, input="page 1", output="click", score=0.2),
            Step(task_id=task.id, index=1, stage="act", agent=B, input="page 2", output="y", score=0.9),
        ])  # fmt: skip
    for trajectory in out.values():
        memory.start_task(trajectory.task)
        for step in trajectory.steps:
            memory.record_step(step)
        memory.finish_task(trajectory.task)
    memory.add_feedback(fallback.id, 0.7, source="user")
    memory.add_feedback(web.id, 0.4, source="metric:em")
    memory.flush()
    return out


def test_feedback_judges_the_answer_of_a_task_of_several_steps(memory_url):  # noqa: F811
    with SQLMemory(memory_url) as memory:
        ids = {name: t.task.id for name, t in _store(memory).items()}
        read = {t.task.id: t for t in memory.trajectories()}
        fallback, web, plain = (read[ids[name]] for name in ("fallback", "web", "plain"))
        assert fallback.task.metadata[FEEDBACK_KEY] == "user" and web.task.metadata[FEEDBACK_KEY] == "metric:em"
        assert FEEDBACK_KEY not in plain.task.metadata
        assert memory.get_task(ids["web"]).task.metadata[FEEDBACK_KEY] == "metric:em"  # type: ignore[union-attr]
        # a failed call scores 0 for its agent; the feedback judges the fallback's answer
        assert [s for _, s in learned_scores(fallback)] == [0.0, 0.7]
        # a web episode's feedback beats its last step's own reward; the earlier step keeps its own
        assert [s for _, s in learned_scores(web)] == [0.2, 0.4]
        assert [s for _, s in learned_scores(plain)] == [0.2, 0.9]  # no feedback: the steps' own scores
        # train --from's table and the outcomes export learn the same
        rows = [(r["query"], r["agent"], r["score"]) for r in outcome_rows([fallback, web, plain])]
        assert rows == [
            ("q fallback", A.key, 0.0), ("q fallback", B.key, 0.7),
            ("page 1", A.key, 0.2), ("page 2", B.key, 0.4), ("page 1", A.key, 0.2), ("page 2", B.key, 0.9),
        ]  # fmt: skip
        table = OutcomeTable.from_trajectories([fallback, web, plain])
        cell = {(q, a): float(table.scores[i, j]) for i, q in enumerate(table.queries) for j, a in enumerate(table.models)}
        assert cell[("q fallback", A.key)] == 0.0 and cell[("q fallback", B.key)] == 0.7
        assert cell[("page 2", B.key)] == pytest.approx((0.4 + 0.9) / 2)
        # the mark is the read's, never stored: a task written back from a read keeps its meta clean
        memory.finish_task(web.task)
        memory.flush()
        with memory.engine.connect() as conn:
            meta = conn.execute(sa.select(TASKS.c.meta).where(TASKS.c.id == ids["web"])).scalar_one()
        assert FEEDBACK_KEY not in meta


@pytest.mark.parametrize("score", [1.5, -0.1, float("nan"), float("inf"), True, "0.5"])
def test_add_feedback_refuses_a_score_outside_0_1(tmp_path, score):
    """As ``agentroute feedback --score`` does (exit 2): was stored, e.g. 1.5, and learned as such."""
    with SQLMemory(f"sqlite:///{tmp_path / 'm.db'}") as memory:
        task = Task(query="q", status="done")
        memory.start_task(task)
        with pytest.raises(ConfigurationError, match=r"feedback score must be a number in \[0, 1\].*got"):
            memory.add_feedback(task.id, score)
        memory.add_feedback(task.id, 1)
        memory.flush()
        assert memory.get_task(task.id).task.score == 1.0  # type: ignore[union-attr]


def test_eval_from_replays_contexts_without_the_feedback_mark(tmp_path):
    """The mark came after the outcome: the contexts ``eval --from`` replays to a router are the
    served ones, without it (a router reading ``ctx.metadata`` would see the future)."""
    from agentroute.eval.counterfactual import logged_tasks
    from tests.helpers import flaky_outcomes, log_explored

    url = f"sqlite:///{tmp_path / 'm.db'}"
    log_explored(url, 4, flaky_outcomes(4, small_fails_on_odd=False))
    with SQLMemory(url) as memory:
        for trajectory in memory.trajectories():
            memory.add_feedback(trajectory.task.id, 0.5)
        memory.flush()
        trajectories = memory.trajectories()
    assert all(t.task.metadata[FEEDBACK_KEY] == "user" for t in trajectories)
    tasks, _ = logged_tasks(trajectories)
    contexts = [s.context for t in tasks for s in t.steps]
    assert len(contexts) == 4 and all(FEEDBACK_KEY not in c.metadata and c.metadata["query_id"] for c in contexts)

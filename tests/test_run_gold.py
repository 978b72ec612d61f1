"""``app.run(query, gold=...)``: a task scored against its right answer, in Python as in ``run --input``."""

from __future__ import annotations

import asyncio

import pytest

from agentroute import AgentGraph, make_router
from agentroute.errors import UnknownNameError
from agentroute.memory import SQLMemory
from tests.helpers import replay_pool


@pytest.fixture
def app(tmp_path):
    memory = SQLMemory(f"sqlite:///{tmp_path}/m.db")
    graph = AgentGraph("one").add_role("executor", prompt="Answer.")
    yield graph.compile(pool=replay_pool(), router=make_router("cheapest"), memory=memory)
    memory.close()


def test_a_gold_answer_scores_the_task_and_lands_in_the_memory(app):
    right = app.run("q0?", query_id="q0", gold="small says 0")  # replay: small answers "small says 0"
    wrong = app.run("q2?", query_id="q2", gold=["something else", "nope"])  # the replay log says right: gold wins
    partial = app.run("q4?", query_id="q4", gold="small says", metric="f1")
    assert (right.task.score, wrong.task.score) == (1.0, 0.0)
    assert 0.0 < partial.task.score < 1.0
    memory = app.dispatcher.memory
    memory.flush()
    stored = {r.task.id: r.task.score for r in (memory.get_task(x.task.id) for x in (right, wrong, partial))}
    assert stored == {right.task.id: 1.0, wrong.task.id: 0.0, partial.task.id: partial.task.score}
    assert [t.task.id for t in memory.trajectories(with_score=True)] == [right.task.id, wrong.task.id, partial.task.id]


def test_a_bad_metric_fails_before_any_call(app):
    app.run("q0?", query_id="q0")
    with pytest.raises(UnknownNameError, match="metric"):
        app.run("q0?", query_id="q0", gold="x", metric="bleu")
    assert len(app.dispatcher.memory.trajectories()) == 1  # the refused run made no task


async def test_gold_works_in_arun_many_inside_a_running_loop(app):
    results = await app.arun_many([{"query": f"q{i}?", "query_id": f"q{i}", "gold": "small says 0"} for i in (0, 1)], concurrency=2)
    assert [r.task.score for r in results] == [1.0, 0.0]  # q1: "small says 1"
    assert asyncio.get_running_loop() is not None

"""A task's metric score reaches the routers that learn online: ``arun``/``arun_many``/``run``
with ``gold`` score the task before it finishes, so the router's ``observe(last_step, task)``
sees the score (and the memory's feedback row holds the same). Was: the score was set after the
dispatcher's finish had called ``observe``, so the ant colony never learned a gold score — a
model whose every answer was wrong kept its ability and stayed the greedy choice."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agentroute import AgentGraph, ModelCard, ModelPool
from agentroute.memory import SQLMemory
from agentroute.memory.codec import FEEDBACK_KEY
from agentroute.outcomes import OutcomeTable
from agentroute.routers.ant_colony import AntColonyRouter
from agentroute.types import Agent, RouteContext, Step, Task
from tests.fixtures_reply_server import JSONHandler, LoopbackServer

MODELS = ("lyon", "paris")  # each answers its own name; "lyon" sorts first, so it wins a tie
N = 16


class _Handler(JSONHandler):
    """Each model answers its own name, capitalised: ``paris`` is right, ``lyon`` always wrong."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.chat_body()
        if body is None:
            return
        self.send_json(200, {
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
            "choices": [{"index": 0, "message": {"role": "assistant", "content": body["model"].title()}, "finish_reason": "stop"}],
        })  # fmt: skip


@pytest.fixture
def pool() -> Iterator[ModelPool]:
    """The two models on a loopback OpenAI-compatible server, priced alike."""
    with LoopbackServer(_Handler) as server:
        models = ModelPool([
            ModelCard(id=m, backend="openai", model=m, base_url=server.url, input_price=1.0, output_price=2.0,
                      max_tokens=8, timeout_s=10.0, strategies=["direct"])
            for m in MODELS
        ])  # fmt: skip
        try:
            yield models
        finally:
            asyncio.run(models.aclose())


class _Colony(AntColonyRouter):
    """The ant colony, keeping a copy of each finished task that ``observe`` was given."""

    def observe(self, step: Step, task: Task | None = None) -> None:
        if task is not None:
            self.__dict__.setdefault("tasks_seen", []).append(task.model_copy(deep=True))
        super().observe(step, task)


@pytest.fixture
def colony() -> Iterator[_Colony]:
    """A colony warm-started on one query both models answered right, at the same cost: a tie. It
    explores nearly uniformly (a high ``explore_temperature``), so both models are served whatever
    it learns meanwhile; its greedy pick shows what it learned."""
    table = OutcomeTable(query_ids=["w"], queries=["warm"], models=list(MODELS),
                         scores=np.array([[1.0, 1.0]]), costs=np.array([[0.001, 0.001]]))  # fmt: skip
    router = _Colony(intent="none", explore_temperature=1000.0).fit(table)
    try:
        yield router
    finally:
        router.close()


def _greedy_pick(router: AntColonyRouter, stage: str) -> str:
    router.set_params(greedy=True)
    try:
        agents = [Agent(role="executor", model=m) for m in MODELS]
        return router.route(RouteContext(query="question 99", candidates=agents, role="executor", stage=stage)).agent.model
    finally:
        router.set_params(greedy=False)


def _check(router: _Colony, url: str, stage: str) -> None:
    """The colony learned lyon wrong and paris right, from the scores the memory holds too."""
    assert router.flush(30)
    with SQLMemory(url) as memory:
        trajectories = memory.trajectories()
    scores = {t.task.id: t.task.score for t in trajectories}
    assert len(scores) == N and {t.steps[0].agent.model for t in trajectories} == set(MODELS)  # both explored
    assert {t.id: t.score for t in router.__dict__["tasks_seen"]} == scores  # was: every score None
    served = [t.steps[0].agent.model for t in trajectories]
    colony = router.export_pheromones()
    seen = {m: colony["observations"].get(f"{stage}/{m}", {}).get("general", 0) for m in MODELS}
    assert seen == {m: served.count(m) for m in MODELS}, seen  # each answer learned (was: none, no score)
    learned = {m: colony["ability"][f"{stage}/{m}"]["general"] for m in MODELS}
    assert learned["lyon"] < 0.9 < learned["paris"] == 1.0, learned  # lyon's 0s, shrunk toward the prior
    assert router.stats()["accepted"] == sum(s == 1.0 for s in scores.values())  # paris's tasks deposited (was 0)
    assert _greedy_pick(router, stage) == "paris"  # was: lyon (the warm start's tie)


def test_arun_many_with_gold_teaches_the_colony_which_model_is_wrong(tmp_path: Path, pool: ModelPool, colony: _Colony) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    assert _greedy_pick(colony, "executor") == "lyon"  # before serving: the tie

    async def serve() -> str:
        with SQLMemory(url) as memory:
            app = AgentGraph("one").add_role("executor", prompt="answer").compile(pool=pool, router=colony, memory=memory, retries=0)
            results = await app.arun_many([{"query": f"question {i}", "gold": "Paris", "metric": "em"} for i in range(N)])
        assert all(r.status == "done" for r in results)
        return results[0].steps[0].stage

    _check(colony, url, asyncio.run(serve()))


@pytest.mark.parametrize("saver", [None, "sqlite"])
def test_run_with_gold_teaches_the_colony_and_marks_the_score_as_the_memory_reads_it(
    tmp_path: Path, pool: ModelPool, colony: _Colony, saver: str | None
) -> None:
    """The sync ``run`` (under a sync-only checkpointer too: the graph runs in a worker thread):
    the task ``observe`` gets is marked as feedback, as a task read back from the memory is, so
    online learning and ``train --from`` judge the answer by the same rule."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    with contextlib.ExitStack() as stack:
        checkpointer = None
        if saver == "sqlite":
            sqlite = pytest.importorskip("langgraph.checkpoint.sqlite", reason="pip install 'agentroute[checkpoint]'")
            conn = stack.enter_context(contextlib.closing(sqlite3.connect(tmp_path / "c.db", check_same_thread=False)))
            checkpointer = sqlite.SqliteSaver(conn)
        memory = stack.enter_context(SQLMemory(url))
        app = AgentGraph("one").add_role("executor", prompt="answer").compile(
            pool=pool, router=colony, memory=memory, retries=0, checkpointer=checkpointer
        )
        results = [app.run(f"question {i}", gold=["Paris", "paris!"], metric="em") for i in range(N)]
        stored = memory.get_task(results[0].task.id)
    assert stored is not None
    _check(colony, url, results[0].steps[0].stage)
    first = colony.__dict__["tasks_seen"][0]
    assert first.metadata.get(FEEDBACK_KEY) == stored.task.metadata.get(FEEDBACK_KEY) == "metric:em"
    assert results[0].task.score == stored.task.score == first.score


def test_a_batch_with_gold_teaches_the_colony_as_run_input_does(tmp_path: Path, pool: ModelPool, colony: _Colony) -> None:
    """``agentroute run --input`` lines with ``answer``: the batch hands its gold answers to
    ``arun``, the one home of the scoring (was: it scored the task after ``arun`` returned)."""
    from agentroute.batch import BatchRunner

    url = f"sqlite:///{tmp_path / 'm.db'}"
    items = [{"query": f"question {i}", "query_id": f"q{i}", "gold": ["Paris"]} for i in range(N)]

    async def serve() -> list[float | None]:
        with SQLMemory(url) as memory:
            app = AgentGraph("one").add_role("executor", prompt="answer").compile(pool=pool, router=colony, memory=memory, retries=0)
            report = await BatchRunner(app, memory, batch_id="b", concurrency=2, metric="em").run(items)
        return [r.score for r in report.results]

    scores = asyncio.run(serve())
    assert Counter(scores) == Counter(t.score for t in colony.__dict__["tasks_seen"])  # was: every task seen unscored
    _check(colony, url, "executor")


def test_run_input_with_answers_steers_a_saved_colony_in_the_cli(tmp_path: Path, colony: _Colony) -> None:
    """``agentroute run GRAPH --input --router DIR`` (a subprocess, one task at a time): the colony
    learns each line's gold score as it serves, so the later lines go to the right model. Was: it
    learned no score, and drew lyon as often as paris to the end."""
    import json
    import subprocess
    import sys

    from tests.test_batch_server import GRAPH_PY, pool_yaml

    n = 40
    colony.set_params(explore_temperature=1.0)  # the paper's rule: it draws what it learned
    AntColonyRouter.save(colony, tmp_path / "colony")
    (tmp_path / "graph.py").write_text(GRAPH_PY)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"query": f"question {i}", "answer": "Paris"}) + "\n" for i in range(n)))
    url = f"sqlite:///{tmp_path / 'm.db'}"
    with LoopbackServer(_Handler) as server:
        (tmp_path / "pool.yaml").write_text("models:\n" + "".join(pool_yaml(server.url, model=m).removeprefix("models:\n") for m in MODELS))
        done = subprocess.run(
            [sys.executable, "-m", "agentroute", "run", str(tmp_path / "graph.py"), "--input", str(tmp_path / "in.jsonl"),
             "--pool", str(tmp_path / "pool.yaml"), "--memory", url, "--router", str(tmp_path / "colony"), "--concurrency", "1"],
            cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with SQLMemory(url) as memory:
        served = [t.steps[0].agent.model for t in memory.trajectories()]  # oldest first
    assert len(served) == n
    assert served[n // 2 :].count("lyon") <= 3, served  # was about half

"""The ant colony learns failed calls by the one rule (``agentroute.outcomes.learned_scores``): a
failed call scores 0 in its agent's ability (an outage, where every candidate failed, is nobody's
and is left out), while the pheromone is still deposited on the answered path only. Was: online and
offline the colony read its ``ok`` steps alone, so a model that failed half its calls without a
fallback kept its ability and stayed the greedy choice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from agentroute.memory import SQLMemory
from agentroute.outcomes import OutcomeTable
from agentroute.routers.ant_colony import AntColonyRouter
from agentroute.routers.base import Router
from agentroute.routers.explore import ExploreRouter
from agentroute.types import Agent, Decision, RouteContext, Step, Task, Trajectory
from tests.test_train_from_failed_calls import N, _agentroute, _log

FLAKY, STEADY = (Agent(role="executor", model=m) for m in ("flaky", "steady"))


def _warm() -> AntColonyRouter:
    """A colony warm-started on one query both models answered right, at the same cost."""
    table = OutcomeTable(query_ids=["w"], queries=["warm"], models=["flaky", "steady"],
                         scores=np.array([[1.0, 1.0]]), costs=np.array([[0.001, 0.001]]))  # fmt: skip
    return AntColonyRouter(intent="none").fit(table)


def _observations(router: AntColonyRouter, model: str) -> float:
    """How many outcomes the colony learned of ``model`` online (its stage's node, not the warm start's ``*``)."""
    seen = router.export_pheromones()["observations"]
    return sum(v["general"] for node, v in seen.items() if node.endswith(f"/{model}") and not node.startswith("*/"))


def test_the_colony_serving_a_model_that_fails_without_fallback_learns_it_fails(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    router = _warm()
    try:
        asyncio.run(_log(url, router, max_fallbacks=0))
        assert router.flush(30)
        with SQLMemory(url) as memory:
            tasks = memory.trajectories()
        failed = [t for t in tasks if t.task.status == "failed"]
        answered = {m: [t.task.score for t in tasks if t.task.status == "done" and t.steps[-1].agent.model == m] for m in ("flaky", "steady")}
        stage = tasks[0].steps[0].stage
        assert failed and {s.agent.model for t in failed for s in t.steps} == {"flaky"}
        # each failed call, a 0 (was: none learned); each answer, its gold score (metric:em)
        assert _observations(router, "flaky") == len(failed) + len(answered["flaky"])
        assert _observations(router, "steady") == len(answered["steady"])
        ability = router.export_pheromones()["ability"]
        assert ability[f"{stage}/flaky"]["general"] < ability[f"{stage}/steady"]["general"] < 1.0, ability  # 0.64 < 0.85
        assert router.stats()["accepted"] == sum(s == 1.0 for scores in answered.values() for s in scores)
        router.set_params(greedy=True)
        ctx = RouteContext(query="question 99", candidates=[FLAKY, STEADY], role="executor", stage=stage)
        assert router.route(ctx).agent == STEADY  # was flaky (a tie, broken by the key)
    finally:
        router.close()


def test_an_outage_teaches_the_colony_nothing(tmp_path: Path) -> None:
    """Both models refuse every question (with a fallback): nobody's fault, no 0 for either."""
    router = _warm()
    try:
        asyncio.run(_log(f"sqlite:///{tmp_path / 'm.db'}", router, first=1000))
        assert router.flush(30)
        assert router.stats()["observed"] == N
        assert _observations(router, "flaky") == _observations(router, "steady") == 0
    finally:
        router.close()


def _fallback(task_score: float) -> tuple[list[Step], Task]:
    """flaky's call failed, steady's fallback answered; the task scored ``task_score``."""
    task = Task(query="question 1", status="done", score=task_score, cost_usd=0.002)
    decision = Decision(agents=[FLAKY], evidence={"candidates": [FLAKY.key, STEADY.key]})
    steps = [
        Step(task_id=task.id, index=0, stage="execute", agent=FLAKY, input="question 1", status="failed",
             error="HTTP 500", cost_usd=0.001, decision=decision),
        Step(task_id=task.id, index=0, stage="execute", agent=STEADY, input="question 1", cost_usd=0.001,
             decision=decision),
    ]  # fmt: skip
    return steps, task


def test_a_fallback_deposits_on_the_answered_path_and_scores_the_failed_call_0() -> None:
    router = _warm()
    try:
        steps, task = _fallback(1.0)
        for step in steps:
            router.observe(step)
        router.observe(steps[-1], task)
        assert router.flush(30)
        d = router.export_pheromones()
        assert (d["observations"]["execute/flaky"]["general"], d["observations"]["execute/steady"]["general"]) == (1, 1)
        assert d["ability"]["execute/flaky"]["general"] < d["ability"]["execute/steady"]["general"]
        targets = {e["target"] for e in d["edges"]}
        assert "execute/steady" in targets and "execute/flaky" not in targets  # the path: steady's answer alone
        assert router.stats()["accepted"] == 1
    finally:
        router.close()


def test_fit_on_logged_trajectories_learns_the_failed_calls_too() -> None:
    """Offline, a failed task (no fallback) and a fallback's failed call are flaky's 0s; only the
    answered paths are deposited (was: the failed task skipped as 'no finished step')."""
    steps, task = _fallback(1.0)
    lone = Task(query="question 3", status="failed", cost_usd=0.001)
    lone_step = Step(task_id=lone.id, index=0, stage="execute", agent=FLAKY, input="question 3", status="failed",
                     error="HTTP 500", cost_usd=0.001, decision=steps[0].decision)  # fmt: skip
    ok = Task(query="question 2", status="done", score=1.0, cost_usd=0.001)
    answered = Step(task_id=ok.id, index=0, stage="execute", agent=FLAKY, input="question 2", cost_usd=0.001)
    logs = [Trajectory(task=task, steps=steps), Trajectory(task=lone, steps=[lone_step]),
            Trajectory(task=ok, steps=[answered])]  # fmt: skip
    router = AntColonyRouter(intent="none").fit(logs)
    try:
        d = router.export_pheromones()
        assert router.skipped_ == 0, router.skip_reasons_
        assert d["observations"]["execute/flaky"]["general"] == 3  # two failed calls, one right answer
        flaky, steady = (d["ability"][f"execute/{m}"]["general"] for m in ("flaky", "steady"))
        assert flaky < steady, d["ability"]
    finally:
        router.close()


def test_train_ant_colony_from_a_memory_learns_the_failed_tasks(tmp_path: Path) -> None:
    """`agentroute train ant-colony --from` on logs where flaky's failed calls failed their tasks
    (no fallback): its ability is that of its calls, 0.56 as `strongest` learns it (was 1.0: its
    right answers alone, above steady's 0.86), each failed task weighted by its logged propensity."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    asyncio.run(_log(url, ExploreRouter(base="random", epsilon=0.5, seed=3), max_fallbacks=0))
    recipe = tmp_path / "ant.yaml"
    recipe.write_text("params:\n  intent: none\n")
    trained = _agentroute("train", "ant-colony", "--from", url, "--config", str(recipe), "--out", str(tmp_path / "r"))
    assert trained.returncode == 0, trained.stderr
    assert "skipped 0" in " ".join(trained.stdout.split()), trained.stdout
    router = Router.load(tmp_path / "r")
    try:
        ability = router.export_pheromones()["ability"]  # type: ignore[attr-defined]
        assert ability["executor/flaky"]["general"] < 0.7 < ability["executor/steady"]["general"], ability
    finally:
        router.close()  # type: ignore[attr-defined]

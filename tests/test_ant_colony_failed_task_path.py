"""A failed task's partial path is never deposited on (pheromone is for answered paths:
``agentroute.routers.pheromone.learned_path``), even when its last ``ok`` step reported its own
score above the quality gate: its steps still reach the ability table, online and offline. Was: the
gate read the last ok step's score as the task's, and a plan whose execution failed was rewarded."""

from __future__ import annotations

from agentroute.routers.ant_colony import AntColonyRouter
from agentroute.types import Agent, Decision, Step, Task, Trajectory
from tests.test_ant_colony_failed_calls import FLAKY, STEADY, _warm

PLANNER = Agent(role="planner", model="steady")


def _planned_then_failed() -> tuple[list[Step], Task]:
    """steady planned (its own score 0.9, above the gate's 0.5); flaky's execution failed (its fault:
    steady was a candidate too) and no fallback ran, so the task failed unanswered and unscored."""
    task = Task(query="question 5", status="failed", cost_usd=0.002)
    decision = Decision(agents=[FLAKY], evidence={"candidates": [FLAKY.key, STEADY.key]})
    steps = [
        Step(task_id=task.id, index=0, stage="plan", agent=PLANNER, input="question 5", output="a plan",
             score=0.9, cost_usd=0.001),
        Step(task_id=task.id, index=1, stage="execute", agent=FLAKY, input="a plan", status="failed",
             error="HTTP 500", cost_usd=0.001, decision=decision),
    ]  # fmt: skip
    return steps, task


def _plan_edge(router: AntColonyRouter) -> float:
    d = router.export_pheromones()
    (tau,) = [e["tau"]["general"] for e in d["edges"] if e["source"] == "START" and e["target"] == "plan/steady"]
    return float(tau)


def test_observe_learns_a_failed_tasks_steps_but_deposits_nothing() -> None:
    router = _warm()
    try:
        steps, task = _planned_then_failed()
        for step in steps:
            router.observe(step)
        router.observe(steps[-1], task)
        assert router.flush(30)
        stats = router.stats()
        assert (stats["accepted"], stats["rejected"]) == (0, 1), stats  # was (1, 0): the plan's 0.9 passed the gate
        seen = router.export_pheromones()["observations"]
        assert (seen["plan/steady"]["general"], seen["execute/flaky"]["general"]) == (1, 1)  # both learned
    finally:
        router.close()


def test_fit_learns_a_failed_tasks_steps_but_deposits_nothing() -> None:
    steps, task = _planned_then_failed()
    router = AntColonyRouter(intent="none").fit([Trajectory(task=task, steps=steps)])
    try:
        assert router.skipped_ == 0, router.skip_reasons_
        assert _plan_edge(router) == router.tau_min  # logged, never gated in (was: deposited, τ_max)
        seen = router.export_pheromones()["observations"]
        assert (seen["plan/steady"]["general"], seen["execute/flaky"]["general"]) == (1, 1)
    finally:
        router.close()


def test_an_answered_plan_is_still_deposited() -> None:
    steps, task = _planned_then_failed()
    done = task.model_copy(update={"status": "done", "score": 1.0, "answer": "B"})
    answered = [steps[0], steps[1].model_copy(update={"status": "ok", "error": None, "output": "B", "agent": STEADY})]
    router = AntColonyRouter(intent="none").fit([Trajectory(task=done, steps=answered)])
    try:
        assert _plan_edge(router) > router.tau_min
    finally:
        router.close()

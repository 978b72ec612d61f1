"""Which failed calls are learned (``agentroute.outcomes.learned_scores``): a failed call scores 0
for its agent unless it is an outage — every candidate of its decision failed — which is nobody's
fault and left out (``outage_steps``)."""

from __future__ import annotations

from agentroute.outcomes import learned_scores, outage_steps
from agentroute.types import Agent, Decision, Step, Task, Trajectory

A, B = Agent(model="a"), Agent(model="b")


def _trajectory(*tried: tuple[Agent, str], offered: tuple[Agent, ...] | None = None, status: str = "done") -> Trajectory:
    task = Task(query="q", status=status, score=1.0)  # type: ignore[arg-type]
    evidence = {"probabilities": {a.key: 1 / len(offered) for a in offered}} if offered else {}
    steps = [
        Step(task_id=task.id, index=i, stage="execute", agent=agent, input="q", status=status,  # type: ignore[arg-type]
             decision=Decision(agents=[agent], evidence=evidence), output="x" if status == "ok" else "")
        for i, (agent, status) in enumerate(tried)
    ]  # fmt: skip
    return Trajectory(task=task, steps=steps)


def test_a_failed_call_is_its_agents_unless_every_candidate_failed():
    # another candidate answered, or was offered and never tried: a's failure is a's
    assert [s for _, s in learned_scores(_trajectory((A, "failed"), (B, "ok")))] == [0.0, 1.0]
    assert [s for _, s in learned_scores(_trajectory((A, "failed"), offered=(A, B)))] == [0.0]
    # every candidate offered failed: an outage, not learned
    outage = _trajectory((A, "failed"), (B, "failed"), offered=(A, B))
    assert outage_steps(outage) == {s.id for s in outage.steps}
    assert [s for _, s in learned_scores(outage)] == [None, None]
    # a router that records no candidates: only the agents tried are known
    assert [s for _, s in learned_scores(_trajectory((A, "failed")))] == [None]
    assert [s for _, s in learned_scores(_trajectory((A, "blocked"), (B, "ok")))] == [None, 1.0]


def test_a_call_cut_by_the_tasks_budget_or_stop_is_not_its_agents():
    for status in ("budget_exhausted", "interrupted"):
        cut = _trajectory((A, "failed"), offered=(A, B), status=status)
        assert [s for _, s in learned_scores(cut)] == [None], status
    # an earlier failure of the task, another agent answering, stays its agent's; the cut call is left out
    cut = _trajectory((A, "failed"), (B, "ok"), (A, "failed"), status="budget_exhausted")
    assert [s for _, s in learned_scores(cut)] == [0.0, 1.0, None]

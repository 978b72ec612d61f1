"""Routing targets are agents (role × model × strategy), end to end from the memory (issue 12, req 2)."""

from __future__ import annotations

import asyncio
import json
import re

import numpy as np
import pytest

from agentroute import AgentGraph, ModelCard, ModelPool, make_router
from agentroute.eval.answers import exact_match
from agentroute.memory import SQLMemory
from agentroute.outcomes import OutcomeTable, column_agent, find_column
from agentroute.pool.backends.base import Backend
from agentroute.routers.base import Router
from agentroute.routers.explore import ExploreRouter
from agentroute.strategies import extract_answer
from agentroute.types import Agent, Completion, CompletionRequest, RouteContext, Step, Task, Trajectory

STRATEGIES = ("direct", "cot", "sc@3")


class Arithmetic(Backend):
    """One model whose accuracy depends on how it is asked, on "What is A plus B?":

    - ``direct`` (no "step by step" in the system prompt) is right only when A is a multiple of 3;
    - ``cot`` (step by step, temperature 0) is always right;
    - ``sc@3`` samples (temperature 0.7) are right unless A is a multiple of 3 or 5 — the vote too.
    """

    name = "arith"
    blocks = False

    async def complete(self, request: CompletionRequest, card: ModelCard) -> Completion:
        text = request.messages[-1]["content"]
        a, b = (int(x) for x in re.findall(r"\d+", text)[-2:])
        step_by_step = "step by step" in request.messages[0]["content"]
        if not step_by_step:
            right = a % 3 == 0
        elif request.temperature > 0:
            right = a % 3 != 0 and a % 5 != 0
        else:
            right = True
        answer = a + b if right else a + b + 1
        body = f"{a} plus {b}. Answer: {answer}" if step_by_step else str(answer)
        tokens_out = 12 if step_by_step else 2
        return Completion(model=card.id, text=body, tokens_in=30, tokens_out=tokens_out, cost_usd=card.usd(30, tokens_out))


def one_model_pool() -> ModelPool:
    card = ModelCard(id="m", backend="arith", input_price=1.0, output_price=4.0, strategies=list(STRATEGIES), max_tokens=32)
    return ModelPool([card], backends={"arith": Arithmetic()})


def question(i: int) -> tuple[str, str]:
    a, b = 7 + 13 * i % 97, 3 + 5 * i % 11
    return f"What is {a} plus {b}?", str(a + b)


def test_a_one_model_pool_in_three_strategies_is_learnable_from_the_memory(tmp_path):
    url = f"sqlite:///{tmp_path}/memory.db"
    pool = one_model_pool()
    graph = AgentGraph("arith").add_role("executor", prompt="You answer arithmetic questions.")
    items = [question(i) for i in range(150)]
    with SQLMemory(url) as memory:
        # serve with an exploring router (ε-greedy around cheapest = direct), then score every task
        # against its gold answer, as `run --input` does with --metric em
        app = graph.compile(pool=pool, router=ExploreRouter(base="cheapest", epsilon=0.6, seed=1), memory=memory)
        results = asyncio.run(app.arun_many([{"query": q, "task_id": f"t{i:03d}"} for i, (q, _) in enumerate(items)], concurrency=8))
        for result, (_, gold) in zip(results, items, strict=True):
            memory.add_feedback(result.task.id, exact_match(extract_answer(result.answer), gold), source="metric:em")
        memory.flush()
    with SQLMemory(url) as memory:  # a fresh connection: everything comes from the database
        trajectories = memory.trajectories(with_score=True)
    assert len(trajectories) == len(items)
    logged: dict[str, list[float]] = {}
    for t in trajectories:
        logged.setdefault(t.steps[0].agent.key, []).append(float(t.task.score))
    assert set(logged) == {f"executor:m:{s}" for s in STRATEGIES}  # each strategy was explored
    best = max(logged, key=lambda k: np.mean(logged[k]))
    assert best == "executor:m:cot" and np.mean(logged[best]) == 1.0
    assert np.mean(logged["executor:m:direct"]) < 0.6 and np.mean(logged["executor:m:sc@3"]) < 0.9

    table = OutcomeTable.from_trajectories(trajectories)
    assert sorted(table.models) == sorted(logged)  # three targets, not one column for model m
    assert table.propensity is not None and np.all(np.isnan(table.propensity) == np.isnan(table.scores))

    candidates = pool.agents("executor")
    for name in ("knn", "best-single", "strongest"):
        router = make_router(name).fit(trajectories)
        picks = [
            router.route(RouteContext(query=question(i)[0], candidates=candidates)).agent.key
            for i in range(150, 170)  # queries it never saw
        ]
        assert picks.count(best) >= 18, (name, picks)


def test_two_roles_on_one_model_and_strategy_are_two_targets():
    """The planner is right with m:direct and wrong with m:cot; the executor the other way round."""

    def trajectory(i: int, planner: str, executor: str) -> Trajectory:
        task = Task(query=f"question {i}", graph="two", status="done", score=0.5)
        steps = [
            Step(task_id=task.id, index=0, stage="plan", agent=Agent(role="planner", model="m", strategy=planner),
                 input=f"plan {i}", output="p", score=float(planner == "direct")),
            Step(task_id=task.id, index=1, stage="execute", agent=Agent(role="executor", model="m", strategy=executor),
                 input=f"execute {i}", output="e", score=float(executor == "cot")),
        ]  # fmt: skip
        return Trajectory(task=task, steps=steps)

    trajectories = [trajectory(i, ("direct", "cot")[i % 2], ("direct", "cot")[(i // 2) % 2]) for i in range(40)]
    table = OutcomeTable.from_trajectories(trajectories)
    assert set(table.models) == {"planner:m:direct", "planner:m:cot", "executor:m:direct", "executor:m:cot"}
    assert column_agent("planner:m:cot") == Agent(role="planner", model="m", strategy="cot")
    router = make_router("strongest").fit(trajectories)
    assert router.quality_["planner:m:direct"] == 1.0 and router.quality_["executor:m:direct"] == 0.0
    for role, right in (("planner", "direct"), ("executor", "cot")):
        cands = [Agent(role=role, model="m", strategy=s) for s in ("direct", "cot")]
        assert router.route(RouteContext(query="q", candidates=cands, role=role)).agent.strategy == right
    # and a per-query learned router too
    knn = make_router("knn", k=5).fit(trajectories)
    for role, right in (("planner", "direct"), ("executor", "cot")):
        cands = [Agent(role=role, model="m", strategy=s) for s in ("direct", "cot")]
        assert knn.route(RouteContext(query="question 3", candidates=cands, role=role)).agent.strategy == right


def test_role_free_columns_of_datasets_and_old_routers_still_match_every_role(tmp_path):
    from agentroute.testing import sample_outcomes

    table = sample_outcomes(60)  # a dataset: columns are models, no roles
    assert find_column(Agent(role="planner", model="large"), table.models) == table.models.index("large")
    assert table.column(Agent(role="summarizer", model="small")) == table.models.index("small")
    router = make_router("knn").fit(table)
    router.save(tmp_path / "knn")
    manifest = json.loads((tmp_path / "knn" / "router.json").read_text())
    manifest["state"].pop("weighted")  # as an older version saved it
    (tmp_path / "knn" / "router.json").write_text(json.dumps(manifest))
    old = Router.load(tmp_path / "knn")
    ctx = RouteContext(query=table.queries[0], candidates=[Agent(role="planner", model=m) for m in table.models])
    assert old.route(ctx).agent == router.route(ctx).agent
    score, _ = old.predict([ctx])
    assert len(set(np.round(score[0], 9))) == len(table.models)  # each candidate found its own column


@pytest.mark.parametrize("column, key", [("m", "executor:m:direct"), ("m:cot", "executor:m:cot"), ("a:m:sc@3", "a:m:sc@3")])
def test_column_agent_reads_both_forms(column, key):
    assert column_agent(column).key == key

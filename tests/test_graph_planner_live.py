"""GraphPlanner's live environment: the planner graph on the real SmolLM2-135M, the response cache
in a SQLite memory, budgets, fixed workflows and a live PPO update (benchmarks/graph_planner_live.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("torch")

from agentroute.budget import Budget  # noqa: E402
from agentroute.memory import open_memory  # noqa: E402
from agentroute.routers.graph_planner.graph import PROMPTS, build_planner_graph, worst_case  # noqa: E402
from agentroute.routers.graph_planner.live import with_response_cache  # noqa: E402
from agentroute.routers.graph_planner.live_env import (  # noqa: E402
    FixedWorkflowRouter,
    data_root,
    init_policy,
    live_pool,
    load_mcq,
    mcq_letter,
    train_live,
)
from agentroute.routers.graph_planner.router import GraphPlannerRouter  # noqa: E402
from agentroute.types import Agent  # noqa: E402

AGENTS = ["smol-direct:direct", "smol-cot:cot"]
CHOICES = {"A": "bush", "B": "street", "C": "house", "D": "city"}
QUESTION = {"id": "q-local", "task": "openbook_qa", "gold": "A", "choices": CHOICES,
            "question": "Animals died after the removal of a\nA) bush\nB) street\nC) house\nD) city\n"
                        "Answer with the letter of the correct choice."}


def test_mcq_letter_reads_the_final_choice():
    assert mcq_letter("B) street", CHOICES) == "B"
    assert mcq_letter("Think... so the removal matters. Answer: C", CHOICES) == "C"
    assert mcq_letter("A) bush\n\nThe correct answer is D) city.", CHOICES) == "D"  # the stated answer wins
    assert mcq_letter("It is the bush, clearly.", CHOICES) == "A"  # no letter: the quoted choice
    assert mcq_letter("", CHOICES) is None and mcq_letter("Nothing here.", CHOICES) is None


@pytest.mark.skipif(not (data_root() / "llmrouter").exists(), reason="needs $AGENTROUTE_DATA/llmrouter")
def test_load_mcq_reads_gold_letters_and_choices():
    rows = load_mcq("test", 2)
    assert len(rows) == 6 and {r["task"] for r in rows} == {"arc_challenge", "openbook_qa", "commonsense_qa"}
    assert all(r["gold"] in r["choices"] and "A) " in r["question"] for r in rows)


@pytest.fixture(scope="module")
def cache_url(tmp_path_factory) -> str:
    """One response-cache store for the module: a later test's repeated prompts are free."""
    return f"sqlite:///{tmp_path_factory.mktemp('gp_live')}/cache.db"


def _app(router, pool, memory=None, **kw):
    graph = build_planner_graph(max_planner_calls=1, max_subqueries=2, max_tokens={"planner": 24}, memory_rows=0, **kw)
    return graph.compile(pool=pool, router=router, memory=memory)


@pytest.mark.slow
def test_live_planner_graph_cache_makes_the_second_episode_free(tmp_path: Path):
    memory = open_memory(f"sqlite:///{tmp_path}/cache.db")  # empty: the first episode calls the model
    try:
        live = live_pool(direct_tokens=8, cot_tokens=16)  # the weights load once per process
        caches = with_response_cache(live, memory)
        router = FixedWorkflowRouter("smol-direct:direct", plan=True)
        app = _app(router, live, memory)
        first = app.run(QUESTION["question"], query_id=QUESTION["id"])
        roles = [s.agent.role for s in first.steps]
        assert first.status == "done" and roles[0] == "planner" and roles[-1] == "summarizer"
        assert first.cost_usd > 0 and caches["local"].misses == len(first.steps) and caches["local"].hits == 0
        again = app.run(QUESTION["question"], query_id=QUESTION["id"])
        assert again.cost_usd == 0 and again.answer == first.answer and [s.agent.key for s in again.steps] == [
            s.agent.key for s in first.steps]
        assert caches["local"].misses == len(first.steps) and caches["local"].hits == len(again.steps)
    finally:
        memory.close()


@pytest.mark.slow
def test_live_budget_masks_what_it_cannot_afford(cache_url: str):
    memory = open_memory(cache_url)
    try:
        live = live_pool(direct_tokens=8, cot_tokens=16)
        with_response_cache(live, memory, charge_hits=True)
        direct = worst_case(live, Agent(role="executor", model="smol-direct", strategy="direct"), PROMPTS["executor"],
                            QUESTION["question"])
        cot = worst_case(live, Agent(role="executor", model="smol-cot", strategy="cot"), PROMPTS["executor"],
                         QUESTION["question"])
        assert direct.usd < cot.usd
        usd = (direct.usd + cot.usd) / 2  # affords one direct answer, not a cot one, not a plan and its steps
        router = FixedWorkflowRouter("smol-cot:cot", plan=True)
        for _ in range(2):  # the second run is served by the cache, charged as the first
            result = _app(router, live).run(QUESTION["question"], query_id=QUESTION["id"], budget=Budget(usd=usd))
            assert result.status in ("done", "budget_exhausted") and result.cost_usd <= usd + 1e-12
            assert result.steps and all(s.agent.model == "smol-direct" for s in result.steps)
            info = result.state["context"]["graph_planner"]
            assert info["masked"] > 0
    finally:
        memory.close()


@pytest.mark.slow
def test_live_ppo_update_through_the_graph(cache_url: str):
    memory = open_memory(cache_url)  # the cache, and the interaction memory the policy reads
    try:
        live = live_pool(direct_tokens=8, cot_tokens=16)
        with_response_cache(live, memory, charge_hits=True)
        router = init_policy(GraphPlannerRouter(cost_weight=0.3, minibatch=4, ppo_epochs=1), AGENTS, cost_scale=5e-6)
        before = [p.detach().clone() for p in router.net_.parameters()]
        log = asyncio.run(train_live(router, _app(router, live, memory, greedy=False), [QUESTION], episodes=2,
                                     per_update=1, concurrency=1, memory=memory, seed=1))
        assert [row["episodes"] for row in log] == [1, 2] and router.recording is None
        assert all(row["violations"] == 0 for row in log) and all(row["steps"] >= 1 for row in log)
        after = list(router.net_.parameters())
        assert any(not np.allclose(a.detach().numpy(), b.numpy()) for a, b in zip(after, before, strict=True))
        assert router.history is not None and len(router.history) > 0  # its episodes, scored, read back from the memory
    finally:
        memory.close()

"""GraphPlanner: the MDP's rules, the offline environment, GARNet's SQL memory, the router contract
and the planner graph run through the dispatcher (budgets, memory, audit)."""

from __future__ import annotations

import numpy as np
import pytest

from agentroute.budget import Budget
from agentroute.errors import ConfigurationError
from agentroute.routers.graph_planner.mdp import Workflow, split_plan

pytest.importorskip("torch")

from agentroute import testing  # noqa: E402
from agentroute.routers.graph_planner.env import OfflineEnv  # noqa: E402
from agentroute.routers.graph_planner.memory import HistoryMemory  # noqa: E402
from agentroute.routers.graph_planner.router import GraphPlannerRouter  # noqa: E402
from agentroute.types import Agent, Step, Task  # noqa: E402
from tests.helpers import replay_pool  # noqa: E402

SMALL = {"episodes": 32, "episodes_per_update": 32}


# -- the MDP ---------------------------------------------------------------------------------------
def test_tree_is_processed_depth_first_with_the_stage_rules():
    wf = Workflow("q")
    assert wf.legal_roles() == (True, True, False)  # pending root: plan or execute
    wf.plan("m", ["a", "b"])
    assert [wf.nodes[i].text for i in reversed(wf.stack[1:])] == ["a", "b"]
    assert wf.current().text == "a"  # the first child first
    wf.plan("m", ["a1"])  # second planner call
    assert wf.legal_roles() == (False, True, False)  # planner calls exhausted: execute only
    wf.finish("executor", "m", "x1")
    assert wf.current().text == "a" and wf.legal_roles() == (False, False, True)  # children done: summarise
    with pytest.raises(ValueError, match="not legal"):
        wf.finish("executor", "m", "no")
    wf.finish("summarizer", "m", "sa")
    wf.finish("executor", "m", "xb")
    assert wf.current() is wf.root and wf.legal_roles() == (False, False, True)
    wf.finish("summarizer", "m", "final")
    assert wf.done and wf.root.answer == "final" and wf.legal_roles() == (False, False, False)
    picture = wf.render()
    assert "planner@m" in picture and "└─" in picture


def test_depth_limit_and_subquery_limit():
    wf = Workflow("q", max_planner_calls=5, max_depth=1, max_subqueries=3)
    wf.plan("m", ["1", "2", "3", "4", "5"])
    assert len(wf.root.children) == 3  # at most three sub-queries
    assert wf.legal_roles() == (False, True, False)  # depth 1 is not below max_depth 1


def test_split_plan_reads_numbered_lines():
    assert split_plan("1. A?\n2) B?\n\n- C?\n4. D?") == ["A?", "B?", "C?"]
    wf = Workflow("q")
    wf.plan("m", split_plan("   \n"))  # an empty plan: the node itself becomes the only child
    assert [wf.nodes[c].text for c in wf.root.children] == ["q"]


# -- the offline environment -------------------------------------------------------------------------
def _table():
    return testing.sample_outcomes(12)


def test_offline_executor_outcomes_are_the_logged_ones():
    table = _table()
    env = OfflineEnv(table)
    g = len(env.agents)
    wf = env.new(0)
    cost = env.step(wf, 0, 1 * g + 2)  # execute with "large"
    assert wf.done and env.score(wf) == table.scores[0, 2] and cost == pytest.approx(table.costs[0, 2])


def test_offline_summary_is_a_majority_vote_with_the_summariser_breaking_ties():
    table = _table()
    table.scores[0] = [0.0, 1.0, 1.0]
    env = OfflineEnv(table)
    g = len(env.agents)
    wf = env.new(0)
    env.step(wf, 0, 0 * g + 0)  # plan with "small": k sub-queries
    k = len(wf.root.children)
    for _ in range(k):
        env.step(wf, 0, 1 * g + 1)  # every child executed by "mid" (correct)
    env.step(wf, 0, 2 * g + 0)  # summarised by "small" (wrong): the children outvote it
    assert wf.done and env.score(wf) == 1.0
    assert sum(a[3] for a in wf.actions) == pytest.approx(table.costs[0, 0] * 2 + table.costs[0, 1] * k)


def test_partial_answer_scores_when_the_episode_stops():
    table = _table()
    env = OfflineEnv(table)
    g = len(env.agents)
    wf = env.new(3)
    env.step(wf, 3, 0)
    assert env.score(wf) == 0.0  # nothing answered yet
    env.step(wf, 3, g + 1)
    assert env.score(wf) == table.scores[3, 1]


# -- GARNet's historical memory: the SQL interaction memory ------------------------------------------
def _memory(tmp_path):
    from agentroute.memory import open_memory

    return open_memory(f"sqlite:///{tmp_path}/memory.db")


def _record(memory, qid: str, model: str, score: float | None, task_score: float | None = None) -> None:
    task = Task(query=f"question {qid}", metadata={"query_id": qid})
    memory.start_task(task)
    memory.record_step(Step(task_id=task.id, index=0, stage="execute", agent=Agent(model=model), input=task.query,
                            output="x", cost_usd=0.01, score=score))
    task.status, task.score = "done", task_score
    memory.finish_task(task)


def test_history_is_read_from_the_sql_memory(tmp_path):
    memory = _memory(tmp_path)
    try:
        _record(memory, "a", "small", 1.0)
        _record(memory, "b", "large", None, task_score=0.0)  # the task's score stands in for the step's
        history = HistoryMemory.from_store(memory, embed=lambda texts: np.eye(len(texts), 4))
        assert sorted(history.agent) == ["large:direct", "small:direct"]
        assert sorted(history.score.tolist()) == [0.0, 1.0]
        assert len(HistoryMemory.from_store(memory, limit=1, embed=lambda t: np.eye(len(t), 4))) == 1
    finally:
        memory.close()


def test_history_keeps_the_steps_output_embeddings(tmp_path):
    from agentroute.routers.graph_planner.env import memory_view

    memory = _memory(tmp_path)
    try:
        _record(memory, "a", "small", 1.0)  # its output is "x"
        history = HistoryMemory.from_store(memory)  # the real MiniLM embedder
    finally:
        memory.close()
    from agentroute.routers.utility import embed_texts

    assert history.out_emb is not None and history.out_emb.shape == history.emb.shape
    assert np.allclose(history.out_emb[0], embed_texts(["x"])[0], atol=1e-5)
    view = memory_view(history, history.emb[0], k=4, tau=0.1)
    assert np.allclose(view.task_out, history.out_emb[0], atol=1e-5)  # one row: weight 1
    rows = [{"text": "q", "agent": "small:direct", "score": 1.0, "cost": 0.0, "query": "a", "output": ""}]
    assert HistoryMemory.from_rows(rows, embed=lambda t: np.eye(len(t), 4)).out_emb is None  # no outputs: none
    both = HistoryMemory.from_rows([*rows, {**rows[0], "output": "yes", "query": "b"}], embed=lambda t: np.ones((len(t), 4)))
    assert both.out_emb is not None and not both.out_emb[0].any() and both.out_emb[1].all()  # unknown output: zeros
    assert both.subset([1]).out_emb.shape == (1, 4)


def test_output_embeddings_enter_the_decision(router):
    wf = Workflow("What is 3 plus 4?")
    args = {"agents": ["small:direct", "mid:direct", "large:direct"], "action_cost": np.full(9, 1e-4),
            "available": np.r_[np.zeros(3, bool), np.ones(3, bool), np.zeros(3, bool)], "remaining": None, "budget": None}
    rows = [{"text": "What is 3 plus 4?", "agent": "large:direct", "score": 1.0, "cost": 1e-3, "query": f"h{i}"} for i in range(5)]
    probs = []
    try:
        for output in ("7", "I cannot say."):
            router.attach_memory(HistoryMemory.from_rows([{**r, "output": output} for r in rows]))
            probs.append(router.act(wf, **args)[1])
    finally:
        router.attach_memory(None)
    assert not np.allclose(probs[0], probs[1])


def test_a_policy_saved_before_output_embeddings_loads_and_acts_the_same(router):
    import torch

    from agentroute.routers.graph_planner.policy import EMB

    arrays = router.get_arrays()
    old = dict(arrays)
    for name in ("net.state_mlp.0.weight", "net.value_mlp.0.weight"):
        old[name] = np.asarray(arrays[name])[:, :-EMB]  # the width an earlier policy saved
    loaded = GraphPlannerRouter(**SMALL).fit(testing.sample_outcomes(6))
    loaded.set_arrays(old)
    loaded.set_state(router.get_state())
    wf = Workflow("What is 3 plus 4?")
    args = {"agents": ["small:direct", "mid:direct", "large:direct"], "action_cost": np.full(9, 1e-4),
            "available": np.r_[np.zeros(3, bool), np.ones(3, bool), np.zeros(3, bool)], "remaining": None, "budget": None}
    with torch.no_grad():
        assert np.allclose(router.act(wf, **args)[1], loaded.act(wf, **args)[1], atol=1e-6)  # no memory: task_out = 0


def test_memory_without_scores_is_a_clear_error(tmp_path):
    memory = _memory(tmp_path)
    try:
        _record(memory, "a", "small", None)
        with pytest.raises(ConfigurationError, match="no scores"):
            HistoryMemory.from_store(memory, embed=lambda t: np.eye(len(t), 4))
    finally:
        memory.close()
    with pytest.raises(ConfigurationError, match="not an interaction memory"):
        HistoryMemory.from_store(object())


# -- the router -----------------------------------------------------------------------------------
@pytest.mark.parametrize("check", testing.CHECKS, ids=lambda c: c.__name__)
def test_router_conformance(check, monkeypatch):
    monkeypatch.setitem(testing.KIT_PARAMS, "graph-planner", SMALL)
    check("graph-planner")


@pytest.fixture(scope="module")
def router():
    return GraphPlannerRouter(**SMALL).fit(testing.sample_outcomes())


def test_bad_parameters_are_refused_at_fit():
    with pytest.raises(ConfigurationError, match="'cost_weight'"):
        GraphPlannerRouter(cost_weight=-1).fit(testing.sample_outcomes(6))
    with pytest.raises(ConfigurationError, match="'clip'"):
        GraphPlannerRouter(clip=2.0).fit(testing.sample_outcomes(6))


def test_act_without_any_available_action_is_a_clear_error(router):
    wf = Workflow("q")
    with pytest.raises(ConfigurationError, match="no legal, affordable action"):
        router.act(wf, agents=["small:direct"], action_cost=np.zeros(3), available=np.zeros(3, bool), remaining=None, budget=None)


def test_attached_memory_enters_the_decision(router):
    wf = Workflow("What is 3 plus 4?")
    args = {"agents": ["small:direct", "mid:direct", "large:direct"], "action_cost": np.full(9, 1e-4),
            "available": np.r_[np.zeros(3, bool), np.ones(3, bool), np.zeros(3, bool)], "remaining": None, "budget": None}
    try:
        _, without = router.act(wf, **args)
        rows = [{"text": "What is 3 plus 4?", "agent": "large:direct", "score": 1.0, "cost": 1e-3, "query": f"h{i}"} for i in range(5)]
        router.attach_memory(HistoryMemory.from_rows(rows))
        _, with_memory = router.act(wf, **args)
    finally:
        router.attach_memory(None)
    assert not np.allclose(without, with_memory)


# -- the planner graph through the dispatcher ------------------------------------------------------
def _app(router, memory=None):
    from agentroute.routers.graph_planner.graph import build_planner_graph

    return build_planner_graph().compile(pool=replay_pool(), router=router, memory=memory)


def test_planner_graph_runs_every_step_through_the_dispatcher(router, tmp_path):
    memory = _memory(tmp_path)
    try:
        result = _app(router, memory).run("q1", query_id="q1")
        assert result.status == "done" and result.answer
        assert result.steps and {s.stage for s in result.steps} <= {"plan", "execute", "summarize"}
        assert all(s.decision is not None and s.decision.router == "graph-planner" for s in result.steps)
        tree = result.state["context"]["graph_planner"]["workflow"]
        assert tree["nodes"][0]["status"] == "done"
        memory.flush()
        stored = memory.get_task(result.task.id)
        assert stored is not None and len(stored.steps) == len(result.steps)
    finally:
        memory.close()


def test_budget_below_any_step_ends_cleanly(router, tmp_path):
    memory = _memory(tmp_path)
    try:
        result = _app(router, memory).run("q2", query_id="q2", budget=Budget(usd=1e-6))
        assert result.status == "budget_exhausted" and result.cost_usd == 0 and not result.steps
        assert any(e.kind == "budget_blocked" for e in memory.audit_events(result.task.id))
    finally:
        memory.close()


@pytest.mark.parametrize("usd", [0.0005, 0.0012, 0.003, 0.02, 0.05])
def test_budget_sweep_never_overspends(router, usd):
    app = _app(router)
    for i in range(4):
        result = app.run(f"q{i}", query_id=f"q{i}", budget=Budget(usd=usd))
        assert result.cost_usd <= usd + 1e-12
        assert result.status in ("done", "budget_exhausted")


def test_other_routers_run_the_fixed_execute_workflow():
    from agentroute.routers import CheapestRouter

    result = _app(CheapestRouter()).run("q3", query_id="q3")
    assert result.status == "done" and [s.agent.key for s in result.steps] == ["executor:small:direct"]


def test_unreadable_memory_does_not_stop_the_episode(router, tmp_path):
    memory = _memory(tmp_path)
    try:
        _record(memory, "z", "small", None)  # steps without any score: GARNet cannot read it
        fresh = GraphPlannerRouter.load(router.save(tmp_path / "saved"))
        result = _app(fresh, memory).run("q4", query_id="q4")
        assert result.status == "done" and fresh.history is None
    finally:
        memory.close()


def test_planner_graph_is_a_langgraph_graph_with_checkpoints(router):
    from langgraph.checkpoint.memory import InMemorySaver

    from agentroute.routers.graph_planner.graph import build_planner_graph

    app = build_planner_graph().compile(pool=replay_pool(), router=router, checkpointer=InMemorySaver())
    state = app.invoke({"query": "q5", "query_id": "q5"})
    assert state["status"] == "done" and state["answer"]
    snapshot = app.get_state({"configurable": {"thread_id": state["task_id"]}})
    tree = snapshot.values["context"]["graph_planner"]["workflow"]
    assert tree["nodes"][0]["status"] == "done"  # the tree travels with the checkpoint
    nodes = [next(iter(c)) for c in app.stream({"query": "q6", "query_id": "q6"})]
    assert nodes[0] == "decide" and nodes[-1] == "agentroute_finish"


def test_mask_uses_the_dispatchers_worst_case(router):
    from agentroute.routers.graph_planner.graph import PROMPTS, worst_case

    pool = replay_pool()
    small = worst_case(pool, Agent(role="executor", model="small"), PROMPTS["executor"], "q7", query_id="q7")
    large = worst_case(pool, Agent(role="executor", model="large"), PROMPTS["executor"], "q7", query_id="q7")
    assert small.usd == pytest.approx(0.001) and large.usd == pytest.approx(0.01)  # replay: the logged cost
    assert large.large_calls == 1 and small.large_calls == 0
    # a budget that affords "small" but not "large": the large actions are masked, the task still runs
    result = _app(router).run("q7", query_id="q7", budget=Budget(usd=0.0015))
    info = result.state["context"]["graph_planner"]
    assert info["masked"] > 0 and result.cost_usd <= 0.0015
    assert all(s.agent.model == "small" for s in result.steps)


def test_response_cache_in_the_memory_makes_repeated_episodes_free(router, tmp_path):
    from agentroute.routers.graph_planner.graph import build_planner_graph
    from agentroute.routers.graph_planner.live import with_response_cache

    memory = _memory(tmp_path)
    try:
        pool = replay_pool()
        caches = with_response_cache(pool, memory)
        app = build_planner_graph().compile(pool=pool, router=router, memory=memory)
        first = app.run("q8", query_id="q8")
        again = app.run("q8", query_id="q8")
        assert first.status == again.status == "done" and first.cost_usd > 0
        assert again.cost_usd == 0 and again.answer == first.answer  # served from the memory
        assert caches["replay"].hits == len(again.steps) and caches["replay"].misses == len(first.steps)
    finally:
        memory.close()

import asyncio
from typing import Any

import pytest

from agentroute import AgentGraph, Budget, ConfigurationError, make_router
from agentroute.dispatch.run import LIVE
from agentroute.graph import END
from agentroute.graphs.qa import build_qa_graph, parse_subquestions
from agentroute.loading import load_graph
from tests.helpers import replay_pool


def three_stage() -> AgentGraph:
    g = AgentGraph("three")
    g.add_role("planner", prompt="plan").add_role("executor", prompt="do").add_role("summarizer", prompt="sum")
    return g.add_edge("planner", "executor").add_edge("executor", "summarizer")


def test_builder_validates_each_addition():
    g = AgentGraph("g").add_role("a", prompt="p")
    with pytest.raises(ConfigurationError, match="already exists"):
        g.add_role("a", prompt="p")
    with pytest.raises(ConfigurationError, match="not callable"):
        g.add_node("n", 3)
    g.add_role("b", prompt="p")
    with pytest.raises(ConfigurationError, match="not reachable"):
        g.compile(pool=replay_pool(), router=make_router("cheapest"))
    g.add_edge("a", "b").add_edge("b", "c")  # as in LangGraph, a node may be added after its edges...
    with pytest.raises(ConfigurationError, match="edge 'b' → 'c': unknown node 'c'"):  # ...but must be, by compile
        g.compile(pool=replay_pool(), router=make_router("cheapest"))
    g.add_conditional_edges("c", lambda s: "a", ["a", "d"])
    g.add_role("c", prompt="p")
    with pytest.raises(ConfigurationError, match="conditional edges of 'c': unknown node 'd'"):
        g.compile(pool=replay_pool(), router=make_router("cheapest"))


def test_compile_derives_the_stage_machine_from_edges():
    sm = three_stage().stage_machine()
    assert sm.start == "planner"
    assert sm.transitions["planner"] == {"executor"} and sm.transitions["executor"] == {"summarizer"}
    assert sm.bindings["executor"] == {"executor"}


async def test_three_stage_graph_runs_every_step_routed_under_budget():
    app = three_stage().compile(pool=replay_pool(), router=make_router("strongest"), budget=Budget(usd=0.025))
    result = await app.arun("question", query_id="q1")
    assert result.status == "done"
    assert [(s.stage, s.agent.model) for s in result.steps] == [
        ("planner", "large"), ("executor", "large"), ("summarizer", "small")
    ]
    assert result.cost_usd == pytest.approx(0.021) and result.answer == "small says 1"


async def test_budget_exhausted_midway_stops_the_graph_with_best_partial_answer():
    app = three_stage().compile(pool=replay_pool(), router=make_router("strongest"), budget=Budget(usd=0.0105))
    result = await app.arun("question", query_id="q4")
    assert result.status == "budget_exhausted"
    assert [s.agent.model for s in result.steps] == ["large"]
    assert result.answer == "large says 4" and result.cost_usd <= 0.0105



async def test_a_stopped_task_passes_the_rest_of_a_chain_as_no_ops_and_is_recorded_at_its_end():
    """After a stop the remaining roles make no call; the chain's last node finishes the task. A
    fork (a plain node beside a chain of roles) records the task once, after both branches."""
    from agentroute.memory import SQLMemory

    memory = SQLMemory("sqlite://")
    app = three_stage().compile(pool=replay_pool(), router=make_router("strongest"), memory=memory, budget=Budget(usd=0.0105))
    chunks = [c async for c in app.astream({"query": "question", "query_id": "q4"}, stream_mode="updates")]
    assert [next(iter(c)) for c in chunks] == ["planner", "executor", "summarizer"]
    assert chunks[1]["executor"]["status"] == "budget_exhausted"
    assert chunks[-1]["summarizer"]["status"] == "budget_exhausted" and "outputs" not in chunks[-1]["summarizer"]
    memory.flush()
    trajectory = memory.get_task(chunks[-1]["summarizer"]["agentroute"]["task_id"])
    assert trajectory.task.status == "budget_exhausted" and trajectory.task.answer == "large says 4"
    assert [s.stage for s in trajectory.steps] == ["planner"]

    # a fork (a plain node beside a chain of roles): static edges; one node records the task once
    # both branches are done (it used to be each branch's end, both writing the state in one superstep)
    fork = AgentGraph("fork").add_role("planner", prompt="p").add_node("notes", lambda s, ctx: {"context": {"n": 1}})
    fork.add_role("executor", prompt="e").add_role("summarizer", prompt="s")
    fork.add_edge("planner", "notes").add_edge("planner", "executor").add_edge("executor", "summarizer")
    for usd, stages, status in ((0.0105, ["planner"], "budget_exhausted"), (1.0, ["planner", "executor", "summarizer"], "done")):
        app = fork.compile(pool=replay_pool(), router=make_router("strongest"), budget=Budget(usd=usd))
        result = await app.arun("question", query_id="q4")
        assert result.status == result.state["status"] == status and [s.stage for s in result.steps] == stages
        assert result.state["context"] == {"n": 1}



@pytest.mark.parametrize("path", ["sync", "async"])
def test_a_paused_thread_edited_with_update_state_continues_along_the_chain(path):
    """Human in the loop: pause before a role, edit the state, continue. When a chain's roles routed
    by ``Command(goto=…)``, ``update_state`` could not know the next node: the thread ended there
    with its task ``running`` and one call made."""
    from langgraph.checkpoint.memory import InMemorySaver

    app = three_stage().compile(pool=replay_pool(), router=make_router("cheapest"), checkpointer=InMemorySaver(), budget=Budget(calls=4))
    cfg = {"configurable": {"thread_id": f"edit-{path}"}}
    edit = {"outputs": {"planner": "an edited plan"}}
    if path == "sync":
        app.invoke({"query": "question", "query_id": "q2"}, cfg, interrupt_before=["executor"])
        app.update_state(cfg, edit)
        assert app.get_state(cfg).next == ("executor",)
        out = app.invoke(None, cfg)
    else:
        async def edited() -> dict[str, Any]:
            await app.ainvoke({"query": "question", "query_id": "q2"}, cfg, interrupt_before=["executor"])
            await app.aupdate_state(cfg, edit)
            assert (await app.aget_state(cfg)).next == ("executor",)
            return await app.ainvoke(None, cfg)

        out = asyncio.run(edited())
    assert out["status"] == "done" and out["agentroute"]["ledger"]["spent"][2] == 3
    assert out["outputs"] == {"planner": "an edited plan", "executor": "small says 2", "summarizer": "small says 2"}
    assert app.get_graph().draw_mermaid().count("-->") == 4  # start, two edges, end: drawn as declared


def test_a_role_after_branches_of_different_lengths_runs_once_after_both():
    """planner → retrieve → rerank → writer and planner → websearch → writer: the writer waits for
    both branches (a waiting edge); it ran once per branch before, and the two runs of the end of
    the graph wrote ``answer`` in one superstep (InvalidUpdateError)."""
    g = AgentGraph("dag").add_role("planner", prompt="p")
    for name in ("retrieve", "rerank", "websearch"):
        g.add_node(name, lambda s, ctx, name=name: {"context": {name: 1}})
    g.add_role("writer", prompt="w")
    for src, dst in (("planner", "retrieve"), ("retrieve", "rerank"), ("planner", "websearch"), ("rerank", "writer"), ("websearch", "writer")):
        g.add_edge(src, dst)
    for calls, stages, status in ((5, ["planner", "writer"], "done"), (1, ["planner"], "budget_exhausted")):
        app = g.compile(pool=replay_pool(), router=make_router("cheapest"), budget=Budget(calls=calls))
        result = app.run("question", query_id="q1")
        assert result.status == status and [s.stage for s in result.steps] == stages
        assert result.state["context"] == {"retrieve": 1, "rerank": 1, "websearch": 1}

def test_roles_that_would_run_in_parallel_are_refused_at_compile():
    """A task is in one stage at a time: two roles after one fork were a stage-machine block at run
    time (the second one failed) and, with both writing ``answer``, a LangGraph InvalidUpdateError."""
    g = AgentGraph("fork").add_role("planner", prompt="p").add_role("a", prompt="a").add_node("notes", lambda s, c: {})
    g.add_role("b", prompt="b").add_edge("planner", "a").add_edge("planner", "notes").add_edge("notes", "b")
    with pytest.raises(ConfigurationError, match="after 'planner', 'a' and 'b' would run in parallel.*fan_out"):
        g.compile(pool=replay_pool(), router=make_router("cheapest"))
    diamond = AgentGraph("diamond").add_role("planner", prompt="p").add_node("x", lambda s, c: {})
    diamond.add_node("y", lambda s, c: {}).add_role("writer", prompt="w")
    for src, dst in (("planner", "x"), ("planner", "y"), ("x", "writer"), ("y", "writer")):
        diamond.add_edge(src, dst)
    result = diamond.compile(pool=replay_pool(), router=make_router("cheapest")).run("question", query_id="q1")
    assert result.status == "done" and [s.stage for s in result.steps] == ["planner", "writer"]

def test_invoke_stream_and_checkpointer():
    from langgraph.checkpoint.memory import InMemorySaver

    app = three_stage().compile(pool=replay_pool(), router=make_router("cheapest"), checkpointer=InMemorySaver())
    state = app.invoke({"query": "x", "query_id": "q2"})
    assert state["answer"] == "small says 2" and state["status"] == "done"
    assert set(state["outputs"]) == {"planner", "executor", "summarizer"}
    chunks = list(app.stream({"query": "x", "query_id": "q2"}))
    assert [next(iter(c)) for c in chunks] == ["planner", "executor", "summarizer"]
    snapshot = app.graph.get_state({"configurable": {"thread_id": state["task_id"]}})
    assert snapshot.values["answer"] == "small says 2"


async def test_conditional_edges_and_plain_nodes():
    g = AgentGraph("branchy").add_role("executor", prompt="do")
    g.add_node("check", lambda state, ctx: {"context": {"ok": state["answer"].endswith("0")}})
    g.add_role("refiner", prompt="again")
    g.add_edge("executor", "check")
    g.add_conditional_edges("check", lambda s: END if s["context"]["ok"] else "refiner", ["refiner", END])
    app = g.compile(pool=replay_pool(), router=make_router("cheapest"))
    assert [s.stage for s in (await app.arun("q", query_id="q0")).steps] == ["executor"]
    assert [s.stage for s in (await app.arun("q", query_id="q1")).steps] == ["executor", "refiner"]


async def test_a_checkpointed_thread_runs_again_after_its_budget_ran_out():
    from langgraph.checkpoint.memory import InMemorySaver

    app = three_stage().compile(pool=replay_pool(), router=make_router("cheapest"), checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "conversation-1"}}
    starved = await app.arun("x", query_id="q1", budget=Budget(usd=0.0015), config=config)
    assert starved.status == "budget_exhausted" and len(starved.steps) == 1
    again = await app.arun("x", query_id="q2", budget=Budget(usd=1.0), config=config)
    assert again.status == "done" and len(again.steps) == 3 and again.answer == "small says 2"
    assert config == {"configurable": {"thread_id": "conversation-1"}}  # the caller's config is untouched
    assert again.state["status"] == "done" and again.state["outputs"]["summarizer"] == "small says 2"


async def test_arun_many_keeps_order_and_bounds_concurrency():
    in_flight, most = 0, 0

    async def wait(state, ctx):  # a plain entry node that yields to the loop while it is "working"
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.001)
        in_flight -= 1

    g = AgentGraph("slow").add_node("wait", wait).add_role("executor", prompt="do").add_edge("wait", "executor")
    app = g.compile(pool=replay_pool(), router=make_router("cheapest"))
    done: list[str] = []
    results = await app.arun_many(
        [{"query": "x", "query_id": f"q{i}"} for i in range(40)], concurrency=7, on_done=lambda r: done.append(r.answer)
    )
    assert [r.answer for r in results] == [f"small says {i}" for i in range(40)]
    assert most == 7 and sorted(done) == sorted(r.answer for r in results)
    assert all(LIVE.get(r.task.id) is None and not LIVE.pinned(r.task.id) for r in results)  # nothing kept
    assert await app.arun_many([], concurrency=3) == []
    with pytest.raises(ConfigurationError):
        await app.arun_many(["x"], concurrency=0)


async def test_qa_graph_on_replay_with_bm25_retrieval():
    corpus = [{"title": "France", "text": "Paris is the capital of France."}, {"title": "Peru", "text": "Lima is in Peru."},
              {"title": "Japan", "text": "Tokyo is large."}]
    app = build_qa_graph(corpus=corpus, top_k=1).compile(pool=replay_pool(), router=make_router("cheapest"))
    result = await app.arun("What is the capital of France?", query_id="q6")
    assert [s.stage for s in result.steps][:2] == ["plan", "execute"]  # one sub-question: summarizing is optional
    execute = result.steps[1]
    assert "Paris is the capital of France." in execute.input
    assert result.state["context"]["subquestions"] == ["What is the capital of France?"]


def test_planner_output_parsing_and_graph_loading(tmp_path):
    assert parse_subquestions("- Who is A?\n- Where is B located?", "q", 1) == ["Who is A?"]
    assert load_graph("qa").name == "qa"
    assert load_graph("graphs/qa.py:graph").name == "qa"
    path = tmp_path / "mine.py"
    path.write_text("from agentroute import AgentGraph\ndef graph():\n    return AgentGraph('mine').add_role('executor', prompt='p')\n")
    assert load_graph(str(path)).name == "mine"
    with pytest.raises(ConfigurationError, match="unknown graph"):
        load_graph("nonexistent_graph_module")


def test_a_path_function_that_names_no_target_is_a_clear_error():
    g = AgentGraph("bad").add_role("a", prompt="a").add_role("b", prompt="b")
    g.add_conditional_edges("a", lambda s: "nowhere", ["b", END])
    app = g.compile(pool=replay_pool(), router=make_router("cheapest"))
    with pytest.raises(ConfigurationError, match="conditional edges of 'a': the path function returned 'nowhere', not one of"):
        app.run("q", query_id="q1", task_id="t-bad-path")


async def test_arun_many_checks_every_item_before_running_any_and_stops_all_when_one_raises():
    """A bad budget or a typo in item 15 raised after 15 tasks had run (their results lost); a node
    that raised left the other tasks running unseen after ``arun_many`` had returned."""
    import inspect

    from agentroute.graph import _ARUN_KEYS, CompiledAgentGraph
    from agentroute.memory import SQLMemory

    assert _ARUN_KEYS == set(inspect.signature(CompiledAgentGraph.arun).parameters) - {"self"}
    memory = SQLMemory("sqlite://")
    app = three_stage().compile(pool=replay_pool(), router=make_router("cheapest"), memory=memory)
    good = [{"query": "x", "query_id": f"q{i}"} for i in range(20)]
    for bad, message in (
        ({"query": "x", "budget": {"usd": -1}}, "item 15: budget usd must be non-negative"),
        ({"query": "x", "qid": "q1"}, r"item 15: unknown key\(s\) \['qid'\]"),
        ({"query_id": "q1"}, "item 15: no 'query' string"),
        (("x",), "item 15: expected a query string or a mapping"),
        ({"query": "x", "gold": "y", "metric": "bleu"}, "item 15: .*bleu"),
    ):
        with pytest.raises(ConfigurationError, match=message):
            await app.arun_many([*good[:15], bad, *good[16:]], concurrency=2)
    memory.flush()
    assert memory.stats()["tasks_total"] == 0  # nothing ran

    async def work(state, ctx):
        if state["query"] == "boom":
            raise ValueError("a bug in a node")
        await asyncio.sleep(30)
        return {}

    slow = AgentGraph("slow").add_node("work", work).add_role("executor", prompt="e").add_edge("work", "executor")
    app = slow.compile(pool=replay_pool(), router=make_router("cheapest"), memory=memory)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ValueError, match="a bug in a node"):
        await app.arun_many(["slow 1", "slow 2", "boom", "slow 3", "slow 4"], concurrency=3)
    assert asyncio.get_running_loop().time() - started < 5
    memory.flush()
    assert memory.stats()["tasks"] == {"failed": 1, "interrupted": 2}  # slow 3 and 4 never started


@pytest.mark.parametrize("path", ["sync", "async"])
def test_a_supervisor_node_hands_the_task_to_agents_by_command(path):
    """LangGraph's handoff: a plain node returns ``Command(goto=agent)``. It had to be reachable by
    edges (compile refused it, or ran the edge's target too); with ``destinations=`` it routes itself,
    loops back from each agent, and a stopped task goes from it to the end."""
    from langgraph.types import Command

    def supervisor(state, ctx):
        done = state.get("outputs", {})
        nxt = "researcher" if "researcher" not in done else "writer" if "writer" not in done else END
        return Command(goto=nxt, update={"context": {"visits": state.get("context", {}).get("visits", 0) + 1}})

    g = AgentGraph("team").add_node("supervisor", supervisor, destinations=["researcher", "writer", END])
    g.add_role("researcher", prompt="r").add_role("writer", prompt="w")
    g.add_edge("researcher", "supervisor").add_edge("writer", "supervisor")
    for budget, stages, status, visits in ((None, ["researcher", "writer"], "done", 3), (Budget(calls=1), ["researcher"], "budget_exhausted", 2)):
        app = g.compile(pool=replay_pool(), router=make_router("cheapest"), budget=budget)
        result = app.run("q", query_id="q2") if path == "sync" else asyncio.run(app.arun("q", query_id="q2"))
        assert [s.stage for s in result.steps] == stages and result.status == status and result.answer == "small says 2"
        assert result.state["context"] == {"visits": visits}
    assert "supervisor -.-> researcher" in app.get_graph().draw_mermaid()

    g = AgentGraph("lost").add_node("supervisor", lambda s, ctx: Command(goto="nobody"), destinations=["writer"]).add_role("writer", prompt="w")
    with pytest.raises(ConfigurationError, match=r"declares destinations \['writer'\].*Command\(goto=one of them\)"):
        g.compile(pool=replay_pool(), router=make_router("cheapest")).run("q", query_id="q2")
    with pytest.raises(ConfigurationError, match="already routes"):
        AgentGraph("x").add_node("s", supervisor, destinations=["a"]).add_role("a", prompt="a").add_edge("s", "a")


# -- a notebook user's leftovers (helper-27, helper-29 reports) -------------------------------------
def test_a_task_id_already_in_the_memory_is_refused_before_anything_runs(tmp_path):
    """Re-running a cell with ``task_id="fixed"`` added the steps again and restarted the budget:
    after 3 runs the task row said $0.002 and $0.006 of steps were recorded under it."""
    from agentroute.memory import SQLMemory

    with SQLMemory(f"sqlite:///{tmp_path}/m.db") as memory:
        app = three_stage().compile(pool=replay_pool(), router=make_router("cheapest"), memory=memory)
        first = app.run("x", query_id="q2", task_id="fixed")
        with pytest.raises(ConfigurationError, match="already in the memory .done") as err:
            app.run("x", query_id="q2", task_id="fixed")
        assert "resume" in str(err.value)
        with pytest.raises(ConfigurationError, match="item 1: task_id 'fixed' is already"):
            asyncio.run(app.arun_many([{"query": "x", "query_id": "q1"}, {"query": "x", "query_id": "q2", "task_id": "fixed"}]))
        with pytest.raises(ConfigurationError, match="item 2: task_id 'twice' is also item 0's"):
            app_items = [{"query": "x", "task_id": "twice"}, "y", {"query": "z", "task_id": "twice"}]
            asyncio.run(app.arun_many(app_items))
        assert memory.stats()["tasks"] == {"done": 1}  # neither batch started a task
        memory.flush()
        kept = memory.get_task("fixed")
        assert len(kept.steps) == 3 and kept.task.cost_usd == pytest.approx(first.cost_usd)
        assert sum(s.cost_usd for s in kept.steps) == pytest.approx(kept.task.cost_usd)


def test_run_given_a_state_mapping_says_which_call_takes_it():
    app = three_stage().compile(pool=replay_pool(), router=make_router("cheapest"))
    with pytest.raises(ConfigurationError, match="query text .got dict.*invoke"):
        app.run({"query": "x"})


def test_compile_takes_langgraphs_interrupt_options_and_names_an_unknown_option():
    """``compile(interrupt_before=[...])``, as docs/langgraph.md reads, was a TypeError from the
    dispatcher; a misspelt dispatcher option too."""
    from langgraph.checkpoint.memory import InMemorySaver

    app = three_stage().compile(
        pool=replay_pool(), router=make_router("cheapest"), checkpointer=InMemorySaver(), interrupt_before=["executor"]
    )
    cfg = {"configurable": {"thread_id": "hitl"}}
    app.invoke({"query": "x", "query_id": "q2"}, cfg)
    assert app.get_state(cfg).next == ("executor",)
    assert app.invoke(None, cfg)["status"] == "done"
    with pytest.raises(ConfigurationError, match="no node named 'executer' .did you mean 'executor'"):
        three_stage().compile(pool=replay_pool(), router=make_router("cheapest"), interrupt_before=["executer"])
    with pytest.raises(ConfigurationError, match="unknown option 'retry' .did you mean 'retries'"):
        three_stage().compile(pool=replay_pool(), router=make_router("cheapest"), retry=3)


def test_a_run_result_shows_as_one_line():
    """A cell showing a result printed ~2,500 characters for a 2-step task."""
    result = three_stage().compile(pool=replay_pool(), router=make_router("cheapest")).run("x", query_id="q2")
    shown = repr(result)
    assert shown.startswith("RunResult(status='done', answer='small says 2', cost_usd=0.003")
    assert "planner:small:direct ok" in shown and len(shown) < 300

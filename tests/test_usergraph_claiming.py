"""``claiming(app, memory)`` inside one process: the claim on a thread is exclusive per invocation
and is given back however the invocation ends — an exception, a cancelled task, a consumer that
stops reading a stream — but never while a step of that invocation may still be paid.

Real PostgreSQL server on loopback, real savers; ``other`` is a second memory (its own session, as
another worker process has) that tries the thread's claim.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import agentroute.graph as ag
from agentroute import Budget, Dispatcher, make_router, routed_node
from agentroute.memory import SQLMemory, TaskBusyError
from agentroute.pool import LoggedOutcome, ModelCard, ModelPool, ReplayBackend
from tests.fixtures_claimed_graph import (
    State,
    answer_graph,
    astream_cancelled_mid_node,
    claimable,
    claimed_app,
)
from tests.fixtures_postgres import saver_url
from tests.helpers import replay_pool

pytestmark = pytest.mark.postgres


def _steps(memory: SQLMemory) -> int:
    memory.flush()
    return int(memory.stats()["steps"])


def _twice_at_once(call: Any, running: threading.Event) -> list[Any]:
    """``call`` in two threads of this process (e.g. two requests of one server), the second
    started once the first has set ``running``: each one's result or its ``TaskBusyError``."""
    outcomes: list[Any] = []

    def request() -> None:
        try:
            outcomes.append(call())
        except TaskBusyError as exc:
            outcomes.append(exc)

    first = threading.Thread(target=request)
    first.start()
    assert running.wait(30)
    second = threading.Thread(target=request)
    second.start()
    first.join(60)
    second.join(60)
    return outcomes


def test_two_invocations_of_one_thread_in_one_process_do_not_both_run(checkpoint_db: str) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver

    started = threading.Event()

    def slow(state: State) -> dict:
        started.set()
        time.sleep(1.0)
        return {}

    with SQLMemory(checkpoint_db) as memory, PostgresSaver.from_conn_string(saver_url(checkpoint_db)) as saver:
        saver.setup()
        app = claimed_app(memory, saver, before=slow)
        cfg = {"configurable": {"thread_id": "same-process"}}
        # e.g. two HTTP requests of one server resuming the same thread
        outcomes = _twice_at_once(lambda: app.invoke({"query": "q1", "query_id": "q1"}, cfg), started)
        # was: the claim is counted per process, so the second invocation ran too and paid again
        assert sum(isinstance(o, TaskBusyError) for o in outcomes) == 1, outcomes
        assert _steps(memory) == 1


def test_the_claim_is_given_back_when_the_invocation_raises(checkpoint_db: str) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver

    def broken(state: State) -> dict:
        raise RuntimeError("a tool failed")

    with SQLMemory(checkpoint_db) as memory, SQLMemory(checkpoint_db) as other, PostgresSaver.from_conn_string(saver_url(checkpoint_db)) as saver:
        saver.setup()
        app = claimed_app(memory, saver, after=broken)
        with pytest.raises(RuntimeError, match="a tool failed"):
            app.invoke({"query": "q1", "query_id": "q1"}, {"configurable": {"thread_id": "raises"}})
        assert claimable(other, "thread:raises", within_s=0.5)
        assert _steps(memory) == 1  # the paid step was committed before the claim went back


def test_a_sync_stream_left_early_gives_the_claim_back_after_its_running_node(checkpoint_db: str) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver

    with SQLMemory(checkpoint_db) as memory, SQLMemory(checkpoint_db) as other, PostgresSaver.from_conn_string(saver_url(checkpoint_db)) as saver:
        saver.setup()
        app = claimed_app(memory, saver, after=lambda s: {"note": "after"})
        for chunk in app.stream({"query": "q1", "query_id": "q1"}, {"configurable": {"thread_id": "left"}}, stream_mode="updates"):
            assert "answer" in chunk
            break
        assert claimable(other, "thread:left", within_s=0.5)
        assert _steps(memory) == 1


def test_a_cancelled_async_invocation_gives_the_claim_back(checkpoint_db: str) -> None:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    async def main(memory: SQLMemory, other: SQLMemory) -> None:
        async with AsyncPostgresSaver.from_conn_string(saver_url(checkpoint_db)) as saver:
            await saver.setup()
            await astream_cancelled_mid_node(memory, saver, {"configurable": {"thread_id": "cancelled"}})
            assert await asyncio.to_thread(claimable, other, "thread:cancelled", 5.0)

    with SQLMemory(checkpoint_db) as memory, SQLMemory(checkpoint_db) as other:
        asyncio.run(main(memory, other))
        assert _steps(memory) == 1


class SlowReplay(ReplayBackend):
    """The replay provider, answering after ``delay_s``; ``started`` is set when a call begins."""

    def __init__(self, outcomes: Any, delay_s: float) -> None:
        super().__init__(outcomes)
        self.delay_s, self.started = delay_s, threading.Event()

    async def complete(self, request: Any, card: Any) -> Any:
        self.started.set()
        await asyncio.sleep(self.delay_s)
        return await super().complete(request, card)


def _slow_pool(delay_s: float) -> tuple[ModelPool, SlowReplay]:
    """:func:`replay_pool`'s two models, answering after ``delay_s``."""
    cards = [ModelCard(id="small", backend="replay", input_price=0.1, output_price=0.1, tier="small"),
             ModelCard(id="large", backend="replay", input_price=10, output_price=10, tier="large")]
    backend = SlowReplay([LoggedOutcome(f"q{i}", m, 1.0, 0.001, f"{m} says {i}") for i in range(5) for m in ("small", "large")], delay_s)
    return ModelPool(cards, {"replay": backend}), backend


def _two_branches(dispatcher: Dispatcher, quick: Any, tool: Any) -> Any:
    from langgraph.graph import START, StateGraph

    builder = StateGraph(State)
    builder.add_node("quick", quick)
    builder.add_node("tool", tool)  # a sync node: under astream LangGraph runs it in a thread, which closing cannot stop
    builder.add_edge(START, "quick")
    builder.add_edge(START, "tool")
    return builder


def test_a_node_still_paying_when_an_async_stream_is_left_keeps_the_claim_until_it_is_recorded(checkpoint_db: str) -> None:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    pool, backend = _slow_pool(1.5)

    async def main(memory: SQLMemory, other: SQLMemory) -> tuple[bool, int]:
        dispatcher = Dispatcher(pool, make_router("cheapest"), memory=memory)
        draft = routed_node(dispatcher, role="executor", prompt="e", budget=Budget(calls=4))
        quick = lambda state: {"answer": "-"} if backend.started.wait(30) else {}  # noqa: E731
        tool = lambda state, config: {"note": draft.invoke(state, config)["answer"]}  # noqa: E731
        async with AsyncPostgresSaver.from_conn_string(saver_url(checkpoint_db)) as saver:
            await saver.setup()
            app = ag.claiming(_two_branches(dispatcher, quick, tool).compile(checkpointer=saver), memory)
            stream = app.astream({"query": "q1", "query_id": "q1"}, {"configurable": {"thread_id": "paying"}}, stream_mode="updates")
            async for chunk in stream:
                assert "quick" in chunk  # the tool's provider call is under way
                break
            await stream.aclose()
            free_while_paying = await asyncio.to_thread(claimable, other, "thread:paying", 0.3)
            assert await asyncio.to_thread(claimable, other, "thread:paying", 30.0)
            return free_while_paying, _steps(memory)

    with SQLMemory(checkpoint_db) as memory, SQLMemory(checkpoint_db) as other:
        free_while_paying, steps = asyncio.run(main(memory, other))
        # was: the claim went back as the stream closed while the node went on paying in its thread:
        # another worker could take the thread and pay for the same step
        assert not free_while_paying
        assert steps == 1  # recorded before the claim went back


def test_a_routed_call_a_left_stream_s_node_makes_later_is_refused(checkpoint_db: str) -> None:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    waiting, go, refused = threading.Event(), threading.Event(), []

    async def main(memory: SQLMemory, other: SQLMemory) -> int:
        dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
        draft = routed_node(dispatcher, role="executor", prompt="e", budget=Budget(calls=4))

        def tool(state, config):  # untyped: LangGraph passes the config to a parameter named so
            waiting.set()
            go.wait(30)  # a slow tool: the consumer leaves meanwhile
            try:
                return {"note": draft.invoke(state, config)["answer"]}
            except TaskBusyError as exc:
                refused.append(exc)
                raise

        quick = lambda state: {"answer": "-"} if waiting.wait(30) else {}  # noqa: E731
        async with AsyncPostgresSaver.from_conn_string(saver_url(checkpoint_db)) as saver:
            await saver.setup()
            app = ag.claiming(_two_branches(dispatcher, quick, tool).compile(checkpointer=saver), memory)
            stream = app.astream({"query": "q1", "query_id": "q1"}, {"configurable": {"thread_id": "zombie"}}, stream_mode="updates")
            async for _ in stream:
                break
            await stream.aclose()
            assert await asyncio.to_thread(other.claim_task, "thread:zombie")  # another worker runs the thread now
            try:
                go.set()
                for _ in range(300):  # bounded: the tool's call returns (refused) within a few turns
                    if refused:
                        break
                    await asyncio.sleep(0.05)
            finally:
                other.release_task("thread:zombie")
            return _steps(memory)

    with SQLMemory(checkpoint_db) as memory, SQLMemory(checkpoint_db) as other:
        steps = asyncio.run(main(memory, other))
        # was: the node LangGraph had left running paid for its step while another worker held the thread
        assert refused and "invocation has ended" in str(refused[0])
        assert steps == 0


class SlowToClaim(SQLMemory):
    """A memory whose claims are answered when the test says (a distant database server)."""

    asked, go, answered = threading.Event(), threading.Event(), threading.Event()

    def claim_task(self, task_id: str) -> bool:
        self.asked.set()
        self.go.wait(30)
        try:
            return super().claim_task(task_id)
        finally:
            self.answered.set()


def test_an_invocation_cancelled_while_it_claims_the_thread_gives_the_claim_back(checkpoint_db: str) -> None:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    async def main(memory: SQLMemory, other: SQLMemory) -> bool:
        async with AsyncPostgresSaver.from_conn_string(saver_url(checkpoint_db)) as saver:
            await saver.setup()
            app = claimed_app(memory, saver)
            task = asyncio.create_task(app.ainvoke({"query": "q1", "query_id": "q1"}, {"configurable": {"thread_id": "taking"}}))
            assert await asyncio.to_thread(SlowToClaim.asked.wait, 30)  # the claim is being taken
            task.cancel()
            await asyncio.sleep(0)  # the cancellation reaches the invocation while it waits for the claim
            SlowToClaim.go.set()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await asyncio.to_thread(SlowToClaim.answered.wait, 30)  # the server granted the claim after all
            return await asyncio.to_thread(claimable, other, "thread:taking", 5.0)

    with SlowToClaim(checkpoint_db) as memory, SQLMemory(checkpoint_db) as other:
        # was: the claim the worker thread went on to take was never given back: the thread stayed
        # busy for every worker until this process ended
        assert asyncio.run(main(memory, other))
        assert _steps(memory) == 0


def test_an_in_memory_saver_of_your_own_needs_no_claim(checkpoint_db: str) -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    class CountingSaver(InMemorySaver):  # e.g. a test double that counts the checkpoints it keeps
        puts = 0

        def put(self, *args: Any, **kwargs: Any) -> Any:
            CountingSaver.puts += 1
            return super().put(*args, **kwargs)

    with SQLMemory(checkpoint_db) as memory:
        app = answer_graph(memory).compile(checkpointer=CountingSaver())
        out = app.invoke({"query": "q1", "query_id": "q1"}, {"configurable": {"thread_id": "in-memory"}})
        # was: ConfigurationError (a saver not named InMemorySaver counted as durable): nothing else shares it
        assert out["answer"] == "small says 1" and CountingSaver.puts > 0


def test_a_claimed_graph_keeps_the_compiled_graph_s_surface(checkpoint_db: str) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.graph import START, StateGraph
    from langgraph.graph.state import CompiledStateGraph

    with SQLMemory(checkpoint_db) as memory, SQLMemory(checkpoint_db) as other, PostgresSaver.from_conn_string(saver_url(checkpoint_db)) as saver:
        saver.setup()
        app = claimed_app(memory, saver).with_config(tags=["prod"])
        assert isinstance(app, CompiledStateGraph) and {"answer"} <= set(app.get_graph().nodes)
        cfg = {"configurable": {"thread_id": "surface"}}
        modes = {mode for mode, _ in app.stream({"query": "q1", "query_id": "q1"}, cfg, stream_mode=["updates", "messages", "custom"])}
        assert modes == {"updates", "messages", "custom"}
        assert app.get_state(cfg).values["answer"] == "small says 1"
        app.update_state(cfg, {"answer": "edited"})
        assert app.get_state(cfg).values["answer"] == "edited"
        assert claimable(other, "thread:surface", within_s=0.5)

        def parent_node(state, config):  # the claimed graph invoked inside a claimed invocation
            return {"answer": app.invoke({"query": "q2", "query_id": "q2"}, config)["answer"]}

        builder = StateGraph(State)
        builder.add_node("child", parent_node)
        builder.add_edge(START, "child")
        parent = ag.claiming(builder.compile(checkpointer=saver), memory)
        out = parent.invoke({"query": "q2"}, {"configurable": {"thread_id": "surface"}})
        assert out["answer"] == "small says 2"  # one claim for both: not refused as another invocation
        assert claimable(other, "thread:surface", within_s=0.5)


def test_an_agent_graph_resumed_twice_at_once_in_one_process_runs_once(checkpoint_db: str) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.types import Command, interrupt

    from agentroute import AgentGraph

    holding = threading.Event()

    def approve(state, ctx):
        interrupt("ok?")
        return {}

    def hold(state, ctx):  # a slow tool before the paid executor
        holding.set()
        time.sleep(1.0)
        return {}

    graph = (AgentGraph("twice").add_role("planner", prompt="plan").add_node("approve", approve).add_node("hold", hold)
             .add_role("executor", prompt="do").add_edge("planner", "approve").add_edge("approve", "hold")
             .add_edge("hold", "executor"))
    with SQLMemory(checkpoint_db) as memory, PostgresSaver.from_conn_string(saver_url(checkpoint_db)) as saver:
        saver.setup()
        app = graph.compile(pool=replay_pool(), router=make_router("cheapest"), memory=memory, budget=Budget(calls=5),
                            checkpointer=saver)
        config = {"configurable": {"thread_id": "agent-twice"}}
        app.run("q1", query_id="q1", config=config)
        # two requests of one server answering the same review
        outcomes = _twice_at_once(lambda: app.resume(config, command=Command(resume="yes")), holding)
        memory.flush()
        (task,) = memory.trajectories(graph="twice", status=None)
        # was: the task's claim is counted per process, so both resumes ran the executor
        assert sum(isinstance(o, TaskBusyError) for o in outcomes) == 1, outcomes
        assert [s.stage for s in task.steps] == ["planner", "executor"]

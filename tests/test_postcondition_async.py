"""A postcondition may be async (an ``async def`` check, a worker thread's call): the dispatcher
awaits it, cuts it at the task's ``seconds`` deadline (the task ends ``budget_exhausted``, the check
is cancelled and unwinds), and a cancel from outside keeps the step's cost on record."""

from __future__ import annotations

import asyncio
import time

from agentroute import Budget, Dispatcher, make_router
from tests.helpers import replay_pool


def _dispatcher() -> Dispatcher:
    return Dispatcher(replay_pool(), make_router("cheapest"), max_fallbacks=0)


async def test_an_async_postcondition_is_awaited_its_false_fails_the_step():
    async def refuses(step):
        await asyncio.sleep(0)
        return False

    async def keeps(step):
        await asyncio.sleep(0)
        return True

    dispatcher = _dispatcher()
    run = dispatcher.start("q", query_id="q0")
    failed = await dispatcher.step(run, role="executor", stage="s", prompt="", input="x", postconditions=[refuses])
    assert failed.status == "failed" and "refuses" in (failed.error or "")  # a coroutine is not a pass
    kept = await dispatcher.step(run, role="executor", stage="s", prompt="", input="x", postconditions=[keeps])
    assert kept.status == "ok"


async def test_an_async_postcondition_is_cut_at_the_deadline_and_the_task_is_exhausted():
    unwound: list[str] = []

    async def hangs(step):
        try:
            await asyncio.sleep(30)
        finally:
            unwound.append("cleaned up")
        return True

    dispatcher = _dispatcher()
    run = dispatcher.start("q", query_id="q0", budget=Budget(seconds=0.3))
    started = time.monotonic()
    step = await dispatcher.step(run, role="executor", stage="s", prompt="", input="x", postconditions=[hangs])
    over = time.monotonic() - started - 0.3
    assert over < 0.2, f"{over:.3f}s past the deadline"
    assert step.status == "failed" and "cut off at the task's deadline" in (step.error or ""), step.error
    assert unwound == ["cleaned up"] and run.exhausted
    assert run.steps == [step] and step.cost_usd > 0  # the call's cost stays on record
    assert "deadline" in [e.kind for e in run.context["audit"]]
    assert dispatcher.finish(run).status == "budget_exhausted"


async def test_a_cancel_during_an_async_postcondition_records_the_step_and_its_cost():
    entered = asyncio.Event()

    async def hangs(step):
        entered.set()
        await asyncio.sleep(30)
        return True

    dispatcher = _dispatcher()
    run = dispatcher.start("q", query_id="q0", budget=Budget(seconds=30))
    stepping = asyncio.ensure_future(
        dispatcher.step(run, role="executor", stage="s", prompt="", input="x", postconditions=[hangs])
    )
    await asyncio.wait_for(entered.wait(), 5)
    stepping.cancel()
    await asyncio.wait((stepping,))
    assert stepping.cancelled()
    assert [(s.status, s.error) for s in run.steps] == [("failed", "cancelled")] and run.steps[0].cost_usd > 0


async def test_a_check_that_swallows_the_cancel_at_the_deadline_is_still_cut():
    """A check that catches the cancel and returns (or raises) while unwinding ran past the
    deadline all the same: the step fails, the task ends budget_exhausted (the step was kept ok,
    or failed as a plain raise, and the task ran on past its deadline before)."""

    async def stubborn(step):
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return True
        return True

    async def raises_on_cancel(step):
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None
        return True

    for check in (stubborn, raises_on_cancel):
        dispatcher = _dispatcher()
        run = dispatcher.start("q", query_id="q0", budget=Budget(seconds=0.1))
        step = await dispatcher.step(run, role="executor", stage="s", prompt="", input="x", postconditions=[check])
        assert step.status == "failed" and "cut off at the task's deadline" in (step.error or ""), (check, step.error)
        assert run.exhausted and dispatcher.finish(run).status == "budget_exhausted"

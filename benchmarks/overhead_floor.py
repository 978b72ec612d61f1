"""How far the dispatcher is from the least a budgeted, routed step must cost inside LangGraph.

The 3-role graph of ``dispatch_overhead.py`` on the replay backend, one task at a time, with the
routed graph's ``Dispatcher.step`` replaced (on its instance) by:

- ``this code``: the dispatcher as it is;
- ``minimal``: only what a routed step under a budget must do — each candidate's request, prompt
  tokens and worst case, one affordability pass, the router's decision, reserve, call, settle and a
  ``Step`` record; no retries, fallbacks, audit, deadlines, router hooks or stage checks;
- ``none``: no dispatcher (the step returns a stored ``Step``): LangGraph plus the graph integration.

Ratios are to a bare LangGraph graph with the same nodes timed in the same round (process CPU).

    python benchmarks/overhead_floor.py [--tasks 1000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dispatch_overhead import bare_graph, pool, routed_graph, time_bare, time_routed  # noqa: E402

from agentroute.budget import Cost  # noqa: E402
from agentroute.types import CompletionRequest, RouteContext, Step  # noqa: E402


def minimal_step(dispatcher):
    """A ``step`` doing only what a budgeted, routed step must (see the module docstring)."""

    async def step(run, *, role, stage, prompt, input, models=None, max_tokens=None, query_id=None, postconditions=()):
        run.stage = stage
        qid = query_id or run.task.metadata.get("query_id")
        chat, plans = None, []
        for c in dispatcher._candidates_for(role, models, max_tokens):
            if chat is None:
                chat = [{"role": "system", "content": c.strategy.system_prompt(prompt)}, {"role": "user", "content": input}]
            request = CompletionRequest(c.model, chat, c.max_tokens, 0.0, None, qid)
            tokens = c.backend.prompt_tokens(request, c.card)
            worst = Cost(c.backend.worst_case_usd(request, c.card, tokens), tokens + c.max_tokens, 1.0, 0.0, 0.0)
            plans.append((c, request, worst, c.card.usd(tokens, c.max_tokens)))
        ledger = run.ledger
        ledger.affordable_each([p[2] for p in plans])
        ctx = RouteContext(
            query=run.task.query, candidates=[p[0].agent for p in plans], stage=stage, role=role, step_input=input,
            task_id=run.task.id, step_index=len(run.steps), history=run.steps, attempts=[],
            costs={p[0].key: p[3] for p in plans}, cards=dispatcher._cards, remaining=ledger.remaining(),
            budget=dict(ledger.limits), query_id=qid, metadata=run.task.metadata,
        )
        decision = dispatcher.router.route(ctx)
        agent = decision.agents[0]
        c, request, worst, _ = next(p for p in plans if p[0].key == agent.key)  # by key: decisions are interned by value
        reservation = ledger.reserve(worst)
        done = await c.backend.complete(request, c.card)
        ledger.settle(reservation, Cost(done.cost_usd, done.tokens_in + done.tokens_out, 1.0, 0.0, 0.0))
        record = Step(
            task_id=run.task.id, index=run.next_index(), stage=stage, agent=agent, decision=decision, input=input,
            cost_usd=done.cost_usd, tokens_in=done.tokens_in, tokens_out=done.tokens_out, output=done.text, score=done.score,
        )
        run.steps.append(record)
        return record

    return step


def no_step(dispatcher):
    """A ``step`` that returns a stored ``Step`` per role (made once by the real dispatcher)."""
    real, stored = dispatcher.step, {}

    async def step(run, *, role, **kwargs):
        record = stored.get(role)
        if record is None:  # the real step, recorded by the dispatcher itself
            record = stored[role] = await real(run, role=role, **kwargs)
            return record
        run.steps.append(record)
        return record

    return step


async def main(tasks: int, rounds: int) -> None:
    replay = pool(tasks)
    bare, routed = bare_graph(replay), routed_graph(replay)
    dispatcher = routed.dispatcher
    variants = {"this code": None, "minimal": minimal_step(dispatcher), "none": no_step(dispatcher)}
    for variant in variants.values():  # warm up every variant
        dispatcher.__dict__.pop("step", None)
        if variant is not None:
            dispatcher.step = variant
        await time_routed(routed, 200, 1)
    await time_bare(bare, 200, 1)
    steps = tasks * 3
    print(f"{tasks} tasks × 3 steps on replay, one at a time, process CPU (best of 3), load average {os.getloadavg()[0]:.1f}")
    for r in range(rounds):
        b = min([(await time_bare(bare, tasks, 1))[1] for _ in range(3)])
        row = [f"round {r + 1}: bare {b / steps * 1e6:.0f} µs/step"]
        for name, variant in variants.items():
            dispatcher.__dict__.pop("step", None)
            if variant is not None:
                dispatcher.step = variant
            t = min([(await time_routed(routed, tasks, 1))[1] for _ in range(3)])
            row.append(f"{name} {t / steps * 1e6:.0f} ({t / b:.2f}×)")
        print("; ".join(row), flush=True)
    dispatcher.__dict__.pop("step", None)



if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.tasks, args.rounds))

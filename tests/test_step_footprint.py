"""The routed step's footprint (issue 10): what a step of a compiled graph runs, counted for real.

Inside LangGraph, every distinct Python function a routed step calls is fetched again from L3 each
step (benchmarks/RESULTS.md, tenth and eleventh passes). These tests run the 3-role chain of the
overhead benchmarks (real LangGraph, replay backend, one task at a time through ``arun_many``) under
``sys.setprofile`` and hold one thing: no comprehension of the dispatcher or the ledger runs once
per step (on Python 3.11 each is a function of its own: a frame and a code object; 3.12 inlines all but
generator expressions, so there the check is weaker, never wrong), also on a graph compiled twice (a
decision interned for the first pool's equal agents still takes the one-agent path).

Not held: how many agentroute functions a step calls in all (67 → 59 in the eleventh pass). That
count moves with any feature a step gains, and the eleventh pass measured no change in time or L2
misses from the cut, so a ceiling on it would fail useful changes for no promise a user sees.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_graphs import STAGES, pool, routed_graph  # noqa: E402

TASKS = 6


def _calls_per_step() -> tuple[dict[tuple[str, str], float], list[Any]]:
    """(file, function) of every agentroute function called → calls a step, over TASKS tasks."""
    first, app = routed_graph(pool(2 * TASKS)), routed_graph(pool(2 * TASKS))  # compiled twice, as a notebook does
    queries = [{"query": "question", "query_id": f"q{i}"} for i in range(2 * TASKS)]
    counts: Counter[tuple[str, str]] = Counter()

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and "agentroute" in (name := frame.f_code.co_filename):
            counts[(name.rsplit("agentroute", 1)[-1], frame.f_code.co_name)] += 1

    async def main() -> list[Any]:
        await first.arun_many(queries[:TASKS], concurrency=1)  # decisions interned with the first pool's agents
        await app.arun_many(queries[:TASKS], concurrency=1)  # warm: candidates, system prompts
        sys.setprofile(profile)
        try:
            return await app.arun_many(queries[TASKS:], concurrency=1)
        finally:
            sys.setprofile(None)

    results = asyncio.run(main())
    steps = TASKS * len(STAGES)
    return {k: v / steps for k, v in counts.items()}, results


def test_no_comprehension_of_the_dispatcher_or_the_ledger_runs_every_step() -> None:
    per_step, results = _calls_per_step()
    assert [r.status for r in results] == ["done"] * TASKS
    assert all(len(r.steps) == len(STAGES) for r in results)
    comprehensions = {
        k: v for k, v in per_step.items()
        if k[1] in ("<listcomp>", "<dictcomp>", "<genexpr>", "<setcomp>")
        and k[0].replace("\\", "/").endswith(("dispatch/dispatcher.py", "budget.py"))
    }  # fmt: skip
    assert {k: v for k, v in comprehensions.items() if v >= 1.0} == {}

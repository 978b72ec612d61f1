"""The dispatcher's overhead at concurrency 1 as paired ratios, with bootstrap intervals.

``dispatch_overhead.py`` takes the best of a few long runs per graph; on a shared machine the ratio
then moves by ±0.1 between runs. Here each round times every variant on a short block of tasks,
in an order that alternates round by round (ABAB…, then BABA…), and divides each by the bare graph
timed in the *same* round: the load hits both sides of a ratio alike. The figure is the median of
the rounds' ratios with a 95% bootstrap interval (rounds resampled).

Variants (the 3-role graph of ``bench_graphs.py``, replay backend, process CPU µs a step):

- ``bare``: bare LangGraph exactly as ``dispatch_overhead.py`` times it (``ainvoke``, version 1);
- ``bare v2``: the same nodes read with ``ainvoke(version="v2")``, as ``arun`` reads its graph;
- ``bare 7-key``: the bare nodes on the routed graph's 7-key state (v2);
- ``none``: the routed graph with no dispatcher (``step`` returns a stored ``Step``);
- ``none + call``: the same, plus the one backend call a bare node makes (``stored_step_with_call``):
  LangGraph and the graph integration, on the bare graph's footing;
- ``minimal``: the least a budgeted, routed step must do (``overhead_floor.minimal_step``);
- ``routed``: the code as it is (``arun_many``, results kept, as ``dispatch_overhead.py``).

    python benchmarks/overhead_paired.py [--tasks 150] [--rounds 30] [--variants bare,routed]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_graphs import STAGES, bare_graph, pool, routed_graph  # noqa: E402
from overhead_floor import minimal_step, no_step  # noqa: E402

from agentroute import CompletionRequest  # noqa: E402
from agentroute.graph import GraphState  # noqa: E402

VARIANTS = ("bare", "bare v2", "bare 7-key", "none", "none + call", "minimal", "routed")


def bootstrap_median(values: list[float], *, resamples: int = 4000, seed: int = 0) -> tuple[float, float, float]:
    """The median of ``values`` and its 95% percentile-bootstrap interval."""
    rng = random.Random(seed)
    n = len(values)
    medians = sorted(statistics.median(rng.choices(values, k=n)) for _ in range(resamples))
    return statistics.median(values), medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def stored_step_with_call(dispatcher: Any, replay: Any) -> Callable[..., Awaitable[Any]]:
    """``overhead_floor.no_step`` plus what a bare node does: one request to the ``small`` replay model."""
    stored = no_step(dispatcher)
    backend, card = replay.backend("small"), replay.card("small")

    async def step(run: Any, *, role: str, **kwargs: Any) -> Any:
        qid = run.task.metadata.get("query_id")
        request = CompletionRequest(model=card.id, messages=[{"role": "user", "content": run.task.query}], query_id=qid)
        await backend.complete(request, card)
        return await stored(run, role=role, **kwargs)

    return step


def runners(tasks: int) -> dict[str, Callable[[], Awaitable[Any]]]:
    """One callable per variant, each running ``tasks`` tasks one at a time and returning what it keeps."""
    replay = pool(tasks)
    queries = [{"query": "question", "query_id": f"q{i}"} for i in range(tasks)]
    bare, wide = bare_graph(replay), bare_graph(replay, state=GraphState, wide=True)
    routed, stubbed, minimal, called = routed_graph(replay), routed_graph(replay), routed_graph(replay), routed_graph(replay)
    stubbed.dispatcher.step = no_step(stubbed.dispatcher)
    called.dispatcher.step = stored_step_with_call(called.dispatcher, replay)
    minimal.dispatcher.step = minimal_step(minimal.dispatcher)

    async def gathered(graph: Any, **kwargs: Any) -> list[Any]:  # dispatch_overhead.time_bare at concurrency 1
        gate, kept = asyncio.Semaphore(1), []

        async def one(q: dict[str, str]) -> None:
            async with gate:
                kept.append(await graph.ainvoke(q, **kwargs))

        await asyncio.gather(*(one(q) for q in queries))
        return kept

    async def batch(app: Any) -> list[Any]:
        results = await app.arun_many(queries, concurrency=1)
        assert all(r.status == "done" for r in results)
        return results

    return {
        "bare": lambda: gathered(bare),
        "bare v2": lambda: gathered(bare, version="v2"),
        "bare 7-key": lambda: gathered(wide, version="v2"),
        "none": lambda: batch(stubbed),
        "none + call": lambda: batch(called),
        "minimal": lambda: batch(minimal),
        "routed": lambda: batch(routed),
    }


async def main(tasks: int, rounds: int, names: list[str]) -> None:
    run = runners(tasks)
    for name in names:  # warm up
        await run[name]()
    steps = tasks * len(STAGES)
    per_step: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            gc.collect()
            start = time.process_time()
            kept = await run[name]()
            per_step[name].append((time.process_time() - start) / steps * 1e6)
            del kept
    base = per_step["bare"]
    print(
        f"{tasks} tasks × {len(STAGES)} steps a block, {rounds} rounds alternated, process CPU; "
        f"load average {os.getloadavg()[0]:.1f}; ratio = to bare in the same round, median [95% bootstrap]"
    )
    for name in names:
        us, lo_us, hi_us = bootstrap_median(per_step[name])
        line = f"  {name:20s} {us:6.1f} µs/step [{lo_us:.1f}, {hi_us:.1f}]"
        if name != "bare":
            ratio, lo, hi = bootstrap_median([v / b for v, b in zip(per_step[name], base, strict=True)])
            line += f"   {ratio:.3f}× [{lo:.3f}, {hi:.3f}]"
        print(line, flush=True)
    parts = [  # (what, from, to): each part of the ratio, the rounds' differences to bare's in the same round
        ("output path (ainvoke version 1 → 2)", "bare", "bare v2"),
        ("LangGraph on the 7-key state", "bare v2", "bare 7-key"),
        ("graph integration (task open/finish, node wrapper, channel, RunResult)", "bare 7-key", "none + call"),
        ("the least budgeted, routed step", "none + call", "minimal"),
        ("the rest of the dispatcher (retries, fallbacks, audit, deadlines, hooks, stages)", "minimal", "routed"),
    ]
    if all(name in per_step for _, a, b in parts for name in (a, b)):
        print("parts of the ratio (per-round differences, median [95% bootstrap]):")
        for what, a, b in parts:
            diffs = [(y - x) / z for x, y, z in zip(per_step[a], per_step[b], base, strict=True)]
            mid, lo, hi = bootstrap_median(diffs)
            print(f"  {what:82s} {mid:+.3f}× [{lo:+.3f}, {hi:+.3f}]")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)} (bare always runs)")
    args = parser.parse_args()
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    asyncio.run(main(args.tasks, args.rounds, ["bare", *[v for v in chosen if v != "bare"]]))

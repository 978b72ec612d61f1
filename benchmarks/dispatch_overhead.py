"""Dispatcher overhead vs a bare LangGraph graph with the same nodes, both on the replay backend.

The bare graph's nodes call the replay backend directly; ours route every step (stage machine,
ledger reservation, router, settle, audit) and, in the last rows, record every step in a SQLite memory.
Both keep every task's result (``arun_many`` returns them; the bare run keeps its final states), so
both pay the garbage collector for what they hold; ``--discard-bare`` drops the bare results.

    python benchmarks/dispatch_overhead.py [--tasks 2000] [--concurrency 32] [--discard-bare] [--bare-version v2]

``arun`` reads the final state with ``ainvoke(version="v2")`` (no per-superstep ``updates`` stream);
``--bare-version v2`` gives the bare graph the same, for a like-for-like ratio.

On a shared machine the best-of-N ratio at concurrency 1 moves by ±0.1 between runs;
``overhead_paired.py`` times the same two graphs in alternated short blocks and reports the median
ratio with a bootstrap interval, and splits it into LangGraph's, the graph integration's and the
dispatcher's parts.

The routing path is kept fixed: a dispatcher moves its router to a worker thread for good after three
``route`` calls slower than ``Dispatcher.SLOW_ROUTE_S`` (50 ms), and on a loaded shared machine a
preempted 5 µs call of the ``cheapest`` router can take that long; every later step then pays a
thread hop, and the figure measures that path instead. ``--route-switch`` leaves the switch on (the
tables then say whether it happened).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

from bench_graphs import (  # the graphs, shared with the other overhead benchmarks
    STAGES,
    bare_graph,
    pool,
    routed_graph,
)
from rich.console import Console
from rich.table import Table

KEEP_BARE = True  # --discard-bare: the bare graph's results are dropped (the comparison before 2026-12-05)
BARE_INVOKE: dict[str, str] = {}  # --bare-version v2: the bare graph reads its output as ``arun`` does
ROUTE_SWITCH = False  # --route-switch: a router that seems slow may move to a worker thread (the product's default)


async def time_bare(graph, n: int, concurrency: int) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) for ``n`` tasks; their final states are kept, as
    ``arun_many`` keeps its results (``KEEP_BARE = False``: discarded, as before 2026-12-05)."""
    gate = asyncio.Semaphore(concurrency)
    kept: list = []

    async def one(i: int) -> None:
        async with gate:
            state = await graph.ainvoke({"query": "question", "query_id": f"q{i}"}, **BARE_INVOKE)
            if KEEP_BARE:
                kept.append(state)

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - start, time.process_time() - cpu


async def time_routed(app, n: int, concurrency: int) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    results = await app.arun_many([{"query": "question", "query_id": f"q{i}"} for i in range(n)], concurrency=concurrency)
    assert all(r.status == "done" for r in results)
    if app.dispatcher.memory is not None:
        app.dispatcher.memory.flush()
    return time.perf_counter() - start, time.process_time() - cpu


async def main(n: int, concurrency: int, repeats: int) -> None:
    from agentroute.memory import SQLMemory

    p = pool(n)
    bare, routed = bare_graph(p), routed_graph(p, route_switch=ROUTE_SWITCH)
    await time_bare(bare, 50, 8)
    await time_routed(routed, 50, 8)  # warm up
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        memory = SQLMemory(f"sqlite:///{tmp}/bench.db")
        with_memory = routed_graph(p, memory, route_switch=ROUTE_SWITCH)
        for c in (1, concurrency):
            b = min([await time_bare(bare, n, c) for _ in range(repeats)])
            r = min([await time_routed(routed, n, c) for _ in range(repeats)])
            m = min([await time_routed(with_memory, n, c) for _ in range(repeats)])  # min by wall time
            rows.append((c, b, r, m))
        memory.close()
        moved = [name for name, app in (("routed", routed), ("+memory", with_memory)) if app.dispatcher._route_off_loop]
    steps = n * len(STAGES)
    if moved:
        Console(width=140).print(f"routing moved to a worker thread during the runs of: {', '.join(moved)} (--route-switch)")
    for label, pick in (("wall", 0), ("process CPU", 1)):
        table = Table(title=f"{n} tasks × {len(STAGES)} steps on replay, {label} time (best of {repeats})")
        for col in ("concurrency", "bare LangGraph µs/step", "agentroute µs/step", "ratio",
                    "+SQLite memory µs/step", "ratio", "steps/s with memory"):
            table.add_column(col, justify="right")
        for c, b, r, m in rows:
            b, r, m = b[pick], r[pick], m[pick]
            table.add_row(
                str(c), f"{b / steps * 1e6:.0f}", f"{r / steps * 1e6:.0f}", f"{r / b:.2f}×",
                f"{m / steps * 1e6:.0f}", f"{m / b:.2f}×", f"{steps / m:,.0f}",
            )
        Console(width=140).print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--discard-bare", action="store_true", help="drop the bare graph's results (arun_many keeps ours)")
    parser.add_argument(
        "--bare-version", choices=("v1", "v2"), default="v1",
        help="the bare graph's ainvoke output version (v1: LangGraph's default; v2: values only, as arun reads them)",
    )
    parser.add_argument(
        "--route-switch", action="store_true",
        help="let a router that seems slow (a preempted call on a loaded machine) move to a worker thread, as a deployment does",
    )
    args = parser.parse_args()
    ROUTE_SWITCH = args.route_switch
    KEEP_BARE = not args.discard_bare
    BARE_INVOKE = {"version": "v2"} if args.bare_version == "v2" else {}
    asyncio.run(main(args.tasks, args.concurrency, args.repeats))

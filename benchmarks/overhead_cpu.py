"""Where a routed step's extra CPU time goes, piece by piece, in one process.

``overhead_instructions.py`` counts a routed step at ≈ 1.26× a bare LangGraph step in instructions,
while process CPU reads ≈ 1.35–1.45×. This script splits the CPU time: the variants below run one
task at a time (the 3-role graph of ``dispatch_overhead.py``, replay backend, ``ainvoke`` with
``version="v2"`` as ``arun`` uses it), alternated round by round so that the machine's load hits
them alike, and each row is the median of the rounds (process CPU, µs a step):

- ``bare``: LangGraph, 3 keys of state, final states kept;
- ``bare, routed state``: the same nodes on the routed graph's 7-key state, writing what a role
  node writes (``outputs`` and ``answer``): LangGraph's cost of the richer state;
- ``routed, no dispatcher``: the routed graph with ``Dispatcher.step`` returning a stored ``Step``
  (task open/finish, the node wrapper, the task channel, ``RunResult``);
- ``routed``: the code as it is (``arun_many``, results kept);
- ``routed, results dropped``: ``arun`` in a loop, each result discarded;
- ``… collector off``: bare and routed with ``gc.disable()`` during the run.

    python benchmarks/overhead_cpu.py [--tasks 300] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_graphs import STAGES, bare_graph, pool, routed_graph  # noqa: E402
from overhead_floor import no_step  # noqa: E402

from agentroute.graph import GraphState  # noqa: E402


def bare_on_routed_state(p: Any) -> Any:
    """The bare graph's nodes on the routed graph's state, writing ``outputs`` and ``answer``."""
    return bare_graph(p, state=GraphState, wide=True)


async def main(tasks: int, rounds: int) -> None:
    replay = pool(tasks + 100)
    queries = [{"query": "question", "query_id": f"q{i}"} for i in range(tasks)]
    bare, wide, routed, stubbed = bare_graph(replay), bare_on_routed_state(replay), routed_graph(replay), routed_graph(replay)
    stubbed.dispatcher.step = no_step(stubbed.dispatcher)

    async def invoke_all(graph: Any) -> list[Any]:
        return [await graph.ainvoke(q, version="v2") for q in queries]

    async def drop_all(app: Any) -> None:
        for q in queries:
            await app.arun(q["query"], query_id=q["query_id"])

    variants: dict[str, tuple[Callable[[], Awaitable[Any]], bool]] = {
        "bare": (lambda: invoke_all(bare), True),
        "bare, routed state": (lambda: invoke_all(wide), True),
        "routed, no dispatcher": (lambda: stubbed.arun_many(queries, concurrency=1), True),
        "routed": (lambda: routed.arun_many(queries, concurrency=1), True),
        "routed, results dropped": (lambda: drop_all(routed), True),
        "bare, collector off": (lambda: invoke_all(bare), False),
        "routed, collector off": (lambda: routed.arun_many(queries, concurrency=1), False),
    }
    for run, _ in variants.values():  # warm up
        await run()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, (run, collect) in variants.items():
            gc.collect()
            if not collect:
                gc.disable()
            start = time.process_time()
            kept = await run()
            elapsed = time.process_time() - start
            gc.enable()
            del kept
            times[name].append(elapsed / (tasks * len(STAGES)) * 1e6)
    med = {name: statistics.median(t) for name, t in times.items()}
    base = med["bare"]
    print(f"{tasks} tasks × {len(STAGES)} steps, one at a time, process CPU µs a step, median of {rounds} alternated rounds")
    for name, t in times.items():
        print(f"  {name:24s} {med[name]:6.1f}  {med[name] / base:.3f}×   rounds: {' '.join(f'{x:.0f}' for x in t)}")
    split = {
        "LangGraph on the 7-key state": med["bare, routed state"] - base,
        "graph integration (task open/finish, node wrapper, channel, RunResult)": med["routed, no dispatcher"] - med["bare, routed state"],
        "dispatcher step inside the graph": med["routed"] - med["routed, no dispatcher"],
        "of which the collector (routed minus bare)": (med["routed"] - med["routed, collector off"]) - (base - med["bare, collector off"]),
        "of which keeping the results": med["routed"] - med["routed, results dropped"],
    }
    print(f"extra µs a step over bare ({med['routed'] - base:.1f} in all):")
    for name, value in split.items():
        print(f"  {name:72s} {value:6.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.tasks, args.rounds))

"""Stress test of the ant-colony router (AMRO-S, arXiv 2603.12933 §stress): many concurrent tasks of a
3-stage graph (planner → solver → verifier) through the real dispatcher on the replay backend of the
RouterBench test split, with online pheromone updates on.

For each concurrency level (default 20, 100, 1000) a fresh colony, warm-started on the train split,
serves the same ``--tasks`` tasks (the test queries, cycled) with ``AgentGraph.arun_many``. Reported:
throughput (tasks/s), routing overhead per decision (``route()`` wall time, p50/p99/max), the cost of
``observe()`` on the serving path, accuracy (the final step's logged score) and cost per task, and
the updater's counters (applied must equal accepted: no update lost or applied twice).

Intent inference (MiniLM + logistic regression) runs once per query, batched before serving
(``router.prime``), and is reported separately from the per-decision overhead. ``route()`` is
timed in wall time and in thread CPU time: on a shared machine the wall-time tail includes the
OS descheduling the process, the CPU time does not.

    python benchmarks/ant_colony_stress.py [--tasks 2000] [--levels 20,100,1000] [--greedy] [--evidence DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

from agentroute import AgentGraph
from agentroute.eval.datasets import load_dataset
from agentroute.routers.ant_colony import AntColonyRouter
from agentroute.types import Decision, RouteContext, Step, Task

STAGES = (
    ("planner", "Plan how to answer."),
    ("solver", "Solve it."),
    ("verifier", "Check and give the final answer."),
)


class TimedColony(AntColonyRouter):
    """The ant-colony router with the wall time of every ``route``/``observe`` call recorded."""

    def _timers(self) -> tuple[list[float], list[float], list[float]]:
        if not hasattr(self, "_route_s"):
            self._route_s: list[float] = []
            self._observe_s: list[float] = []
            self._route_cpu_s: list[float] = []
        return self._route_s, self._observe_s, self._route_cpu_s

    def route(self, ctx: RouteContext) -> Decision:
        cpu, start = time.thread_time(), time.perf_counter()
        decision = super().route(ctx)
        wall, cpu = time.perf_counter() - start, time.thread_time() - cpu
        timers = self._timers()
        timers[0].append(wall)
        timers[2].append(cpu)
        return decision

    def observe(self, step: Step, task: Task | None = None) -> None:
        start = time.perf_counter()
        super().observe(step, task)
        self._timers()[1].append(time.perf_counter() - start)


def three_stage() -> AgentGraph:
    g = AgentGraph("stress-3-stage")
    for role, prompt in STAGES:
        g.add_role(role, prompt=prompt)
    g.add_edge("planner", "solver").add_edge("solver", "verifier")
    return g


def run_level(
    dataset: Any,
    params: dict[str, Any],
    items: list[dict[str, Any]],
    concurrency: int,
    evidence: Path | None = None,
) -> dict[str, Any]:
    router = TimedColony(**params).fit(dataset)
    start = time.perf_counter()
    router.prime([it["query"] for it in items])
    prime_s = time.perf_counter() - start
    app = three_stage().compile(pool=dataset.replay_pool("test"), router=router)
    gc.collect()
    start = time.perf_counter()
    results = asyncio.run(app.arun_many(items, concurrency=concurrency))
    wall = time.perf_counter() - start
    flushed = router.flush(timeout=120)
    stats = router.stats()
    route_us = np.array(router._timers()[0]) * 1e6
    route_cpu_us = np.array(router._timers()[2]) * 1e6
    observe_us = np.array(router._timers()[1]) * 1e6
    scores = np.array([r.task.score if r.task.score is not None else 0.0 for r in results])
    router.close()
    if evidence is not None:
        from agentroute.viz.pheromone import write_evidence

        write_evidence(router.export_pheromones(), evidence)
    return {
        "concurrency": concurrency,
        "tasks": len(results),
        "done": sum(r.status == "done" for r in results),
        "wall_s": wall,
        "throughput_tasks_s": len(results) / wall,
        "decisions": len(route_us),
        "route_us_p50": float(np.percentile(route_us, 50)),
        "route_us_p99": float(np.percentile(route_us, 99)),
        "route_us_max": float(route_us.max()),
        "route_cpu_us_p50": float(np.percentile(route_cpu_us, 50)),
        "route_cpu_us_p99": float(np.percentile(route_cpu_us, 99)),
        "observe_us_p50": float(np.percentile(observe_us, 50)),
        "observe_us_p99": float(np.percentile(observe_us, 99)),
        "intent_ms_per_query": 1e3 * prime_s / len({it["query"] for it in items}),
        "accuracy": float(scores.mean()),
        "cost_per_task": float(np.mean([r.task.cost_usd for r in results])),
        "flushed": flushed,
        **{f"updates_{k}": v for k, v in stats.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--levels", default="20,100,1000")
    ap.add_argument("--data", default=None, help="RouterBench folder (default: $AGENTROUTE_DATA/routerbench)")
    ap.add_argument("--greedy", action="store_true", help="argmax instead of sampling")
    ap.add_argument("--params", default="", help="more router parameters, key=value,... (YAML scalars)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ant_colony_stress.json")
    ap.add_argument(
        "--evidence", type=Path, default=None, help="write the last level's pheromone JSON + plots here"
    )
    args = ap.parse_args()
    dataset = load_dataset(f"routerbench:{args.data}" if args.data else "routerbench")
    test = dataset.test
    items = [
        {"query": test.queries[i % len(test)], "query_id": test.query_ids[i % len(test)]}
        for i in range(args.tasks)
    ]
    params: dict[str, Any] = {"greedy": args.greedy, "seed": 0}
    for pair in filter(None, args.params.split(",")):
        key, _, value = pair.partition("=")
        params[key.strip()] = yaml.safe_load(value)
    rows = []
    levels = [int(x) for x in args.levels.split(",")]
    for level in levels:
        row = run_level(dataset, params, items, level, args.evidence if level == levels[-1] else None)
        rows.append(row)
        print(json.dumps(row), flush=True)
    best = float(np.nanmean(test.scores, axis=0).max())
    table = Table(
        title=f"ant-colony stress: {args.tasks} tasks × 3 stages, replay RouterBench test (best single {best:.3f})"
    )
    for col in (
        "concurrency",
        "tasks/s",
        "route p50 µs",
        "route p99 µs",
        "route CPU p99 µs",
        "observe p99 µs",
        "accuracy",
        "$/task",
        "accepted",
        "applied",
        "rejected",
        "dropped",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["concurrency"]), f"{r['throughput_tasks_s']:.1f}", f"{r['route_us_p50']:.0f}", f"{r['route_us_p99']:.0f}",
            f"{r['route_cpu_us_p99']:.0f}",
            f"{r['observe_us_p99']:.0f}", f"{r['accuracy']:.4f}", f"{r['cost_per_task']:.5f}",
            str(r["updates_accepted"]), str(r["updates_applied"]), str(r["updates_rejected"]), str(r["updates_dropped"]),
        )  # fmt: skip
    Console().print(table)
    print(
        f"intent inference (batched, per query): {rows[0]['intent_ms_per_query']:.2f} ms; load average {os.getloadavg()[0]:.1f}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "best_single_accuracy": best, "params": params}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

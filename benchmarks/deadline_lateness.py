"""Where a ``seconds`` budget's lateness comes from, task by task, on a busy event loop.

Many tasks under ``Budget(seconds=…)`` (0.15, 0.3 or 0.6 s) run at once through the real Dispatcher
against the honest adversarial server (``tests/fixtures_adversary.py``, in its own process: 500s,
429s, hangs, dropped connections; honest usage). For each task it keeps every step's start and end
and every audit event's time, all relative to the task's start; it prints the lateness past the
deadline (one-sample and ``sc@3`` tasks apart), the event loop's lag, how many steps answered, and the
latest tasks' timelines — a cut at the deadline (``deadline`` event) followed by a late step end
shows turns of the loop spent between the cut and the step's end.

    python benchmarks/deadline_lateness.py [--tasks 600] [--concurrency 100] [--show 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the adversarial server lives with the tests

from agentroute import Budget, Dispatcher, make_router  # noqa: E402
from tests.fixtures_adversary import HONEST_POOL, LIAR_POOL, QUESTIONS, RemoteAdversary, adversary_pool  # noqa: E402


@dataclass
class Timeline:
    limit: float
    elapsed: float = 0.0
    steps: list[tuple[float, float, str, str]] = field(default_factory=list)  # start, end, agent, status
    events: list[tuple[float, str, str]] = field(default_factory=list)  # time, kind, detail

    @property
    def late(self) -> float:
        return self.elapsed - self.limit

    @property
    def samples(self) -> bool:
        return any("sc@" in agent for _, _, agent, _ in self.steps)


def _quantiles(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[int(0.95 * (len(values) - 1))]
    over = sum(v > 0.1 for v in values)
    return f"median {statistics.median(values):.3f} s, p95 {p95:.3f} s, max {values[-1]:.3f} s; > 100 ms: {over} / {len(values)}"


async def run(tasks: int, concurrency: int, seed: int) -> tuple[list[Timeline], list[float]]:
    prices = {m: v[:2] for m, v in {**HONEST_POOL, **LIAR_POOL}.items()}
    args = ["--hang-s", "8", "--pace-s", "0.005", "--seed", str(seed), "--prices", json.dumps(prices)]
    with RemoteAdversary(*args) as server:
        pool = adversary_pool(server.url, HONEST_POOL, timeout_s=2.0, max_tokens=24)
        await pool.preload()
        dispatcher = Dispatcher(pool, make_router("random", seed=seed), retries=2, backoff_s=0.01, max_fallbacks=2)
        rng, gate = random.Random(seed), asyncio.Semaphore(concurrency)
        timelines: list[Timeline] = []
        lags: list[float] = []

        async def watch() -> None:  # how late the loop wakes a 50 ms sleep
            while True:
                before = time.perf_counter()
                await asyncio.sleep(0.05)
                lags.append(time.perf_counter() - before - 0.05)

        async def one(i: int) -> None:
            line = Timeline(rng.choice((0.15, 0.3, 0.6)))
            async with gate:
                started, wall = time.perf_counter(), time.time()
                task = dispatcher.start(QUESTIONS[i % len(QUESTIONS)], budget=Budget(seconds=line.limit), task_id=f"t{i}")
                for k in range(4):
                    at = time.perf_counter() - started
                    step = await dispatcher.step(
                        task, role="executor", stage="execute", prompt="Answer briefly.",
                        input=f"[task:t{i}] {QUESTIONS[(i + k) % len(QUESTIONS)]}",
                    )
                    end = time.perf_counter() - started
                    line.steps.append((at, end, step.agent.key if step else "-", step.status if step else "none"))
                    if step is None or task.exhausted:
                        break
                dispatcher.finish(task)
                line.elapsed = time.perf_counter() - started
                line.events = [(e.created_at.timestamp() - wall, e.kind, e.detail[:70]) for e in task.context.get("audit", [])]
            timelines.append(line)

        watcher = asyncio.create_task(watch())
        await asyncio.gather(*(one(i) for i in range(tasks)))
        watcher.cancel()
        await pool.aclose()
    return timelines, lags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--show", type=int, default=10, help="timelines of the latest tasks to print")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    timelines, lags = asyncio.run(run(args.tasks, args.concurrency, args.seed))
    print(f"{args.tasks} seconds-budgeted tasks, concurrency {args.concurrency}, load average {os.getloadavg()[0]:.1f}")
    print(f"  lateness, all: {_quantiles([t.late for t in timelines])}")
    for label, mine in (("one sample", [t for t in timelines if not t.samples]), ("sc@3", [t for t in timelines if t.samples])):
        if mine:
            print(f"  lateness, {label}: {_quantiles([t.late for t in mine])}")
    answered = sum(1 for t in timelines for s in t.steps if s[3] == "ok")
    print(f"  steps that answered: {answered}; tasks with an answer: {sum(1 for t in timelines if any(s[3] == 'ok' for s in t.steps))}")
    lags.sort()
    print(f"  event-loop lag: median {statistics.median(lags) * 1000:.0f} ms, p95 {lags[int(0.95 * (len(lags) - 1))] * 1000:.0f} ms")
    for t in sorted(timelines, key=lambda t: -t.late)[: args.show]:
        print(f"late {t.late:.3f} s, limit {t.limit} s")
        for start, end, agent, status in t.steps:
            print(f"    step {start:.3f} → {end:.3f} s  {agent}  {status}")
        for at, kind, detail in t.events:
            print(f"    {at:.3f} s  {kind}: {detail}")


if __name__ == "__main__":
    main()

"""Memory throughput: steps/s recorded through ``SQLMemory`` on SQLite and PostgreSQL.

For each backend, N steps (in tasks of ``--steps-per-task``) are recorded by ``--threads``
producer threads, then ``flush()`` waits until all are committed. Figures:

- ``record µs``: time a producer spends inside ``record_step`` per call (the dispatcher's cost);
- ``steps/s``: end to end, from the first record call until ``flush()`` returns;
- ``CPU µs``: CPU time of this process (producers + writer thread) per step, record to flush —
  the figure that holds on a busy machine; ``1e6 / CPU µs`` is the rate one free core sustains;
- ``read steps/s``: ``trajectories()`` reading everything back.

PostgreSQL runs on a throwaway server started like the test fixture (default durable settings:
``fsync`` and ``synchronous_commit`` on). A baseline with ``batch_size=1`` (one transaction per
write) shows what batching buys.

    python benchmarks/memory_throughput.py --steps 20000
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agentroute.memory import SQLMemory
from agentroute.memory.pgserver import PostgresServer, create_database, find_bindir
from agentroute.types import Agent, Decision, Step, Task

AGENTS = [Agent(role="executor", model=m, strategy=s) for m in ("small", "large") for s in ("direct", "cot")]


def workload(n_steps: int, per_task: int) -> list[tuple[Task, list[Step]]]:
    """Tasks with their steps, built before timing (what the dispatcher has in hand)."""
    t0 = datetime.now(UTC)
    work = []
    for i in range(max(1, n_steps // per_task)):
        task = Task(query=f"question {i}", graph="bench", created_at=t0 + timedelta(microseconds=i))
        steps = []
        for k in range(per_task):
            agent = AGENTS[(i + k) % len(AGENTS)]
            decision = Decision(
                agents=[agent], router="bench", scores={a.key: 0.25 for a in AGENTS}, why="bench"
            )
            steps.append(
                Step(task_id=task.id, index=k, stage="answer", agent=agent, decision=decision, input="q" * 200,
                     output="a" * 200, tokens_in=120, tokens_out=40, cost_usd=1e-5, latency_ms=30.0, score=1.0)
            )  # fmt: skip
        work.append((task, steps))
    return work


def run(url: str, work: list[tuple[Task, list[Step]]], threads: int, batch_size: int) -> dict[str, float]:
    memory = SQLMemory(url, batch_size=batch_size)
    shards = [work[i::threads] for i in range(threads)]
    in_record = [0.0] * threads
    n_steps = sum(len(steps) for _, steps in work)

    def produce(shard_id: int) -> None:
        spent = 0.0
        clock = time.perf_counter
        for task, steps in shards[shard_id]:
            memory.start_task(task)
            for step in steps:
                t = clock()
                memory.record_step(step)
                spent += clock() - t
            task.status = "done"
            memory.finish_task(task)
        in_record[shard_id] = spent

    pool = [threading.Thread(target=produce, args=(i,)) for i in range(threads)]
    start, cpu_start = time.perf_counter(), time.process_time()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    memory.flush()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    read_start = time.perf_counter()
    read = sum(len(t.steps) for t in memory.trajectories(graph="bench"))
    read_s = time.perf_counter() - read_start
    memory.close()
    assert read == n_steps, f"read back {read} steps, recorded {n_steps}"
    return {
        "steps": n_steps,
        "record_us": sum(in_record) / n_steps * 1e6,
        "steps_per_s": n_steps / elapsed,
        "cpu_us": cpu / n_steps * 1e6,
        "read_steps_per_s": read / read_s,
    }


@contextmanager
def backends(names: list[str], tmp: Path) -> Iterator[dict[str, Callable[[str], str]]]:
    """Per backend: a function giving the URL of a fresh, empty database with a given name."""
    urls: dict[str, Callable[[str], str]] = {}
    server: PostgresServer | None = None
    if "sqlite" in names:
        urls["sqlite"] = lambda name: f"sqlite:///{tmp / f'{name}.db'}"
    if "postgres" in names:
        if find_bindir() is None:
            print("postgres: skipped (no PostgreSQL server binaries; apt-get install postgresql)")
        else:
            server = PostgresServer(durable=True).start()
            base = server.url
            urls["postgres"] = lambda name: create_database(base, name)
    try:
        yield urls
    finally:
        if server is not None:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--steps-per-task", type=int, default=10)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument(
        "--backends", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"]
    )
    parser.add_argument(
        "--baseline-steps", type=int, default=1000, help="steps for the batch_size=1 baseline (0: skip)"
    )
    args = parser.parse_args()

    header = f"{'backend':<9} {'threads':>7} {'batch':>6} {'steps':>7} {'record µs':>10} {'steps/s':>9} {'CPU µs':>7} {'read steps/s':>13}"
    rows = []
    with tempfile.TemporaryDirectory() as tmp, backends(args.backends, Path(tmp)) as urls:
        for backend, fresh in urls.items():
            cases = [(t, args.batch_size, args.steps) for t in args.threads]
            if args.baseline_steps:
                cases.append((1, 1, args.baseline_steps))
            for i, (threads, batch, n) in enumerate(cases):
                work = workload(n, args.steps_per_task)
                r = run(fresh(f"bench{i}"), work, threads, batch)
                rows.append(
                    f"{backend:<9} {threads:>7} {batch:>6} {r['steps']:>7} {r['record_us']:>10.2f} "
                    f"{r['steps_per_s']:>9,.0f} {r['cpu_us']:>7.1f} {r['read_steps_per_s']:>13,.0f}"
                )
                print(rows[-1], flush=True)
    print()
    print(header)
    print("\n".join(rows))


if __name__ == "__main__":
    main()

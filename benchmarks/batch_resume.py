"""Resume time after a kill: `agentroute run` over a 3,000-query batch, `kill -9` halfway, `--resume`.

Runs the real command line against a loopback OpenAI-compatible server (``tests/test_batch_server``:
instant replies with fixed usage, so the figures are agentroute's own cost, not a model's), with a
one-role graph (one priced call per query):

1. ``agentroute run GRAPH --input 3000.jsonl --resume --out out.jsonl`` until ``--kill-at`` lines are
   out, then ``kill -9``;
2. the same command again: *time to first new result* (start-up, adding the 3,000 items, which
   already exist, reconciling the dead worker, first claim, first task) and *time to finish*;
3. the same command once more over the finished batch: the cost of a no-op resume;
4. for reference, a fresh process over a new batch of the same size (start-up to first result).

Prints one table and checks exactly-once (each query done once, no task left running).

    .venv/bin/python benchmarks/batch_resume.py                      # SQLite file memory
    .venv/bin/python benchmarks/batch_resume.py --postgres            # a throwaway PostgreSQL server
    .venv/bin/python benchmarks/batch_resume.py --memory postgresql+psycopg://…/db
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from tests.test_batch_server import GRAPH_PY, StubOpenAIServer, pool_yaml  # noqa: E402

CLI = [sys.executable, "-c", "from agentroute.cli import main; main()"]


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _run(cmd: list[str], out: Path, *, until: int | None = None, kill_at: int | None = None) -> dict[str, float]:
    """Run ``cmd``; times (s) to the first new --out line and to exit (or to the kill)."""
    before = _lines(out)
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "120"})
    first = None
    while proc.poll() is None:
        n = _lines(out)
        if first is None and n > before:
            first = time.perf_counter() - started
        if kill_at is not None and n >= kill_at:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return {"first": first or 0.0, "total": time.perf_counter() - started, "lines": _lines(out), "cpu": _cpu(cpu0)}
        time.sleep(0.005)
    total = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"agentroute run failed ({proc.returncode}): {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
    if first is None and _lines(out) > before:
        first = total
    return {"first": first if first is not None else float("nan"), "total": total, "lines": _lines(out), "cpu": _cpu(cpu0)}


def _cpu(before: resource.struct_rusage) -> float:
    """CPU seconds (user + system) the child used: a figure that a busy machine disturbs less than wall time."""
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _check(url: str, n: int) -> dict[str, int]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT status, meta FROM tasks")).all()
    engine.dispose()
    metas = [(s, json.loads(m) if isinstance(m, str) else m) for s, m in rows]
    done = Counter(m["query_id"] for s, m in metas if s == "done")
    assert len(done) == n and set(done.values()) == {1}, "each query done exactly once"
    status = Counter(s for s, _ in metas)
    assert status.get("running", 0) == 0, "no task left running"
    return dict(status)


def bookkeeping(url: str, n: int, *, repeat: int = 5) -> dict[str, float]:
    """Median seconds of what a resume adds in-process, on ``url``: adding ``n`` items that already
    exist, reconciling a dead worker (8 claimed queries with running tasks), the first claim."""
    from agentroute.memory import BatchQueue, open_memory
    from agentroute.memory.batches import META_KEY
    from agentroute.types import Task

    times: dict[str, list[float]] = {"add": [], "reconcile": [], "claim": []}
    with open_memory(url) as memory:
        for r in range(repeat):
            batch = f"bookkeeping-{r}-{time.time_ns()}"
            items = [(f"k{i}", {"query": f"question {i}?"}) for i in range(n)]
            dead = BatchQueue(memory, batch, worker_id=f"dead-{batch}")
            dead.pid = 2**22 + 12345  # no such process
            dead.add(items)
            dead.join()
            for claimed in dead.claim(8):
                memory.start_task(Task(query=claimed.item["query"], metadata={"query_id": claimed.query_id,
                                       META_KEY: {"id": batch, "worker": dead.worker_id}}))  # fmt: skip
            memory.flush()
            queue = BatchQueue(memory, batch)
            for name, call in (("add", lambda q=queue, i=items: q.add(i)), ("reconcile", queue.reconcile),
                               ("claim", lambda q=queue: (q.join(), q.claim(8)))):  # fmt: skip
                started = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - started)
    return {name: sorted(values)[len(values) // 2] for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--kill-at", type=int, default=None, help="--out lines before kill -9 (default: half)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--memory", default=None, help="memory URL (default: a SQLite file in a temp folder)")
    parser.add_argument("--postgres", action="store_true", help="start a throwaway PostgreSQL server for the memory")
    parser.add_argument("--delay-s", type=float, default=0.0, help="server reply delay")
    args = parser.parse_args()
    if args.postgres:
        from agentroute.memory.pgserver import PostgresServer, create_database

        with PostgresServer(durable=False) as pg:
            args.memory = create_database(pg.url, "agentroute_batch_resume")
            bench(args)
        return
    bench(args)


def bench(args: argparse.Namespace) -> None:
    n, kill_at = args.queries, args.kill_at or args.queries // 2
    with tempfile.TemporaryDirectory() as tmp, StubOpenAIServer(delay_s=args.delay_s) as server:
        folder = Path(tmp)
        memory = args.memory or f"sqlite:///{folder / 'memory.db'}"
        (folder / "pool.yaml").write_text(pool_yaml(server.url))
        (folder / "graph.py").write_text(GRAPH_PY)
        queries = folder / "in.jsonl"
        queries.write_text("".join(json.dumps({"query": f"question {i}?", "query_id": f"b{i}"}) + "\n" for i in range(n)))
        out = folder / "out.jsonl"

        def cmd(input: Path, *extra: str) -> list[str]:
            return [*CLI, "run", str(folder / "graph.py"), "--input", str(input), "--pool", str(folder / "pool.yaml"),
                    "--memory", memory, "--out", str(out), "--concurrency", str(args.concurrency), *extra]  # fmt: skip

        crash = _run(cmd(queries, "--resume"), out, kill_at=kill_at)
        billed_at_kill = len(server.answered)
        resume = _run(cmd(queries, "--resume"), out)
        noop = _run(cmd(queries, "--resume"), out)
        statuses = _check(memory, n)
        other = folder / "other.jsonl"
        other.write_text("".join(json.dumps({"query": f"other {i}?", "query_id": f"o{i}"}) + "\n" for i in range(n)))
        fresh_out = out
        fresh = _run(cmd(other, "--resume"), fresh_out)
        startup = _run([sys.executable, "-c", "import agentroute.cli"], fresh_out)
    rerun = resume["lines"] - crash["lines"]
    print(f"batch of {n} queries, concurrency {args.concurrency}, memory {memory.split(':')[0]}, server delay {args.delay_s}s")
    print(f"killed (kill -9) after {crash['lines']} finished ({crash['total']:.2f}s); {billed_at_kill} calls billed by then")
    print(f"{'':38}{'first result s':>16}{'total s':>10}{'CPU s':>8}")
    print(f"{'resume after kill -9 (' + str(rerun) + ' to run)':38}{resume['first']:>16.3f}{resume['total']:>10.2f}{resume['cpu']:>8.2f}")
    print(f"{'resume of a finished batch (no-op)':38}{'-':>16}{noop['total']:>10.2f}{noop['cpu']:>8.2f}")
    print(f"{'fresh batch, same size (reference)':38}{fresh['first']:>16.3f}{fresh['total']:>10.2f}{fresh['cpu']:>8.2f}")
    print(f"{'start-up (import agentroute.cli)':38}{'-':>16}{startup['total']:>10.2f}{startup['cpu']:>8.2f}")
    print(f"tasks in memory by status: {statuses} (interrupted: reconciled from the kill)")
    parts = bookkeeping(memory if args.memory else f"sqlite:///{tempfile.mkdtemp()}/bookkeeping.db", n)
    print("resume bookkeeping in-process (median of 5): " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in parts.items())
          + f" — add {n} existing items, reconcile a dead worker (8 running), first claim")  # fmt: skip


if __name__ == "__main__":
    main()

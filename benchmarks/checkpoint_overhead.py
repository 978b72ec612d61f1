"""Checkpointing overhead per step: a routed 3-node agent graph vs a bare LangGraph graph, same saver.

Both graphs have the same three nodes (planner → executor → summarizer) on the replay backend; the
bare graph's nodes call the backend directly, ours route every step and carry the task's checkpoint
(task id, ledger, step index, stage) in the graph state. Each task runs on its own thread id, one
after another (concurrency 1), so the figures are per step of one task. For every saver the table
gives µs per step with the saver and the cost the saver adds over no saver, for both graphs; the
last column is what agentroute adds to LangGraph's own checkpointing per step.

    python benchmarks/checkpoint_overhead.py [--tasks 300] [--repeats 3] [--no-postgres]

Savers: none, ``InMemorySaver``, ``AsyncSqliteSaver`` (a file), ``SqliteSaver`` (sync path, file),
``AsyncPostgresSaver`` on a throwaway local server (``agentroute.memory.pgserver``) when the server
binaries are installed. PostgreSQL runs with ``fsync=off`` (not durable), like the test server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_graphs import STAGES, pool  # noqa: E402  (the graphs of the dispatcher benchmark)
from bench_graphs import bare_graph as _bare  # noqa: E402
from bench_graphs import routed_graph as _routed  # noqa: E402


def bare_graph(p: Any, saver: Any) -> Any:
    return _bare(p, checkpointer=saver, sync=True)


def routed_graph(p: Any, saver: Any) -> Any:
    return _routed(p, checkpointer=saver)


async def time_async(graph: Any, n: int, tag: str) -> float:
    """Process CPU seconds for ``n`` tasks, one after another, each on its own thread."""
    start = time.process_time()
    for i in range(n):
        out = await graph.ainvoke({"query": "question", "query_id": f"q{i}"}, {"configurable": {"thread_id": f"{tag}-{i}"}})
        assert out["answer"].startswith("small"), out
    return time.process_time() - start


def time_sync(graph: Any, n: int, tag: str) -> float:
    start = time.process_time()
    for i in range(n):
        out = graph.invoke({"query": "question", "query_id": f"q{i}"}, {"configurable": {"thread_id": f"{tag}-{i}"}})
        assert out["answer"].startswith("small"), out
    return time.process_time() - start


@contextlib.asynccontextmanager
async def saver_of(kind: str, tmp: Path, pg_url: str | None) -> AsyncIterator[Any]:
    if kind == "none":
        yield None
    elif kind == "InMemorySaver":
        from langgraph.checkpoint.memory import InMemorySaver

        yield InMemorySaver()
    elif kind == "AsyncSqliteSaver":
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with AsyncSqliteSaver.from_conn_string(str(tmp / f"{time.monotonic_ns()}.db")) as saver:
            yield saver
    elif kind == "SqliteSaver":
        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(tmp / f"{time.monotonic_ns()}.db", check_same_thread=False)
        try:
            yield SqliteSaver(conn)
        finally:
            conn.close()
    else:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        async with AsyncPostgresSaver.from_conn_string(pg_url) as saver:  # type: ignore[arg-type]
            await saver.setup()
            yield saver


async def measure(kind: str, mode: str, n: int, repeats: int, tmp: Path, pg_url: str | None) -> tuple[float, float]:
    """Best-of-``repeats`` CPU seconds for ``n`` tasks of the bare and of the routed graph."""
    p = pool(n + 20)
    bare_best = routed_best = float("inf")
    for r in range(repeats):
        async with saver_of(kind, tmp, pg_url) as saver:
            bare, routed = bare_graph(p, saver), routed_graph(p, saver)
            if mode == "sync":
                await asyncio.to_thread(time_sync, bare, 20, f"wb{r}")  # warm up
                await asyncio.to_thread(time_sync, routed, 20, f"wr{r}")
                bare_s = await asyncio.to_thread(time_sync, bare, n, f"b{r}")
                routed_s = await asyncio.to_thread(time_sync, routed, n, f"r{r}")
            else:
                await time_async(bare, 20, f"wb{r}")
                await time_async(routed, 20, f"wr{r}")
                bare_s = await time_async(bare, n, f"b{r}")
                routed_s = await time_async(routed, n, f"r{r}")
        bare_best, routed_best = min(bare_best, bare_s), min(routed_best, routed_s)
    return bare_best, routed_best


async def main(n: int, repeats: int, postgres: bool) -> None:
    runs = [("none", "async"), ("InMemorySaver", "async"), ("AsyncSqliteSaver", "async")]
    server = None
    pg_url = None
    if postgres:
        from agentroute.memory.pgserver import PostgresServer, find_bindir

        if find_bindir() is not None:
            server = PostgresServer(durable=False).start()
            pg_url = server.url.replace("postgresql+psycopg://", "postgresql://")
            runs.append(("AsyncPostgresSaver", "async"))
        else:
            print("PostgreSQL server binaries not found: skipping AsyncPostgresSaver", file=sys.stderr)
    runs += [("none", "sync"), ("InMemorySaver", "sync"), ("SqliteSaver", "sync")]
    steps = n * len(STAGES)
    rows: dict[tuple[str, str], tuple[float, float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for kind, mode in runs:
                rows[(kind, mode)] = await measure(kind, mode, n, repeats, Path(tmp), pg_url)
    finally:
        if server is not None:
            server.stop()
    table = Table(title=f"{n} tasks × {len(STAGES)} steps on replay, process CPU µs per step (best of {repeats}), one task at a time")
    for col in ("saver", "path", "bare LangGraph", "saver adds", "agentroute", "saver adds", "agentroute's extra for checkpoints"):
        table.add_column(col, justify="right")
    for (kind, mode), (b, r) in rows.items():
        base_b, base_r = rows[("none", mode)]
        b_us, r_us = b / steps * 1e6, r / steps * 1e6
        b_add, r_add = (b - base_b) / steps * 1e6, (r - base_r) / steps * 1e6
        none = kind == "none"
        table.add_row(
            kind, "ainvoke" if mode == "async" else "invoke", f"{b_us:.0f}", "—" if none else f"{b_add:+.0f}",
            f"{r_us:.0f}", "—" if none else f"{r_add:+.0f}", "—" if none else f"{r_add - b_add:+.0f}",
        )
    Console(width=160).print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.tasks, args.repeats, not args.no_postgres))

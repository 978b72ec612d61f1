"""``agentroute run``: a batch of tasks from JSONL, with a progress bar; everything goes to memory."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from agentroute.cli.app import (
    BudgetOpt,
    MemoryOpt,
    PoolOpt,
    RouterOpt,
    _runtime,
    console,
    err_console,
    fail,
    result_json,
)
from agentroute.errors import AgentrouteError


def run_batch(
    graph: Annotated[str, typer.Argument(help="Graph name, module:attr or path/file.py[:attr].")],
    input: Annotated[Path, typer.Option("--input", help="JSONL: one {\"query\": ...} object per line (query_id, task_type optional).")],
    concurrency: Annotated[int, typer.Option("--concurrency", min=1)] = 4,
    router: RouterOpt = "cascade",
    pool: PoolOpt = None,
    budget_usd: BudgetOpt = None,
    memory: MemoryOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Also write one JSON result per line here.")] = None,
) -> None:
    """Run a batch of questions with a progress bar; everything is written to memory."""
    from agentroute.batch import read_jsonl_queries, run_with_progress

    try:
        items, bad = read_jsonl_queries(input)
    except AgentrouteError as exc:
        raise fail(str(exc)) from None
    for line, reason in bad:
        err_console.print(f"[yellow]skipped {input}:{line}[/] {reason}")
    if not items:
        raise fail(f"no valid queries in {input}")
    try:
        compiled, store = _runtime(graph, router, pool, budget_usd, memory)
    except AgentrouteError as exc:
        raise fail(str(exc)) from None
    try:
        results = asyncio.run(run_with_progress(compiled, items, concurrency, console))
    finally:
        store.close()
    if out is not None:
        with out.open("w") as fh:
            for result in results:
                fh.write(json.dumps(result_json(result)) + "\n")
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    table = Table(title=f"{len(results)} tasks ({len(bad)} lines skipped)")
    table.add_column("status")
    table.add_column("tasks", justify="right")
    for status, n in sorted(counts.items()):
        table.add_row(status, str(n))
    console.print(table)
    console.print(f"total cost ${sum(r.cost_usd for r in results):.6f}; memory: {store.url}")

"""Batches of tasks: read queries from JSONL (bad lines reported, not fatal) and run them with progress."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agentroute.errors import ConfigurationError

_QUERY_KEYS = ("query", "question", "prompt")


def read_jsonl_queries(path: str | Path) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Valid items (``query`` plus optional ``query_id``/``task_type``/``metadata``) and (line, reason) of bad lines."""
    path = Path(path)
    if not path.exists():
        raise ConfigurationError(f"input file {path} does not exist")
    items, bad = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append((number, f"invalid JSON: {exc.msg}"))
            continue
        if isinstance(obj, str):
            obj = {"query": obj}
        if not isinstance(obj, dict):
            bad.append((number, "expected an object or a string"))
            continue
        query = next((obj[k] for k in _QUERY_KEYS if isinstance(obj.get(k), str) and obj[k].strip()), None)
        if query is None:
            bad.append((number, f"no non-empty {' / '.join(_QUERY_KEYS)} field"))
            continue
        item: dict[str, Any] = {"query": query}
        for key in ("query_id", "task_type", "metadata"):
            if key in obj:
                item[key] = str(obj[key]) if key != "metadata" else obj[key]
        items.append(item)
    return items, bad


async def run_with_progress(compiled: Any, items: list[dict[str, Any]], concurrency: int, console: Console) -> list[Any]:
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task(f"running {compiled.name}", total=len(items))
        try:
            await compiled.dispatcher.pool.preload()
            return await compiled.arun_many(items, concurrency=concurrency, on_done=lambda _: progress.advance(bar))
        finally:
            await compiled.dispatcher.pool.aclose()

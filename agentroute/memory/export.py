"""Exports of the memory: trajectories as JSON lines, steps as a flat Parquet table."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from agentroute._optional import require
from agentroute.memory.tables import STEPS, TASKS
from agentroute.types import Trajectory

__all__ = ["PARQUET_COLUMNS", "write_jsonl", "write_parquet"]

_TASK_COLUMNS = ("query", "graph", "task_type", "status", "answer", "cost_usd", "score", "created_at")
_STEP_COLUMNS = (
    "id", "step_index", "stage", "role", "model", "strategy", "router", "decision", "input", "output",
    "tokens_in", "tokens_out", "cost_usd", "latency_ms", "status", "error", "score", "confidence", "created_at",
)  # fmt: skip
PARQUET_COLUMNS = ("task_id", *(f"task_{c}" for c in _TASK_COLUMNS), *(f"step_{c}" for c in _STEP_COLUMNS))
"""Columns of the Parquet export: ``task_id``, then ``task_*`` and ``step_*`` columns."""

_BATCH_ROWS = 10_000


def write_jsonl(trajectories: Iterable[Trajectory], path: Path) -> int:
    """Write one ``Trajectory`` JSON object per line; returns the number of lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for trajectory in trajectories:
            out.write(trajectory.model_dump_json())
            out.write("\n")
            count += 1
    return count


def _schema(pa: Any) -> Any:
    text, f64, i64 = pa.string(), pa.float64(), pa.int64()
    time = pa.timestamp("us", tz="UTC")
    types = {
        "task_id": text,
        "task_cost_usd": f64,
        "task_score": f64,
        "task_created_at": time,
        "step_step_index": i64,
        "step_tokens_in": i64,
        "step_tokens_out": i64,
        "step_cost_usd": f64,
        "step_latency_ms": f64,
        "step_score": f64,
        "step_confidence": f64,
        "step_created_at": time,
    }
    return pa.schema([(name, types.get(name, text)) for name in PARQUET_COLUMNS])


def _step_column(name: str) -> sa.ColumnElement[Any]:
    column = STEPS.c[name]
    return sa.cast(column, sa.Text) if name == "decision" else column  # JSON text as stored


def write_parquet(
    conn: sa.Connection, where: list[sa.ColumnElement[bool]], path: Path, *, limit: int | None
) -> int:
    """Stream ``tasks ⟕ steps`` (oldest task first, steps by index) into a Parquet file; returns rows."""
    pa = require("pyarrow")
    pq = require("pyarrow.parquet")
    tasks = sa.select(TASKS).where(*where).order_by(TASKS.c.created_at, TASKS.c.id).limit(limit).subquery()
    query = (
        sa.select(
            tasks.c.id.label("task_id"),
            *(tasks.c[c].label(f"task_{c}") for c in _TASK_COLUMNS),
            *(_step_column(c).label(f"step_{c}") for c in _STEP_COLUMNS),
        )
        .select_from(tasks.outerjoin(STEPS, STEPS.c.task_id == tasks.c.id))
        .order_by(tasks.c.created_at, tasks.c.id, STEPS.c.step_index, STEPS.c.created_at)
    )
    schema = _schema(pa)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        result = conn.execution_options(yield_per=_BATCH_ROWS).execute(query)
        for chunk in result.partitions():
            columns: dict[str, list[Any]] = {name: [] for name in PARQUET_COLUMNS}
            for row in chunk:
                for name, value in zip(PARQUET_COLUMNS, row, strict=True):
                    columns[name].append(value)
            writer.write_batch(pa.RecordBatch.from_pydict(columns, schema=schema))
            rows += len(chunk)
    return rows

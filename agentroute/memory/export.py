"""Exports of the memory: trajectories as JSON lines, steps as a flat Parquet table, and scored
steps in agentroute's long logged-outcome format (``outcomes``: read back by
``--dataset outcomes:PATH``)."""

from __future__ import annotations

import heapq
import itertools
import json
import numbers
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, get_args

import sqlalchemy as sa

from agentroute._optional import require
from agentroute.errors import ConfigurationError
from agentroute.memory.queries import iter_trajectories, step_order, task_filter
from agentroute.memory.tables import STEPS, TASKS
from agentroute.types import TaskStatus, Trajectory

if TYPE_CHECKING:
    from agentroute.memory.sql import SQLMemory

__all__ = [
    "OUTCOME_COLUMNS",
    "PARQUET_COLUMNS",
    "count_learned",
    "learned_trajectories",
    "outcome_rows",
    "write_jsonl",
    "write_outcomes",
    "write_parquet",
]

_TASK_COLUMNS = ("query", "graph", "task_type", "status", "answer", "cost_usd", "score", "created_at")
_STEP_COLUMNS = (
    "id", "step_index", "stage", "role", "model", "strategy", "router", "decision", "input", "output",
    "tokens_in", "tokens_out", "cost_usd", "latency_ms", "status", "error", "score", "confidence", "created_at",
)  # fmt: skip
PARQUET_COLUMNS = ("task_id", *(f"task_{c}" for c in _TASK_COLUMNS), *(f"step_{c}" for c in _STEP_COLUMNS))
"""Columns of the Parquet export: ``task_id``, then ``task_*`` and ``step_*`` columns."""

_BATCH_ROWS = 10_000


@contextmanager
def _text_out(target: Path | TextIO, newline: str | None = None) -> Iterator[TextIO]:
    """``target`` opened for writing text (its folder created), or the stream itself (left open)."""
    if not isinstance(target, Path):
        yield target
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8", newline=newline) as out:
        yield out


def write_jsonl(trajectories: Iterable[Trajectory], target: Path | TextIO) -> int:
    """Write one ``Trajectory`` JSON object per line to a file or a text stream; returns the lines."""
    count = 0
    with _text_out(target) as out:
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
    conn: sa.Connection,
    where: list[sa.ColumnElement[bool]],
    path: Path,
    *,
    limit: int | None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Stream ``tasks ⟕ steps`` (oldest task first, its steps in :func:`~agentroute.memory.queries.step_order`) into a Parquet file; returns rows.
    ``progress(n)`` is called after each ``n`` rows written."""
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
        .order_by(tasks.c.created_at, tasks.c.id, *step_order())
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
            if progress is not None:
                progress(len(chunk))
    return rows


OUTCOME_COLUMNS = (
    "query_id", "query", "agent", "model", "strategy", "role", "score", "cost_usd", "tokens_in", "tokens_out",
    "task", "split", "response", "propensity", "task_id", "step_index",
)  # fmt: skip
"""Columns of the ``outcomes`` export (``docs/outcomes.md``)."""


def outcome_rows(trajectories: Iterable[Trajectory]) -> Iterable[dict[str, Any]]:
    """One row per step with a learned score (a failed call's 0 included, an outage's left out):
    the long format's query × agent outcome.

    Each outcome goes to the row :meth:`~agentroute.outcomes.OutcomeTable.from_trajectories` puts it
    in (:func:`~agentroute.outcomes.step_row`), so training on the export and on the memory sees the
    same table: a one-step task is a row for its query (``query_id`` from the task's metadata, else
    empty), a step of a longer task a row for its own input; an empty ``query_id`` is read back as the
    id its text has in other rows, else a hash of the text (:func:`~agentroute.outcomes.borrowed_query_ids`). The score is
    :func:`~agentroute.outcomes.learned_scores`' (feedback included); the cost is the step's.
    ``propensity`` is the probability the serving router gave the agent
    (``Decision.evidence["propensity"]``), when logged.
    """
    from agentroute.outcomes import learned_scores, step_row

    for trajectory in trajectories:
        task = trajectory.task
        for step, score in learned_scores(trajectory):
            if score is None:
                continue
            query_id, text = step_row(trajectory, step)
            evidence = step.decision.evidence if step.decision is not None else {}
            propensity = evidence.get("propensity") if isinstance(evidence, dict) else None
            yield {
                "query_id": query_id,
                "query": text,
                "agent": step.agent.key,
                "model": step.agent.model,
                "strategy": step.agent.strategy,
                "role": step.agent.role,
                "score": float(score),
                "cost_usd": float(step.cost_usd),
                "tokens_in": int(step.tokens_in),
                "tokens_out": int(step.tokens_out),
                "task": task.task_type,
                "split": None,
                "response": step.output,
                "propensity": None if propensity is None else float(propensity),
                "task_id": task.id,
                "step_index": step.index,
            }


def _learned_reads(status: Sequence[str] | None) -> tuple[list[str], bool]:
    """The statuses read among ``status`` (``None``: every finished one; ``running`` never) as (those
    read only when scored, whether failed tasks are read scored or not)."""
    if status is None:
        wanted = [s for s in get_args(TaskStatus) if s != "running"]
    else:  # a status that is none goes on to the memory, which names it
        wanted = [s for s in ([status] if isinstance(status, str) else status) if s != "running"]
    return [s for s in wanted if s != "failed"], "failed" in wanted


def _checked_limit(limit: int | None) -> int | None:
    """``limit`` as the memory takes it (``None`` or a whole number ≥ 0), else a one-line error."""
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 0
    ):
        raise ConfigurationError(f"limit must be a non-negative whole number or None (got {limit!r})")
    return limit


def _learns(trajectory: Trajectory) -> bool:
    """Whether :func:`~agentroute.outcomes.learned_scores` scores one of ``trajectory``'s steps."""
    from agentroute.outcomes import learned_scores

    return any(score is not None for _, score in learned_scores(trajectory))


def learned_trajectories(
    store: SQLMemory,
    *,
    graph: str | None = None,
    status: Sequence[str] | None = None,
    limit: int | None = None,
) -> Iterator[Trajectory]:
    """The memory's tasks a router learns from, oldest first: those of ``status`` (``None``: every
    finished status) of which :func:`~agentroute.outcomes.learned_scores` scores a step — a scored
    task, and a failed one whose failed call was its agent's (scored 0; a task failed by an outage
    teaches nothing). The one home of the selection of ``train --from`` and ``memory export
    --format outcomes``; ``limit`` (``None`` or ≥ 0) counts the tasks given."""
    limit = _checked_limit(limit)
    scored_statuses, failed = _learned_reads(status)
    streams = (
        [store.iter_trajectories(graph=graph, status=scored_statuses, with_score=True)]
        if scored_statuses
        else []
    )
    if failed:
        streams.append(store.iter_trajectories(graph=graph, status=["failed"]))
    merged = heapq.merge(*streams, key=lambda t: (t.task.created_at, t.task.id))  # the memory's order
    return itertools.islice(filter(_learns, merged), limit)


def count_learned(
    store: SQLMemory,
    *,
    graph: str | None = None,
    status: Sequence[str] | None = None,
    limit: int | None = None,
) -> int:
    """How many tasks :func:`learned_trajectories` gives, for a progress bar, by its own test
    (:func:`~agentroute.outcomes.learned_scores` scores a step) on the tasks it cannot tell in SQL:
    its scored tasks by one count query, less those of them with no ``ok`` step that learn nothing
    (read: an ``ok`` step of a scored task is always scored); its failed ones read."""
    limit = _checked_limit(limit)
    scored_statuses, failed = _learned_reads(status)
    n = 0
    if scored_statuses:
        n = store.count_tasks(graph=graph, status=scored_statuses, with_score=True)  # checks the statuses
        answered = sa.exists().where(STEPS.c.task_id == TASKS.c.id, STEPS.c.status == "ok")
        where = [*task_filter(graph=graph, status=scored_statuses, with_score=True), ~answered]
        with store._read() as conn:  # noqa: SLF001 - the memory package's own read
            n -= sum(1 for t in iter_trajectories(conn, where) if not _learns(t))
    if failed:
        n += sum(1 for t in store.iter_trajectories(graph=graph, status=["failed"]) if _learns(t))
    return n if limit is None else min(n, limit)


# what `--dataset outcomes:FILE` reads back
_OUTCOME_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv", ".parquet")


def write_outcomes(trajectories: Iterable[Trajectory], target: Path | TextIO) -> int:
    """Write :func:`outcome_rows` to a file as JSONL (``.jsonl``/``.json``), CSV (``.csv``) or
    Parquet (``.parquet``, needs pyarrow), or to a text stream as JSONL; returns the number of rows."""
    suffix = target.suffix.lower() if isinstance(target, Path) else ".jsonl"
    if suffix not in _OUTCOME_SUFFIXES:
        raise ConfigurationError(
            f"{target}: the outcomes export writes .jsonl, .csv or .parquet (got {suffix or 'no suffix'!r})"
        )
    rows = outcome_rows(trajectories)
    if suffix in (".jsonl", ".json", ".ndjson"):
        count = 0
        with _text_out(target) as out:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
        return count
    if suffix == ".csv":
        import csv

        count = 0
        with _text_out(target, newline="") as out:
            writer = csv.DictWriter(out, fieldnames=OUTCOME_COLUMNS)
            writer.writeheader()
            for row in rows:
                writer.writerow(row)
                count += 1
        return count
    assert isinstance(target, Path)  # .parquet: a stream is JSONL
    target.parent.mkdir(parents=True, exist_ok=True)
    pa = require("pyarrow")
    pq = require("pyarrow.parquet")
    table = pa.Table.from_pylist(list(rows) or [dict.fromkeys(OUTCOME_COLUMNS)])
    if table.num_rows == 1 and table.column("query").to_pylist() == [None]:
        table = table.slice(0, 0)
    pq.write_table(table, str(target))
    return table.num_rows

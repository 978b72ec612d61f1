"""``agentroute memory``: stats, show a task, export trajectories, close the tasks of dead processes."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_args

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from agentroute.cli.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    check_out,
    error_text,
    exit_code_for,
    print_error,
)
from agentroute.errors import AgentrouteError, ConfigurationError

if TYPE_CHECKING:  # the memory (SQLAlchemy, Alembic) loads when a command opens one, not for --help
    from agentroute.memory.sql import SQLMemory
    from agentroute.types import Trajectory

memory_app = typer.Typer(help="Inspect and export the SQL memory.", no_args_is_help=True)


def _console(stderr: bool = False) -> Console:
    return Console(stderr=stderr)  # built per command, so that it sees the terminal's current width


MemoryOpt = Annotated[
    str | None,
    typer.Option(
        "--memory", help="SQLAlchemy URL of the memory (default: $AGENTROUTE_MEMORY or a local SQLite file)."
    ),
]


class ExportFormat(StrEnum):
    jsonl = "jsonl"
    parquet = "parquet"
    outcomes = "outcomes"


_NUMERIC = {"#", "tokens", "cost", "ms", "score", "calls"}


def _fail(message: str, code: int = EXIT_FAILURE) -> typer.Exit:
    print_error(str(message), _console(stderr=True))
    return typer.Exit(code)


def existing_memory_url(url: str | None) -> str:
    """The URL of a memory to read (default: :func:`default_url`); a SQLite file that does not
    exist, or an in-memory SQLite database (empty in every new process), is a
    :class:`ConfigurationError`, never a new, empty database read as the memory."""
    from agentroute.memory.engine import default_url, resolve_url

    parsed = resolve_url(url)
    path = parsed.database
    if parsed.get_backend_name() == "sqlite":
        if path in (None, "", ":memory:"):
            raise ConfigurationError(
                f"{url or default_url()!r} is an in-memory database, empty in a new process: give the memory's "
                "file (sqlite:///PATH) or server URL"
            )
        if not Path(path).is_file():
            raise ConfigurationError(f"no memory database at {path} (from {url or default_url()!r})")
    return parsed.render_as_string(hide_password=False)


def _open(url: str | None) -> SQLMemory:
    """Open an existing memory (:func:`existing_memory_url`), or exit with the error."""
    try:
        from agentroute.memory.sql import SQLMemory

        return SQLMemory(existing_memory_url(url))
    except AgentrouteError as exc:
        raise _fail(error_text(exc), exit_code_for(exc)) from exc


def _money(value: float | None) -> str:
    return "" if value is None else f"${value:.6f}"


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


@memory_app.command()
def stats(
    memory: MemoryOpt = None, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
) -> None:
    """Counts and totals: tasks by status (those of gone processes apart), steps and the provider attempts
    they made, cost, tokens, models."""
    with _open(memory) as store:
        figures = store.stats()
        url = store.url
    if as_json:
        typer.echo(json.dumps(figures, indent=2))
        return
    console = _console()
    summary = Table(title="memory", show_header=False)
    summary.add_row("url", url)
    summary.add_row("tasks", str(figures["tasks_total"]))
    gone = figures.get("running", {}).get("gone", 0)
    for status, count in figures["tasks"].items():
        if status == "running" and gone:
            count -= gone
            if count:
                summary.add_row("  running", str(count))
            summary.add_row("  running (process gone)", str(gone))
            continue
        summary.add_row(f"  {status}", str(count))
    summary.add_row("steps", str(figures["steps"]))
    summary.add_row("  provider attempts", str(figures.get("attempts", 0)))
    summary.add_row("cost", _money(figures["cost_usd"]))
    summary.add_row("tokens in / out", f"{figures['tokens_in']} / {figures['tokens_out']}")
    summary.add_row("feedback", str(figures["feedback"]))
    if no_task := figures.get("feedback_no_task", 0):
        summary.add_row("  on no stored task", str(no_task))
    summary.add_row("audit events", str(figures["audit_events"]))
    console.print(summary)
    if gone:
        console.print(
            f"[yellow]note:[/] {gone} running task(s) of processes that are gone (killed, crashed): "
            "`agentroute memory reconcile` closes them as interrupted"
        )
    if unknown := figures.get("running", {}).get("unknown", 0):
        console.print(
            f"[yellow]note:[/] {unknown} running task(s) without a recorded process (written by an agentroute "
            "before 2026-12-06), so nothing tells whether they still run: `agentroute memory reconcile "
            "--older-than 1d` closes those started over a day ago as interrupted"
        )
    if no_task:
        console.print(
            f"[yellow]note:[/] {no_task} feedback row(s) name no stored task: its task still running (or not yet "
            "flushed) in another process, or a mistyped id, which scores nothing"
        )
    if figures["models"]:
        models = Table(title="per model")
        for column in ("model", "calls", "cost", "tokens"):
            models.add_column(column, justify="left" if column == "model" else "right")
        for model, usage in figures["models"].items():
            models.add_row(model, str(usage["calls"]), _money(usage["cost_usd"]), str(usage["tokens"]))
        console.print(models)


def _print_trajectory(trajectory: Trajectory, audit: list[Any]) -> None:
    console, task = _console(), trajectory.task
    head = Table(title=f"task {task.id}", show_header=False)
    for name, value in (
        ("query", task.query),
        ("graph", task.graph),
        ("status", task.status),
        ("answer", task.answer or ""),
        ("cost", _money(task.cost_usd)),
        ("score", _num(task.score)),
        ("budget", json.dumps(task.budget.limits()) if task.budget else ""),
        ("created", task.created_at.isoformat()),
    ):
        head.add_row(name, Text(value))  # user text: "[choose-list] …" is not markup
    from agentroute.memory.batches import META_KEY  # loaded with the memory already

    batch = task.metadata.get(META_KEY)
    if isinstance(batch, dict) and batch.get("continues"):  # a batch item rerun after an interruption
        why = (
            " (its budget: what they left)" if task.budget is not None else ""
        )  # no budget: nothing was kept
        head.add_row("continues", Text(f"{', '.join(map(str, batch['continues']))}{why}"))
    console.print(head)
    steps = Table(title="steps", box=box.SIMPLE_HEAD)
    for column in ("#", "stage", "agent", "status", "tokens", "cost", "ms", "score"):
        numeric = column in _NUMERIC
        steps.add_column(column, justify="right" if numeric else "left", overflow="fold", no_wrap=numeric)
    steps.add_column("output", overflow="fold")
    for s in trajectory.steps:
        agent = s.agent.key if s.decision is None else f"{s.agent.key} ({s.decision.router})"
        status = s.status if s.error is None else f"{s.status}: {s.error}"
        tokens = f"{s.tokens_in}+{s.tokens_out}"
        cells = (
            str(s.index), s.stage, agent, status, tokens, _money(s.cost_usd), f"{s.latency_ms:.0f}",
            _num(s.score), _clip(s.output, 40),
        )  # fmt: skip
        steps.add_row(*map(Text, cells))
    console.print(steps)
    if audit:
        events = Table(title="audit events")
        for column in ("time", "stage", "kind", "subject", "detail"):
            events.add_column(column, overflow="fold")
        for e in audit:
            events.add_row(
                *map(Text, (e.created_at.isoformat(timespec="seconds"), e.stage, e.kind, e.subject, e.detail))
            )
        console.print(events)


def task_id_from(store: SQLMemory, given: str) -> str:
    """The task id a command's TASK_ID names: ``given`` if a task has that id, else the one id it
    begins (as git takes a commit's first characters). None begins with it: exit 1 naming the latest
    tasks (a missing row: another process may not have stored its task yet); several: exit 2 naming
    them (bad input: more tasks never make it one); empty: exit 2 (an unset shell variable names any)."""
    import sqlalchemy as sa

    from agentroute.memory.tables import TASKS

    if not given.strip():
        raise _fail("TASK_ID is empty: give a task's id or its first characters", EXIT_BAD_INPUT)
    store.flush()
    with store.engine.connect() as conn:
        found = (
            conn.execute(
                sa.select(TASKS.c.id)
                .where(TASKS.c.id.startswith(given, autoescape=True))
                .order_by(TASKS.c.id)
                .limit(4)
            )
            .scalars()
            .all()
        )
        if given in found or len(found) == 1:
            return given if given in found else found[0]
        if found:
            shown = ", ".join(found[:3]) + (", …" if len(found) > 3 else "")
            raise _fail(f"task id {given!r} is ambiguous: {shown}; give more of it", EXIT_BAD_INPUT)
        latest = conn.execute(
            sa.select(TASKS.c.id, TASKS.c.query).order_by(TASKS.c.created_at.desc()).limit(3)
        ).all()
    if not latest:
        raise _fail(f"no task {given!r} in the memory (it holds no tasks yet)")
    shown = "; ".join(f"{row.id} ({_clip(row.query, 30)})" for row in latest)
    raise _fail(f"no task {given!r} in the memory; the latest: {shown}")


@memory_app.command()
def show(
    task_id: Annotated[str, typer.Argument(help="The task's id, or its first characters.")],
    memory: MemoryOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the trajectory as JSON.")] = False,
) -> None:
    """One task with its steps and audit events (TASK_ID may be the start of an id, as git takes a commit's)."""
    with _open(memory) as store:
        trajectory = store.get_task(task_id_from(store, task_id))
        audit = store.audit_events(trajectory.task.id) if trajectory is not None else []
    if trajectory is None:
        raise _fail(f"no task {task_id!r} in the memory")
    if as_json:
        data = trajectory.model_dump(mode="json")
        data["audit_events"] = [e.model_dump(mode="json") for e in audit]
        typer.echo(json.dumps(data, indent=2))
        return
    _print_trajectory(trajectory, audit)


@memory_app.command()
def export(
    out: Annotated[
        str,
        typer.Option(
            "--out", help="File to write; - for standard output (jsonl, outcomes as JSONL; ./- is a file)."
        ),
    ],
    format: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            help="jsonl: one trajectory per line; parquet: one row per step; outcomes: the long logged-outcome "
            "format (one row per scored query × agent; .jsonl, .csv or .parquet by --out's suffix), "
            "read back by `--dataset outcomes:FILE`.",
        ),
    ] = ExportFormat.jsonl,
    memory: MemoryOpt = None,
    graph: Annotated[str | None, typer.Option("--graph", help="Only tasks of this graph.")] = None,
    status: Annotated[
        list[str] | None,
        typer.Option("--status", help="Only tasks with this status (repeatable; default: finished)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="At most this many tasks (oldest first).")
    ] = None,
) -> None:
    """Export finished tasks with their steps (the training data of routers)."""
    from agentroute.types import TaskStatus

    unknown = [s for s in status or [] if s not in get_args(TaskStatus)]
    if unknown:
        raise _fail(
            f"--status {', '.join(unknown)}: not a task status ({', '.join(get_args(TaskStatus))})",
            EXIT_BAD_INPUT,
        )
    if limit is not None and limit < 1:
        raise _fail(f"--limit must be at least 1 (got {limit})", EXIT_BAD_INPUT)
    from agentroute.out_path import is_stdout

    to_stdout = is_stdout(out)  # as typed: ./- is a file named -
    if to_stdout and format is ExportFormat.parquet:
        raise _fail(
            f"--out {out}: parquet is binary and is not written to standard output; give a .parquet file",
            EXIT_BAD_INPUT,
        )
    path = Path(out)
    _check_out(path, to_stdout, create=False)  # before the memory opens; its folders once it has
    target = sys.stdout if to_stdout else path
    from agentroute import progress

    with _open(memory) as store:
        _check_out(path, to_stdout)
        try:
            scored = format is ExportFormat.outcomes
            if format is ExportFormat.parquet:
                with progress.bar(None, "exporting", unit=" rows") as shown:
                    count = store.export_parquet(
                        path, graph=graph, status=status or None, limit=limit, progress=shown.update
                    )
            else:
                from agentroute.memory.export import (
                    count_learned,
                    learned_trajectories,
                    write_jsonl,
                    write_outcomes,
                )

                writer = write_outcomes if scored else write_jsonl
                chosen: dict[str, Any] = {"graph": graph, "status": status or None, "limit": limit}
                if (
                    scored
                ):  # the tasks a router learns from: the scored, and the failed by their agents' calls
                    total = count_learned(store, **chosen) if progress.enabled() else None
                    tasks = learned_trajectories(store, **chosen)
                else:
                    total = store.count_tasks(**chosen) if progress.enabled() else None
                    tasks = store.iter_trajectories(**chosen)
                with progress.bar(total, "exporting", unit=" tasks") as shown:
                    count = writer(_counted(tasks, shown.update), target)
        except AgentrouteError as exc:
            raise _fail(error_text(exc), exit_code_for(exc)) from exc
    unit = {ExportFormat.parquet: "rows", ExportFormat.outcomes: "outcome rows"}.get(format, "trajectories")
    where = "standard output" if to_stdout else out  # as typed: ./-, not -
    _console(stderr=to_stdout).print(escape(f"wrote {count} {unit} to {where}"))
    if count == 0 and format is ExportFormat.outcomes:
        _console(stderr=True).print(
            "[yellow]note:[/] nothing learned in the selected tasks (no scored step, no failed call but outages): score "
            "them first (`agentroute feedback TASK_ID --score X`, or `agentroute run --input` with gold answers); "
            "`memory stats` shows what the memory holds"
        )


def _check_out(out: Path, to_stdout: bool, *, create: bool = True) -> None:
    """``--out``'s rule (:func:`check_out`), or exit 2 with its line; nothing to check for ``-``."""
    if to_stdout:
        return
    try:
        check_out(out, create=create)
    except AgentrouteError as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None


def _counted(items: Iterator[Trajectory], update: Callable[[int], Any]) -> Iterator[Trajectory]:
    """``items``, calling ``update(1)`` after each (a progress bar)."""
    for item in items:
        yield item
        update(1)


@memory_app.command()
def reconcile(
    memory: MemoryOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count them; close nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Also close the running tasks without a recorded process (an agentroute before 2026-12-06) "
            "started longer ago than this: 90s, 30m, 12h, 7d.",
        ),
    ] = None,
) -> None:
    """Close the tasks left running by a process that is gone (kill -9, a crash, a lost host).

    They end interrupted with the cost of their recorded steps, each provider call they had in flight
    first stored as a failed step at its worst case (audited: unsettled_attempt), and metadata["error"] saying why. A
    process of this host is told by its pid; one of another host sharing a PostgreSQL memory by its
    lease (released when its session ends, and still released at a second look). Tasks of live processes
    are never touched, nor other hosts' without a lease (SQLite: run this on the host that ran them).
    Tasks without a recorded process (an agentroute before 2026-12-06) are closed only with --older-than,
    those started longer ago than that: nothing tells whether their process still runs.
    """
    from agentroute.memory.processes import Closed

    age = None if older_than is None else _duration(older_than, "--older-than")
    with _open(memory) as store:
        try:
            running = store.running_tasks()
            if running.released and not dry_run:
                from agentroute.memory.claims import LEASE_GRACE_S

                _console(stderr=True).print(
                    f"{len(running.released)} task(s) of other hosts whose lease is released: looking again in "
                    f"{LEASE_GRACE_S:g} s (a live process takes back a lease whose connection was dropped)"
                )
            done = Closed() if dry_run else store.reconcile(running.gone)
            old = Closed() if age is None else _close_unrecorded(store, age, dry_run)
        except AgentrouteError as exc:
            raise _fail(error_text(exc), exit_code_for(exc)) from exc
    counts, closed = running.counts(), done.tasks + ([] if dry_run else old.tasks)
    settled = {"calls": len(done.settled) + len(old.settled), "usd": done.settled_usd + old.settled_usd}
    if as_json:  # found: before closing; settled: the calls in flight, at their worst case
        typer.echo(json.dumps({"closed": closed, "settled": settled, "found": counts}, indent=2))
        return
    console = _console()
    unrecorded = f"; {len(old.tasks)} without a recorded process started over {older_than} ago" if age else ""
    if dry_run:
        console.print(
            f"{counts['gone']} running task(s) whose process is gone{unrecorded} (--dry-run: none closed)"
        )
    else:
        console.print(
            f"closed {len(closed)} task(s) whose process is gone{' or unrecorded' if old.tasks else ''} as interrupted; "
            f"{settled['calls']} call(s) in flight stored at their worst case (${settled['usd']:.6g})"
        )
        if back := len(set(running.released) - set(closed)):
            console.print(
                f"{back} task(s) of other hosts left running: their lease was taken again (or they ended)"
            )
    unknown = counts["unknown"] - (0 if dry_run else len(old.tasks))
    if counts["alive"] + counts["other_host"] + unknown:
        hint = " (--older-than DURATION closes those started longer ago)" if unknown else ""
        console.print(
            f"left running: {counts['alive']} of live processes, {counts['other_host']} of other hosts without a lease, "
            f"{unknown} without a recorded process{hint}"
        )


def _duration(text: str, option: str) -> timedelta:
    """``90s``, ``30m``, ``12h``, ``7d`` (a bare number: seconds) as a timedelta; else exit 2 naming ``option``."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0 or seconds > 1e9:
        raise _fail(
            f"{option} {text!r}: expected a positive duration such as 90s, 30m, 12h or 7d", EXIT_BAD_INPUT
        )
    return timedelta(seconds=seconds)


def _close_unrecorded(store: SQLMemory, age: timedelta, dry_run: bool) -> Any:
    """:func:`~agentroute.memory.processes.close_unrecorded` in one write transaction (this process's
    own writes flushed first)."""
    import contextlib

    from agentroute.memory.processes import close_unrecorded
    from agentroute.memory.sql import write_transaction

    store.flush()
    with write_transaction(store.engine, contextlib.nullcontext()) as conn:  # BEGIN IMMEDIATE on SQLite
        return close_unrecorded(conn, age, dry_run=dry_run)

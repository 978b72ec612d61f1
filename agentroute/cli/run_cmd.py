"""``agentroute run``: a durable batch of tasks from JSONL, with a progress bar; everything goes to memory.

Exit codes: 0 every query ``done`` or ``budget_exhausted``; 1 some ``failed`` (the count is
printed); 2 bad input (missing, binary or empty input, an unknown batch); 128 + the signal
(130 SIGINT, 143 SIGTERM) when stopped by a signal before the batch finished — rerun with
``--resume`` to finish it; 141 (128 + SIGPIPE) when ``--out -``'s reader closed standard output
before the last line (``| head -1``): the run stops as on SIGTERM, quietly, the memory whole.
``--out -`` writes the JSON lines to standard output and everything else to standard error.
``agentroute run web …`` hands over to the web-agent runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from agentroute.cli.app import (
    AllowNewOpt,
    BudgetOpt,
    CallsOpt,
    LargeOpt,
    MemoryOpt,
    PoolOpt,
    RouterOpt,
    SecondsOpt,
    TokensOpt,
    _runtime,
    console,
    err_console,
    fail,
    fail_on,
)
from agentroute.cli.errors import check_out, error_text
from agentroute.errors import AgentrouteError, MissingDependencyError
from agentroute.out_path import StdoutLines, is_stdout

#: What ``app.command("run", context_settings=RUN_CONTEXT_SETTINGS)`` needs so that
#: ``agentroute run web --tasks … --episodes N`` reaches the web runner's own options.
RUN_CONTEXT_SETTINGS = {"allow_extra_args": True, "ignore_unknown_options": True}

EXIT_FAILED, EXIT_BAD_INPUT = 1, 2


def run_batch(
    ctx: typer.Context,
    graph: Annotated[
        str, typer.Argument(help="Graph name, module:attr or path/file.py[:attr]; `web` runs the web agent.")
    ],
    input: Annotated[
        Path | None,
        typer.Option(
            "--input",
            help='JSONL: one {"query": ...} object per line (query_id, task_type, metadata optional).',
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1)] = 4,
    router: RouterOpt = "cascade",
    pool: PoolOpt = None,
    budget_usd: BudgetOpt = None,
    budget_tokens: TokensOpt = None,
    budget_calls: CallsOpt = None,
    budget_seconds: SecondsOpt = None,
    budget_large_calls: LargeOpt = None,
    memory: MemoryOpt = None,
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            help="Also write one JSON line per finished task here, as it finishes (appended with --resume); - for standard output (the rest then goes to standard error; ./- is a file).",
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the batch: skip queries already done, rerun interrupted and failed ones. Several processes may resume one batch at once.",
        ),
    ] = False,
    batch: Annotated[
        str | None,
        typer.Option(
            "--batch",
            help="Batch id (default: GRAPH-<hash of the input's query ids>). With --resume, joins that batch; --input may then be left out.",
        ),
    ] = None,
    grace_s: Annotated[
        float,
        typer.Option(
            "--grace-s",
            min=0,
            help="On SIGTERM/SIGINT, seconds the tasks in flight may finish before they are interrupted.",
        ),
    ] = 30.0,
    lease_s: Annotated[
        float,
        typer.Option(
            "--lease-s",
            min=1,
            help="A worker on another host silent this long is taken as dead (its work is rerun).",
        ),
    ] = 60.0,
    checkpointer: Annotated[
        str | None,
        typer.Option(
            "--checkpointer",
            help="LangGraph checkpointer: `memory` (the memory's own database), postgresql://… or sqlite:///PATH.",
        ),
    ] = None,
    metric: Annotated[
        str,
        typer.Option(
            "--metric",
            help="How lines with a gold `answer`/`answers` are scored: em | f1 | contains (SQuAD-normalised); the score is stored as the task's feedback.",
        ),
    ] = "em",
    corpus: Annotated[
        Path | None,
        typer.Option(
            "--corpus",
            help="qa graph: retrieve passages by BM25 from this corpus (JSON list of strings or {title, text}, JSONL, or {title: [sentences]}).",
        ),
    ] = None,
    allow_new_agents: AllowNewOpt = False,
) -> None:
    """Run a batch of questions with a progress bar; everything is written to memory.

    Each query runs once: with --resume, queries already done in the batch are skipped, tasks
    left running by a crash are marked interrupted and rerun. SIGTERM/SIGINT stop gracefully.
    """
    if graph == "web":
        if budget_tokens is not None:  # the web runner takes no token budget (docs/web_agent.md)
            raise fail(
                "--budget-tokens: run web takes no token budget; set Budget(tokens=…) from Python (docs/web_agent.md)",
                EXIT_BAD_INPUT,
            )
        # `run` parsed the per-episode --budget-* options itself: hand them to the web runner (they were dropped)
        limits = {
            "--budget-calls": budget_calls,
            "--budget-seconds": budget_seconds,
            "--budget-large-calls": budget_large_calls,
        }
        ctx.args = [*ctx.args, *(a for name, v in limits.items() if v is not None for a in (name, str(v)))]
        _run_web(ctx, router=router, pool=pool, budget_usd=budget_usd, memory=memory, concurrency=concurrency)
    if ctx.args:
        raise fail(f"unexpected arguments: {' '.join(ctx.args)}", EXIT_BAD_INPUT)
    from agentroute.batch import read_jsonl_queries
    from agentroute.eval.answers import METRICS

    if metric not in METRICS:
        raise fail(f"unknown --metric {metric!r}; known: {', '.join(sorted(METRICS))}", EXIT_BAD_INPUT)
    to_stdout = out is not None and is_stdout(out)
    out_file = None if out is None or to_stdout else Path(out)
    try:
        if out_file is not None:  # its folders: at the batch's first write, so that a refused run leaves none
            check_out(out_file, create=False)
    except AgentrouteError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT) from None

    items: list[dict[str, Any]] = []
    bad: list[tuple[int, str]] = []
    if input is not None:
        try:
            items, bad = read_jsonl_queries(input)
        except AgentrouteError as exc:
            raise fail(str(exc), EXIT_BAD_INPUT) from None
        for line, reason in bad:
            err_console.print(f"[yellow]skipped {input}:{line}[/] {reason}")
        if not items:
            raise fail(f"no valid queries in {input}", EXIT_BAD_INPUT)
    elif not (resume and batch):
        raise fail(
            "--input is required (or --resume --batch ID to join a batch already in the memory)",
            EXIT_BAD_INPUT,
        )
    limits = {
        "tokens": budget_tokens,
        "calls": budget_calls,
        "seconds": budget_seconds,
        "large_calls": budget_large_calls,
    }
    execute = functools.partial(
        _execute, (graph, router, pool, budget_usd, memory, allow_new_agents), limits, corpus, items, len(bad), batch,
        checkpointer, concurrency=concurrency, resume=resume, grace_s=grace_s, lease_s=lease_s, metric=metric,
    )  # fmt: skip
    if not to_stdout:
        return execute(out_file, None)
    with contextlib.ExitStack() as stack:
        try:  # the JSON lines on stdout; the bar, the summary, any print: on stderr
            lines = stack.enter_context(StdoutLines())
        except AgentrouteError as exc:
            raise fail(str(exc), EXIT_BAD_INPUT) from None
        try:
            return execute(None, lines)
        except KeyboardInterrupt as stop:  # also a SIGTERM while the last lines wait for a stalled reader
            from agentroute.training.stopping import exit_stopped, stop_word  # numpy: not on --help's path

            exit_stopped(stop, stop_word(stop))


def _execute(
    runtime: tuple[Any, ...], limits: dict[str, Any], corpus: Path | None, items: list[dict[str, Any]], skipped: int,
    batch: str | None, checkpointer: str | None, out: Path | None, lines: StdoutLines | None, *,
    concurrency: int, resume: bool, grace_s: float, lease_s: float, metric: str,
) -> None:  # fmt: skip
    """Build the graph, run the batch (``--out`` to ``out``, or to ``lines``: ``--out -``) and report."""
    from agentroute.batch import BatchRunner, adopt_unbatched, default_batch_id

    graph, router, pool, budget_usd, memory, allow_new_agents = runtime
    shown = console if lines is None else err_console
    try:
        if corpus is not None:
            compiled, store = corpus_runtime(
                graph, corpus, router, pool, budget_usd, memory, allow_new_agents, **limits
            )
        else:
            compiled, store = _runtime(graph, router, pool, budget_usd, memory, allow_new_agents, **limits)
    except AgentrouteError as exc:
        raise fail_on(exc) from None
    try:
        saver_url = _checkpointer_url(checkpointer, store) if checkpointer else None
        batch_id, finished = _batch_id(
            store, batch, resume, default_batch_id(compiled.name, items) if items else None
        )
        if (
            resume
            and items
            and not finished
            and (adopted := adopt_unbatched(store, compiled.name, batch_id, items))
        ):
            finished += adopted
            shown.print(
                f"[yellow]note:[/] {_count(adopted, 'query', 'queries')} of this input done by an agentroute older than "
                f"durable batches (tasks without a batch) taken into batch {batch_id} as finished; not run again",
                soft_wrap=True,
            )
        total = max(len(items) - finished, 0) or None
        with contextlib.ExitStack() as stack:
            if lines is not None:
                out = stack.enter_context(lines.relay())  # BatchRunner's lines, copied to stdout as they come
            runner = BatchRunner(
                compiled, store, batch_id=batch_id, concurrency=concurrency, resume=resume, out=out,
                grace_s=grace_s, lease_s=lease_s, metric=metric,
            )  # fmt: skip
            report = asyncio.run(_run(runner, items, total, saver_url, lines))
    except AgentrouteError as exc:
        refused = isinstance(exc, _BadBatch | MissingDependencyError)
        raise fail(error_text(exc), EXIT_BAD_INPUT if refused else 1) from None
    finally:
        store.close()
    _summary(report, store.url, skipped, metric, shown)
    if lines is not None and lines.failure is not None:  # the run stopped as the lines could not be written
        raise fail(f"--out -: cannot write standard output ({lines.failure}); the memory holds every task "
                   f"(`agentroute run {graph} --resume --batch {report.batch_id} --out FILE` writes them all)", 1)  # fmt: skip
    stopped = report.stopped or ("SIGPIPE" if lines is not None and lines.closed else None)
    if stopped is not None and report.remaining:
        how = "standard output closing (--out -)" if stopped == "SIGPIPE" else stopped
        err_console.print(
            f"[yellow]stopped by {how}[/]: {report.remaining} quer{'y' if report.remaining == 1 else 'ies'} "
            f"left; finish with `agentroute run {graph} --resume --batch {report.batch_id} …`",
            soft_wrap=True,  # the command whole, to copy
        )
        raise typer.Exit(128 + _SIGNALS.get(stopped, signal.SIGTERM))
    if stopped == "SIGPIPE":  # every query ended, but not every line reached the reader
        err_console.print(
            f"[yellow]standard output closed (--out -)[/] before every line was written; the memory holds every "
            f"task (batch {report.batch_id})",
            soft_wrap=True,
        )
        raise typer.Exit(128 + signal.SIGPIPE)
    if report.failed:
        err_console.print(
            f"[bold red]{report.failed} failed[/] (see --out or `agentroute memory show TASK_ID`)"
        )
        raise typer.Exit(EXIT_FAILED)


def corpus_runtime(
    graph: str, corpus: Path, router: str, pool: str | None, budget_usd: float | None, memory: str | None,
    allow_new_agents: bool = False, **limits: Any,
) -> Any:  # fmt: skip
    """The qa graph built over ``corpus`` (BM25 retrieval feeds its executors), compiled, with its memory.

    ``graph`` must name the qa graph (``qa``, ``graphs/qa.py[:graph]`` or ``agentroute.graphs.qa:graph``):
    another graph has no corpus to take.
    """
    from agentroute.budget import make_budget

    budget = make_budget(budget_usd, **limits)  # a bad --budget-* is named before LangGraph loads
    from agentroute.cli.app import routed
    from agentroute.errors import ConfigurationError
    from agentroute.graphs.qa import build_qa_graph, load_corpus
    from agentroute.loading import load_graph
    from agentroute.memory import open_memory

    if load_graph(graph).name != "qa":
        raise ConfigurationError(f"--corpus works with the qa graph (got {graph!r})")
    spec = build_qa_graph(corpus=load_corpus(corpus))
    models, loaded = routed(spec, router, pool, allow_new_agents)
    store = open_memory(memory)
    compiled = spec.compile(
        pool=models, router=loaded, memory=store, budget=budget, allow_new_agents=True
    )  # routed() checked
    return compiled, store


_SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGPIPE": signal.SIGPIPE}


class _BadBatch(AgentrouteError):
    pass


def _batch_id(store: Any, batch: str | None, resume: bool, default: str | None) -> tuple[str, int]:
    """The batch to run and how many of its queries are finished: a named or default one with
    --resume (the latest run of this input without --resume when the default one does not exist);
    else a fresh one (with a hint when the default batch of this input already holds finished
    queries)."""
    from agentroute.batch import fresh_batch_id, latest_fresh_batch
    from agentroute.memory.batches import FINISHED, BatchQueue

    name = batch or default
    assert name is not None
    counts = BatchQueue(store, name).counts()
    if resume and not batch and not counts and (latest := latest_fresh_batch(store, name)):
        err_console.print(
            f"[yellow]note:[/] continuing batch {latest}, the latest run of this input (started without --resume)"
        )
        name, counts = latest, BatchQueue(store, latest).counts()
    finished = sum(counts.get(s, 0) for s in FINISHED)
    if resume:
        if batch and not default and not counts:
            raise _BadBatch(f"batch {batch!r} is not in the memory {store.url}; give --input to start it")
        return name, finished
    if batch:
        if counts:
            raise _BadBatch(f"batch {batch!r} already exists in the memory; pass --resume to continue it")
        return batch, 0
    if finished:
        err_console.print(
            f"[yellow]note:[/] {finished} of these queries are already done in batch {name}; "
            "this run does them again (pass --resume to skip them)"
        )
    return fresh_batch_id(name), 0


def _checkpointer_url(spec: str, store: Any) -> str:
    """A LangGraph checkpointer's connection string: ``postgresql://…`` (psycopg conninfo) or ``sqlite:///PATH``."""
    import sqlalchemy as sa

    expected = f"--checkpointer {spec!r}: expected `memory`, postgresql://… or sqlite:///PATH"
    try:
        url = store.engine.url if spec == "memory" else sa.make_url(spec)
    except sa.exc.ArgumentError:
        raise _BadBatch(expected) from None
    backend = url.get_backend_name()
    if backend == "postgresql":
        _require_saver("psycopg", "langgraph.checkpoint.postgres")
        return url.set(drivername="postgresql").render_as_string(hide_password=False)
    if backend == "sqlite" and url.database not in (None, "", ":memory:"):
        _require_saver("aiosqlite", "langgraph.checkpoint.sqlite")
        try:  # opened here first: aiosqlite's thread outlives a failed open and prints its own traceback
            sqlite3.connect(url.database).close()
        except sqlite3.Error as exc:
            raise _unreachable(f"sqlite:///{url.database}", exc) from None
        return f"sqlite:///{url.database}"
    raise _BadBatch(expected)


def _require_saver(*modules: str) -> None:
    """Refuse a checkpointer whose packages (the ``checkpoint`` extra) are missing, before any query runs."""
    import importlib.util

    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(module, "checkpoint")


@contextlib.asynccontextmanager
async def _saver(url: str) -> AsyncIterator[Any]:
    """LangGraph's async Postgres or SQLite saver, set up; concurrent set-ups of several workers
    are serialised by an advisory lock (LangGraph's own ``setup()`` races on its migrations table).

    The lock is *polled* (``pg_try_advisory_lock``), never waited for inside a statement: LangGraph's
    migrations run ``CREATE INDEX CONCURRENTLY``, which waits for every open statement to end — a
    worker blocked in ``pg_advisory_lock`` would never end, and PostgreSQL does not see that deadlock.
    """
    if url.startswith("postgresql"):
        import psycopg
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        # a pool that checks its connections: after a server restart the checkpoints reconnect (one
        # connection, as from_conn_string holds, failed every later task of the batch)
        connections = AsyncConnectionPool(
            url, kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
            check=AsyncConnectionPool.check_connection, open=False,
        )  # fmt: skip
        async with connections:
            saver = AsyncPostgresSaver(connections)  # type: ignore[arg-type]
            try:
                lock_connection = await psycopg.AsyncConnection.connect(url, autocommit=True)
            except (
                psycopg.OperationalError
            ) as exc:  # refused, unreachable, a wrong password: one line, no traceback
                raise _unreachable(url, exc) from None
            async with lock_connection as lock:
                while not (
                    await (await lock.execute("SELECT pg_try_advisory_lock(%s)", (_SAVER_LOCK,))).fetchone()
                )[0]:  # type: ignore[index]
                    await asyncio.sleep(0.05)
                try:
                    await saver.setup()
                finally:
                    await lock.execute("SELECT pg_advisory_unlock(%s)", (_SAVER_LOCK,))
            yield saver
        return
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with contextlib.AsyncExitStack() as stack:
        try:
            sqlite_saver = await stack.enter_async_context(
                AsyncSqliteSaver.from_conn_string(url.removeprefix("sqlite:///"))
            )
            await sqlite_saver.setup()
        except sqlite3.Error as exc:  # a missing folder, a file that is no database
            raise _unreachable(url, exc) from None
        yield sqlite_saver


def _unreachable(url: str, exc: BaseException) -> _BadBatch:
    """``--checkpointer URL: cannot connect: REASON`` (password hidden, the driver's lines in one)."""
    import sqlalchemy as sa

    from agentroute.memory.engine import connect_failure

    shown = sa.make_url(url).render_as_string(hide_password=True)
    return _BadBatch(
        f"--checkpointer {shown}: cannot connect: {connect_failure(sa.exc.OperationalError(None, None, exc))}"
    )


_SAVER_LOCK = 0x61677370  # "agsp"


async def _run(
    runner: Any,
    items: list[dict[str, Any]],
    total: int | None,
    saver_url: str | None = None,
    lines: StdoutLines | None = None,
) -> Any:
    if saver_url is None:
        return await _run_batch(runner, items, total, lines)
    async with _saver(saver_url) as saver:
        compiled, dispatcher = runner.compiled, runner.compiled.dispatcher
        runner.compiled = compiled.spec.compile(
            pool=dispatcher.pool, router=dispatcher.router, memory=dispatcher.memory, budget=compiled.budget,
            checkpointer=saver, allow_new_agents=True,
        )  # fmt: skip
        return await _run_batch(runner, items, total, lines)


async def _run_batch(
    runner: Any, items: list[dict[str, Any]], total: int | None, lines: StdoutLines | None = None
) -> Any:
    loop = asyncio.get_running_loop()
    pool = runner.compiled.dispatcher.pool
    preload = asyncio.ensure_future(pool.preload())

    def stop(reason: str) -> None:
        runner.stop(reason)
        preload.cancel()  # a model still loading is not waited for: no query will run

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig.name)
    if lines is not None:  # its reader gone (`| head -1`): stop as on SIGTERM, the memory whole
        lines.on_closed = lambda: _call_soon(
            loop, stop, "SIGPIPE" if lines.failure is None else "--out - unwritable"
        )
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(
            *columns, console=console if lines is None else err_console, transient=False
        ) as progress:
            bar = progress.add_task(f"running {runner.compiled.name}", total=total)
            runner.on_done = lambda _: progress.advance(bar)
            try:
                await preload
            except asyncio.CancelledError:
                if runner.stopped is None or asyncio.current_task().cancelling():  # type: ignore[union-attr]
                    raise
            try:
                return await runner.run(items)
            finally:
                await pool.aclose()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if lines is not None:
            lines.on_closed = None


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Any, *args: Any) -> None:
    """``callback(*args)`` on ``loop`` from another thread; nothing once the loop is closed."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


def _count(n: int, one: str, many: str | None = None) -> str:
    """``1 line``, ``2 lines``, ``1 query``, ``0 queries``."""
    return f"{n} {one if n == 1 else many or one + 's'}"


def _summary(report: Any, url: str, skipped: int, metric: str = "em", console: Any = console) -> None:
    mine: dict[str, int] = {}
    for result in report.results:
        mine[result.status] = mine.get(result.status, 0) + 1
    total = sum(report.counts.values())
    # a line of its own: as the narrow table's title it wrapped mid-phrase ("batch" apart from its id)
    console.print(
        f"{_count(len(report.results), 'task')} ({_count(skipped, 'line')} skipped); batch {report.batch_id}: "
        f"{_count(total, 'query', 'queries')}",
        soft_wrap=True,
    )
    table = Table()
    table.add_column("status")
    table.add_column("run here", justify="right")
    table.add_column("whole batch", justify="right")
    for status in sorted(set(mine) | set(report.counts)):
        table.add_row(status, str(mine.get(status, 0)), str(report.counts.get(status, 0)))
    console.print(table)
    if report.reconciled.workers:
        console.print(
            f"reconciled {_count(len(report.reconciled.workers), 'dead worker')}: {_count(report.reconciled.tasks, 'task')} "
            f"marked interrupted, {_count(report.reconciled.items, 'query', 'queries')} to rerun"
        )
    scores = [r.score for r in report.results if getattr(r, "score", None) is not None]
    if scores:
        console.print(
            f"scored {len(scores)} task(s) against their gold answers ({metric}): mean {sum(scores) / len(scores):.3f}"
        )
    # a rerun query's cost holds its interrupted earlier tasks' (docs/batches.md, Cost): counted once
    ended = sum(r.cost_usd for r in report.results if r.status != "interrupted")
    cut = sum(r.cost_usd for r in report.results if r.status == "interrupted")
    later = f" (+${cut:.6f} in the interrupted ones, counted when they are rerun)" if cut else ""
    console.print(f"cost of the queries ended here ${ended:.6f}{later}; memory: {url}")


def _run_web(ctx: typer.Context, **options: Any) -> None:
    try:
        from agentroute.cli.web_cmd import run_web
    except ImportError as exc:
        raise fail(f"`agentroute run web` is not available in this version ({exc})", EXIT_BAD_INPUT) from None
    given = {  # the options this command line set (not their defaults): web takes some, refuses others
        name: value
        for name, value in ctx.params.items()
        if name != "graph"
        and (source := ctx.get_parameter_source(name)) is not None
        and source.name != "DEFAULT"
    }
    raise typer.Exit(run_web(list(ctx.args), given=given, **options))

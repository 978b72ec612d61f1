"""``agentroute eval``: every router side by side on a logged-outcome dataset's test split."""

from __future__ import annotations

import json
import re
import sys
import warnings
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from agentroute.cli.errors import EXIT_BAD_INPUT, error_text, report
from agentroute.cli.train_cmd import check_out_dir
from agentroute.errors import AgentrouteError

if TYPE_CHECKING:
    from agentroute.eval.datasets import RoutingDataset
    from agentroute.eval.results import EvalResult

DEFAULT_ROUTERS = "random,cheapest,strongest,cascade"


def eval_command(
    dataset: str,
    routers: str = DEFAULT_ROUTERS,
    out: Path | None = None,
    json_output: bool = False,
    seed: int = 0,
    output_tokens: int | None = None,
    explore: bool = False,
    boot: int = 500,
    peers: bool = True,
    interval: str = "basic",
    limit: int | None = None,
    sample: float | None = None,
) -> None:
    """``agentroute eval --dataset …`` (its options are declared in :mod:`agentroute.cli.app`): fit
    each router on train, sweep its cost–quality knob on test, and compare them.

    Routers are evaluated in serving mode (no exploration draws); --explore adds an exploring
    router's explore-mode sweep as its own row. Prints a table (AIQ with the 90% paired-bootstrap
    interval of its gain over the zero router and over the best simple reference, max accuracy,
    cost to match the best single model, accuracy at its cost) and writes results.json,
    results.csv and curves.png into --out.
    """
    from agentroute.errors import ConfigurationError, UnknownNameError
    from agentroute.eval.datasets import load_dataset
    from agentroute.eval.harness import (
        OWN_ROUTERS,
        check_router_params,
        evaluate,
        make_eval_router,
        parse_router_spec,
        saved_router_dir,
        split_router_spec,
    )
    from agentroute.outcomes import column_agent
    from agentroute.routers.base import Router, check_pool, get_router_class
    from agentroute.training.provenance import TrainedOnTestWarning, UncheckedRecordWarning
    from agentroute.types import Agent

    console = Console()
    err = Console(stderr=True)
    names = [r.strip() for r in routers.split(",") if r.strip()]
    if not names:
        err.print("[bold red]error:[/] --routers is empty")
        raise typer.Exit(EXIT_BAD_INPUT)
    options = {"output_tokens": output_tokens} if output_tokens is not None else {}
    try:
        if out is not None:
            check_out_dir(out)
        trained = [n for n in names if saved_router_dir(n) is not None]  # saved by `agentroute train`
        for name in names:  # unknown router names and parameters fail before the dataset is read
            if name not in trained:
                if (path := Path(split_router_spec(name)[0])).is_file():  # logs.csv for a saved router
                    from agentroute.loading import check_not_other_file  # (LangGraph: only then)

                    check_not_other_file(path)
                spec, params = parse_router_spec(name)
                try:
                    get_router_class(spec)
                except UnknownNameError as exc:
                    raise ConfigurationError(f"{exc}; {OWN_ROUTERS}") from None
                check_router_params(spec, params, where=f"router spec {name!r}")
        data = load_dataset(dataset, seed=seed, limit=limit, sample=sample, **options)
        if "models_dropped" in data.notes:
            err.print(f"[yellow]note:[/] {escape(data.notes['models_dropped'])}")
        for name in names:  # fixed:model=ID names one of the dataset's models
            if name not in trained and parse_router_spec(name)[0] == "fixed":
                try:
                    make_eval_router(name)[1].check_agents(
                        [Agent(model=m) for m in data.train.models], "the dataset"
                    )
                except ConfigurationError as exc:
                    raise ConfigurationError(f"router spec {name!r}: {exc}") from None
        for name in trained:  # a trained router must know the dataset's models (or be inductive)
            router = Router.load(split_router_spec(name)[0])
            for note in check_pool(
                router, [column_agent(m) for m in data.train.models], source=name, among="the dataset"
            ):
                err.print(f"[yellow]warning:[/] {escape(note)}")
        _show_trained_on_test(data, names, seed, err)  # said before the routers run
        with warnings.catch_warnings():  # evaluate warns of the same, for Python callers
            warnings.simplefilter("ignore", TrainedOnTestWarning)
            warnings.simplefilter("ignore", UncheckedRecordWarning)
            result = evaluate(
                data, names, seed=seed, progress=sys.stderr.isatty(), explore=explore,  # bars on stderr: --json too
                peers=peers, n_boot=boot, interval=interval,
            )  # fmt: skip
    except AgentrouteError as exc:
        raise typer.Exit(report(exc, err)) from None
    out = out or Path("runs") / f"eval-{_slug(data.name)}-{datetime.now():%Y%m%d-%H%M%S}"
    try:
        try:
            paths = result.write(out, plot=True)  # results.json, results.csv and curves.png: one run's
        except ImportError as exc:  # matplotlib is an optional extra
            err.print(f"[yellow]no plot:[/] {escape(error_text(exc))}", soft_wrap=True)
            paths = result.write(out)
    except OSError as exc:
        err.print(
            f"[bold red]error:[/] {escape(f'--out {out}: cannot write the results there ({exc.strerror or exc})')}"
        )
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if json_output:
        typer.echo(json.dumps(json.loads(result.to_json())))
        return
    console.print(_header(result))
    print_table(console, result)
    console.print(
        escape(f"wrote {', '.join(str(p) for p in paths.values())}"), soft_wrap=True
    )  # paths whole, to copy


def _show_trained_on_test(data: RoutingDataset, names: list[str], seed: int, err: Console) -> None:
    """The warnings of :func:`~agentroute.eval.harness.check_trained_on_test` (the rule ``evaluate``
    applies) on stderr: one for each saved router trained on test queries, one note for those
    saved without a record."""
    from agentroute.eval.harness import check_trained_on_test

    check = check_trained_on_test(data, names, seed=seed)
    for line in check.warnings:
        err.print(f"[yellow]warning:[/] {escape(line)}", soft_wrap=True)
    if check.note is not None:
        err.print(f"note: {escape(check.note)}", soft_wrap=True)


def _header(result: EvalResult) -> str:
    best, notes = result.best_single, result.notes
    dropped = (  # an outcomes file drops rows (no outcome) and test queries (not every agent's): say which
        f"{notes['dropped_rows_without_outcome']} rows without an outcome and "
        f"{notes['test_queries_dropped_incomplete']} incomplete test queries dropped"
        if "dropped_rows_without_outcome" in notes
        else f"{result.dropped_rows} incomplete rows dropped {result.dropped_by_split or ''}"
    )
    lines = [
        f"[bold]{escape(result.dataset)}[/]: {result.n_train} train / {result.n_test} test queries, {dropped}",
        f"router costs: {result.cost_estimate}",
        f"best single: {best.model} accuracy {best.accuracy:.3f} at ${best.cost:.6f}/query; "
        f"oracle {result.oracle.accuracy:.3f} at ${result.oracle.cost:.6f}; zero-router AIQ {result.zero_router_aiq:.3f}",
        "serving mode; AIQ anchored at the cheapest model each router uses; Δ: AIQ gain, "
        f"{100 * result.boot.get('level', 0.9):.0f}% paired-bootstrap {result.boot.get('interval', 'basic')} interval "
        f"({result.boot.get('n_boot', 0)} resamples)"
        + (f"; best reference: {result.reference}" if result.reference else ""),
    ]
    if "few_test_queries" in notes:
        lines.append(f"[yellow]warning:[/] {escape(notes['few_test_queries'])}")
    if "test_queries_seen_in_train" in notes:
        lines.append(f"[yellow]warning:[/] {escape(notes['test_queries_seen_in_train'])}")
    if "test_queries_incomplete" in notes:
        lines.append(f"note: {escape(notes['test_queries_incomplete'])}")
    if "one_cost" in notes:
        lines.append(f"[yellow]warning:[/] {escape(notes['one_cost'])}")
    if "agent_spellings" in notes:
        lines.append(f"[yellow]warning:[/] {escape(notes['agent_spellings'])}")
    if "apgr" in notes:
        lines.append(f"[yellow]warning:[/] {escape(notes['apgr'])}")
    if notes.get("repeated_rows_averaged"):
        lines.append(
            f"{notes['repeated_rows_averaged']} repeated (query, agent) rows averaged into one outcome each"
        )
    if notes.get("scores", "as given") != "as given":
        lines.append(f"scores {notes['scores']}")
    if "tokenizer" in result.notes:
        lines.append(
            f"dataset costs estimated with tokenizer {result.notes['tokenizer']} and "
            f"{result.notes.get('output_tokens_assumed')} output tokens per call"
        )
    return "\n".join(lines)


def _table(result: EvalResult) -> Table:
    """The results table (the error column only when a router failed); :func:`print_table` prints it."""
    two = any(r.apgr is not None for r in result.routers)
    errors = any(r.error for r in result.routers)
    table = Table(title="test split", title_justify="left")
    table.add_column("router", justify="left", no_wrap=True)
    for col in (
        "AIQ",
        "Δ vs zero",
        "Δ vs best ref",
        "max acc",
        "cost to\nmatch best",
        "acc at\nbest cost",
        "points",
    ):
        table.add_column(col, justify="right", no_wrap=True)
    if two:
        for col in ("APGR", "CPT50", "CPT80"):
            table.add_column(col, justify="right", no_wrap=True)
    table.add_column("fit s", justify="right", no_wrap=True)
    if errors:
        table.add_column("error", style="red", overflow="fold")
    for r in result.routers:
        row = [
            r.name,
            _f(r.aiq),
            _ci(r.vs_zero),
            _ci(r.vs_reference),
            _f(r.max_accuracy),
            "—" if r.error else ("never" if r.cost_to_match_best is None else f"${r.cost_to_match_best:.6f}"),
            _f(r.accuracy_at_best_cost),
            str(len(r.curve)),
        ]
        if two:
            row += [_f(r.apgr), _pct(r.cpt50), _pct(r.cpt80)]
        row += [_f(r.fit_s, 2)] + ([r.error or ""] if errors else [])
        table.add_row(*(escape(cell) for cell in row[:1]), *row[1:])
    return table


def print_table(console: Console, result: EvalResult) -> None:
    """The results table within the console's width (:func:`print_folded`)."""
    print_folded(console, _table(result))


def print_folded(console: Console, table: Table) -> None:
    """Print ``table`` within the console's width (a terminal's, ``COLUMNS``, 80 for a pipe): when it
    is wider, its columns are folded into several tables, each repeating the first column (the
    router's), so that no line wraps and no figure is cut to "…". Its no_wrap columns stay whole; a
    part that cannot fit (one very long router name) is printed at the least width it needs."""
    key, rest = table.columns[0], table.columns[1:]
    groups: list[list[Column]] = [[]]
    for column in rest:
        if groups[-1] and _least_width(console, _part(table, [key, *groups[-1], column])) > console.width:
            groups.append([])
        groups[-1].append(column)
    if len(groups) == 1:
        return _print_at_least(console, table)
    for i, group in enumerate(groups, 1):
        _print_at_least(console, _part(table, [key, *group], f" ({i}/{len(groups)})"))


def _least_width(console: Console, table: Table) -> int:
    """The width ``table`` needs with its no_wrap columns whole and the others wrapped at their least."""
    wide = console.options.update_width(10_000)
    slack = 0
    for column in (
        c for c in table.columns if not c.no_wrap
    ):  # (rich measures a no_wrap cell's least as its longest word)
        alone = _part(table, [column])
        alone.box, alone.padding = None, (0, 0)
        least, most = console.measure(alone, options=wide)
        slack += most - least
    return console.measure(table, options=wide).maximum - slack


def _print_at_least(console: Console, table: Table) -> None:
    """``table`` in the console's width, or in the least it needs with its no_wrap columns whole."""
    _print_within(console, table, _least_width(console, table))


def _print_within(console: Console, table: Table, needed: int) -> None:
    """``table`` in the console's width, or in ``needed`` columns when that is wider (uncropped)."""
    width = console.width
    console.width = max(width, needed)
    try:
        console.print(table, crop=False)
    finally:
        console.width = width


def _part(table: Table, columns: list[Column], suffix: str = "") -> Table:
    """A table of ``table``'s ``columns`` (cells, styles and rows as there), titled with ``suffix``."""
    title = f"{table.title}{suffix}" if isinstance(table.title, str) else table.title
    part = Table(title=title, title_justify=table.title_justify, box=table.box, show_lines=table.show_lines)
    for c in columns:
        part.add_column(
            c.header, justify=c.justify, style=c.style, header_style=c.header_style, overflow=c.overflow,
            no_wrap=c.no_wrap, min_width=c.min_width, max_width=c.max_width,
        )  # fmt: skip
    cells = [list(c.cells) for c in columns]
    for i, row in enumerate(table.rows):
        part.add_row(*(column[i] for column in cells), style=row.style, end_section=row.end_section)
    return part


def print_whole(console: Console, table: Table) -> None:
    """Print ``table`` at its natural width when the console is narrower (a terminal of 80 columns,
    or a pipe or file, which rich takes as 80): a terminal then wraps its lines, but no router name
    or figure is cut to "…" — as they were, leaving an eval's table without its numbers."""
    _print_within(
        console, table, console.measure(table, options=console.options.update_width(10_000)).maximum
    )


def _f(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _ci(value: list[float] | None) -> str:
    """``+0.033 [+0.024, +0.042]``, bold when the interval excludes 0."""
    if not value:
        return "—"
    d, lo, hi = value
    text = f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]"
    return f"[bold]{text}[/]" if lo > 0 or hi < 0 else text


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")

"""``agentroute run web``: MiniWoB++ episodes in headless Chromium, every action routed.

``run_web(args, router=, pool=, budget_usd=, memory=, concurrency=)`` parses its own options
from ``args`` and returns the exit code (0 done, 1 run failure, 2 bad input)::

    agentroute run web --tasks click-test,click-button,enter-text --episodes 5 --router cascade

It shows a progress bar, then one table row per task: success rate, mean reward, mean cost,
mean steps and the agent mix. Everything goes to the memory (``--memory URL``); ``--out FILE``
also writes one JSON line per finished episode as it finishes (``--out -``: to standard output,
the rest to standard error; a reader that closes it stops the run as SIGTERM does, exit 141). The episodes are one *batch*
(``web-<hash of router, pool, --max-steps, budgets and --miniwob-url>``, or ``--batch ID``): ``--resume`` plays
only those of ``--tasks`` × seeds that the memory does not hold finished in that batch. Ctrl-C or
SIGTERM stop it (130 / 143) with the finished episodes kept. ``--input`` and the other options of
``run`` that mean nothing for web pages are refused (exit 2).
Also runnable as ``python -m agentroute.cli.web_cmd ...`` (with ``--router``, ``--pool``,
``--budget-usd``, ``--memory``, ``--concurrency``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import shlex
import signal
import statistics
import sys
import time
from collections import Counter
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from agentroute.cli import stopped_exit_code
from agentroute.cli.app import number
from agentroute.cli.errors import check_out, error_text, print_error
from agentroute.errors import AgentrouteError, ConfigurationError
from agentroute.out_path import StdoutLines, is_stdout
from agentroute.training.stopping import exit_stopped, stop_word

DEFAULT_TASKS = "click-test,click-button,enter-text"


def web_parser(prog: str = "agentroute run web") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run MiniWoB++ episodes with every browser action routed.",
        epilog="--router, --pool, --budget-usd, --memory and --concurrency are the options of `agentroute run`; "
        "its --input, --metric, --checkpointer, --corpus, --grace-s, --lease-s and --allow-new-agents are refused.",
    )
    p.add_argument(
        "--tasks",
        default=DEFAULT_TASKS,
        help=f"comma-separated MiniWoB task names (default: {DEFAULT_TASKS})",
    )
    p.add_argument("--episodes", type=int, default=5, help="episodes per task (seeds SEED … SEED+N-1)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--max-steps", type=int, default=8, help="act steps per episode")
    # counts parsed as numbers: make_budget refuses one that is not whole in one line naming the option
    p.add_argument(
        "--budget-calls", type=number, default=None, metavar="N", help="hard per-episode limit on calls"
    )
    p.add_argument("--budget-seconds", type=float, default=None, help="hard per-episode deadline in seconds")
    p.add_argument(
        "--budget-large-calls",
        type=number,
        default=None,
        metavar="N",
        help="hard per-episode limit on large-tier calls",
    )
    p.add_argument(
        "--page-load-timeout",
        type=float,
        default=None,
        metavar="S",
        help="seconds a task page may take to load before its episode fails "
        "(default: $AGENTROUTE_WEB_PAGE_LOAD_S, else 30)",
    )
    p.add_argument(
        "--miniwob-url",
        default=None,
        metavar="URL",
        help="base URL of a MiniWoB++ server of your own, whose <URL><task>.html are the task pages "
        "(e.g. http://127.0.0.1:8080/miniwob/; default: the pages the miniwob package ships)",
    )
    p.add_argument("--headed", action="store_true", help="show the browser window (needs a display)")
    p.add_argument("--screenshots", default=None, metavar="DIR", help="save a PNG after each step here")
    p.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help="also write one JSON line per finished episode here, as it finishes (appended with --resume); "
        "- for standard output (the rest then goes to standard error; ./- is a file)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="play only the episodes the memory does not hold finished in this batch (after a Ctrl-C, a crash)",
    )
    p.add_argument(
        "--batch",
        default=None,
        metavar="ID",
        help="batch id (default: web-<hash of --router, --pool, --max-steps, the budgets and --miniwob-url>)",
    )
    return p


def _mix(counts: Counter[str]) -> str:
    total = sum(counts.values())
    return ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in counts.most_common()) if total else "-"


def summary_table(results: Sequence[Any], *, title: str) -> Table:
    """One row per task: episodes, success rate, mean reward, mean cost, mean steps, agent mix."""
    table = Table(title=title)
    for col, justify in (
        ("task", "left"),
        ("episodes", "right"),
        ("success", "right"),
        ("mean reward", "right"),
        ("mean cost $", "right"),
        ("steps", "right"),
        ("status", "left"),
        ("agent mix", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    by_task: dict[str, list[Any]] = {}
    for r in results:
        by_task.setdefault(r.task, []).append(r)
    for task, rs in [*by_task.items(), ("all", list(results))]:
        agents: Counter[str] = Counter()
        for r in rs:
            agents.update(r.agents)
        statuses = Counter(r.status for r in rs)
        table.add_row(
            task,
            str(len(rs)),
            f"{100 * sum(r.success for r in rs) / len(rs):.0f}%",
            f"{statistics.fmean(r.reward for r in rs):+.3f}",
            f"{statistics.fmean(r.cost_usd for r in rs):.2e}",
            f"{statistics.fmean(r.steps for r in rs):.1f}",
            ", ".join(f"{k} {v}" for k, v in statuses.most_common()),
            _mix(agents),
            end_section=task == list(by_task)[-1],
        )
    return table


#: Options of ``agentroute run`` that mean nothing for web episodes: refused (exit 2), never dropped.
REFUSED = {
    "input": "--input has no meaning for `run web`: its episodes are the --tasks × --episodes seeds "
    "(from --seed), not queries from a JSONL file; drop --input",
    "checkpointer": "--checkpointer has no meaning for `run web`: an episode holds a live browser "
    "and is not checkpointed (rerun unfinished episodes with --resume); drop it",
    "metric": "--metric has no meaning for `run web`: MiniWoB scores every episode itself (its reward); drop it",
    "corpus": "--corpus has no meaning for `run web` (it is the qa graph's passages); drop it",
    "grace_s": "--grace-s has no meaning for `run web`: Ctrl-C or SIGTERM interrupt the episodes in flight "
    "at once (rerun them with --resume); drop it",
    "lease_s": "--lease-s has no meaning for `run web`: its batch runs in one process; drop it",
    "allow_new_agents": "--allow-new-agents is not supported by `run web`: serve a router trained on "
    "the web pool's agents; drop it",
}

#: The statuses of an episode that --resume does not play again (failed and interrupted ones it does).
FINISHED = ("done", "budget_exhausted")


def default_batch(
    router: str,
    pool: str | None,
    max_steps: int,
    budget: dict[str, Any],
    miniwob_url: str | None = None,
) -> str:
    """``web-<8 hex>`` of what makes two runs' episodes alike, so that ``--resume`` never counts an
    episode played under other conditions as done: the router and the pool (a saved folder or
    file by its full path), the step limit, the per-episode budgets and the task pages' server
    (``--miniwob-url``; hashed only when given, so that runs on the shipped pages keep the ids of
    earlier versions). Not --tasks, --episodes or --seed: an episode is its (task, seed) in the
    batch, and a resumed run may ask for more of them."""
    what: dict[str, Any] = {
        "router": _where(router),
        "pool": _where(pool),
        "max_steps": max_steps,
        "budget": budget,
    }
    if miniwob_url is not None:
        what["miniwob_url"] = miniwob_url
    key = json.dumps(what, sort_keys=True)
    return "web-" + hashlib.sha256(key.encode()).hexdigest()[:8]


def _where(spec: str | None) -> str | None:
    """``spec`` as the full path of the file or folder it names (``./r`` from two folders names
    two routers), else as given (a router name, no pool)."""
    return str(Path(spec).resolve()) if spec and Path(spec).exists() else spec


def _agents(steps: Sequence[Any]) -> dict[str, int]:
    counts: Counter[str] = Counter(
        s.agent.model if s.agent.strategy == "direct" else f"{s.agent.model}:{s.agent.strategy}"
        for s in steps
    )
    return dict(counts)


def episode_line(result: Any, *, batch: str, router: str) -> dict[str, Any]:
    """The ``--out`` line of an episode played now."""
    from agentroute.batch import out_usd

    return {
        "batch": batch,
        "task": result.task,
        "seed": result.seed,
        "task_id": result.task_id,
        "status": result.status,
        "reward": result.reward,
        "success": result.success,
        "steps": result.steps,
        "cost_usd": out_usd(result.cost_usd),
        "router": router,
        "agents": dict(result.agents),
        "actions": list(result.actions),
        "failed_steps": result.failed_steps,
        "seconds": round(result.seconds, 3),
        "error": result.error,
    }


def memory_line(trajectory: Any, *, batch: str) -> dict[str, Any]:
    """The ``--out`` line of an episode finished by an earlier run, from the memory."""
    task, meta = trajectory.task, trajectory.task.metadata or {}
    from agentroute.batch import out_usd

    return {
        "batch": batch,
        "task": meta.get("task"),
        "seed": meta.get("seed"),
        "task_id": task.id,
        "status": task.status,
        "reward": meta.get("reward", task.score),
        "success": meta.get("success"),
        "steps": meta.get("steps", len(trajectory.steps)),
        "cost_usd": out_usd(task.cost_usd),
        "router": meta.get("router"),
        "agents": _agents(trajectory.steps),
        "actions": task.answer.split("; ") if task.answer else [],
        "failed_steps": sum(s.status != "ok" for s in trajectory.steps),
        "seconds": None,
        "error": meta.get("error"),
    }


class OutFile:
    """``--out``: one JSON line per finished episode, each in one ``write`` on an ``O_APPEND`` file,
    so a crash or Ctrl-C leaves whole lines for every episode finished before it. Truncated at
    the start of a run, appended to with ``--resume``. With ``lines`` (``--out -``), ``path`` is
    its relay (:meth:`StdoutLines.relay`, copied to standard output off the event loop, so a
    stalled reader never holds the episodes): a new file each run (with ``--resume``, the earlier
    episodes' lines come first)."""

    def __init__(self, path: Path, *, resume: bool, lines: StdoutLines | None = None):
        self.path, self.lines = path, lines
        self.fd: int | None = None
        self.written = 0
        """The lines this run wrote: its episodes' and, with ``--resume``, those of episodes finished earlier that the file lacked."""
        check_out(path)  # its missing folders (mkdir -p), as every --out
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (0 if resume else os.O_TRUNC)
        try:
            self.fd = os.open(path, flags, 0o644)
        except OSError as exc:
            raise ConfigurationError(f"--out {path}: {exc.strerror or exc}") from None

    def task_ids(self) -> set[str]:
        """The task ids the file holds lines for (a torn or foreign line is skipped)."""
        found: set[str] = set()
        with self.path.open("rb") as fh:
            for raw in fh:
                with contextlib.suppress(ValueError, AttributeError):
                    task_id = json.loads(raw).get("task_id")
                    if isinstance(task_id, str):
                        found.add(task_id)
        return found

    def write(self, line: dict[str, Any]) -> None:
        if self.fd is not None:
            os.write(self.fd, (json.dumps(line, ensure_ascii=False, default=str) + "\n").encode())
            self.written += 1

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def finished_episodes(store: Any, batch: str) -> dict[tuple[str, int], Any]:
    """``(task, seed)`` → the trajectory of each episode of ``batch`` the memory holds finished."""
    from agentroute.web.agent import GRAPH

    found: dict[tuple[str, int], Any] = {}
    for trajectory in store.trajectories(graph=GRAPH, status=list(FINISHED)):
        meta = trajectory.task.metadata or {}
        if (
            meta.get("batch") == batch
            and isinstance(meta.get("task"), str)
            and isinstance(meta.get("seed"), int)
        ):
            found[(meta["task"], meta["seed"])] = trajectory
    return found


def interrupt_dead(store: Any, batch: str) -> int:
    """Close as ``interrupted`` the episodes of ``batch`` left ``running`` by a process that is gone
    (``kill -9``, a crash, a power cut): with their steps' cost, so the memory no longer counts them
    as under way. Gone: on this host, its pid has ended (or the machine rebooted since); on another
    host sharing a PostgreSQL memory, its lease was released at two looks
    :data:`~agentroute.memory.claims.LEASE_GRACE_S` apart (so this call may wait that long). Episodes
    of live processes, and of other hosts that hold no lease (a shared SQLite file, an older
    agentroute), are left alone — the memory's own rule
    (:meth:`~agentroute.memory.SQLMemory.reconcile_running`)."""
    from agentroute.web.agent import GRAPH

    reconcile = getattr(store, "reconcile_running", None)
    if reconcile is None:  # a memory of the user's own that cannot tell
        return 0
    ids = [
        t.task.id
        for t in store.trajectories(graph=GRAPH, status=["running"])
        if (t.task.metadata or {}).get("batch") == batch
    ]
    return len(reconcile(ids)) if ids else 0


class Tally:
    """What a stopped run reports: the episodes of this run finished so far, and how to go on."""

    def __init__(self) -> None:
        self.results: list[Any] = []
        self.total = 0
        self.batch = ""
        self.title = ""


def resume_hint() -> str:
    """The command that finishes the batch: this one with ``--resume``."""
    argv = sys.argv[1:]
    if argv[:2] != ["run", "web"]:
        return "the same command with --resume"
    if "--resume" not in argv:
        argv = [*argv, "--resume"]
    return "`" + shlex.join(["agentroute", *argv]) + "`"


def _width(stream: Any) -> int | None:
    """Rich's width for ``stream``: a terminal's own (or $COLUMNS); 200 for a pipe or a file, where
    rich took 80 and cut the task names and the agent mix of the table to `click-…`, `dom-sk…`."""
    if os.environ.get("COLUMNS") or (hasattr(stream, "isatty") and stream.isatty()):
        return None
    return 200


def run_web(
    args: list[str],
    *,
    router: str,
    pool: str | None,
    budget_usd: float | None,
    memory: str | None,
    concurrency: int,
    given: Mapping[str, Any] | None = None,
    console: Console | None = None,
    prog: str = "agentroute run web",
) -> int:
    """Run the web agent on MiniWoB++ tasks; returns the exit code (0 ok, 1 failure, 2 bad input,
    128 + the signal when Ctrl-C or SIGTERM stopped it).

    ``given``: the options of the enclosing ``agentroute run`` that its command line set (typer
    parses ``--out``, ``--resume``, ``--input`` … itself, wherever they stand, so they never reach
    ``args``); ``--out``, ``--resume`` and ``--batch`` apply, the batch-only ones are refused.
    ``prog``: the program a bad option's error names."""
    err = Console(stderr=True, width=_width(sys.stderr))
    try:
        opts = web_parser(prog).parse_args(args)
    except SystemExit as exc:  # argparse printed the problem (or --help)
        return int(exc.code or 0)
    outer = dict(given or {})
    refused = [message for name, message in REFUSED.items() if name in outer]
    if refused:
        for message in refused:
            print_error(message, err)
        return 2
    opts.out = opts.out or outer.get("out")
    to_stdout = opts.out is not None and is_stdout(opts.out)  # as typed: ./- is a file
    console = err if to_stdout else console or Console(width=_width(sys.stdout))
    opts.resume = opts.resume or bool(outer.get("resume"))
    opts.batch = opts.batch or outer.get("batch")
    try:
        from agentroute.budget import make_budget
        from agentroute.checks import check_count
        from agentroute.web.env import check_miniwob_url, check_tasks, find_chromium

        # a task named twice played each of its seeds twice (two --out lines, two records of one episode)
        tasks = list(dict.fromkeys(t.strip() for t in opts.tasks.split(",") if t.strip()))
        if not tasks:
            raise ConfigurationError("--tasks names no task")
        for name, value in (
            ("--episodes", opts.episodes),
            ("--max-steps", opts.max_steps),
            ("--concurrency", concurrency),
        ):
            check_count(value, name)
        if opts.seed < 0:  # MiniWoB seeds its pages with it: a negative one failed every episode
            raise ConfigurationError(f"--seed must be ≥ 0 (got {opts.seed})")
        limits = {
            "--budget-usd": budget_usd,
            "--budget-calls": opts.budget_calls,
            "--budget-seconds": opts.budget_seconds,
            "--budget-large-calls": opts.budget_large_calls,
        }
        budget = make_budget(
            budget_usd,
            calls=opts.budget_calls,
            seconds=opts.budget_seconds,
            large_calls=opts.budget_large_calls,
        )  # Budget's rule, as for ask and run; the web agent's own: no episode can start with 0 calls or seconds
        for name in ("--budget-calls", "--budget-seconds"):
            if limits[name] == 0:
                raise ConfigurationError(f"{name} must be > 0 (got 0): no episode could take a step")
        if opts.page_load_timeout is not None and not 0 < opts.page_load_timeout < math.inf:  # nan too
            raise ConfigurationError(
                f"--page-load-timeout must be a number of seconds > 0 (got {opts.page_load_timeout})"
            )
        from agentroute.web.env import page_load_timeout

        page_load_timeout(opts.page_load_timeout)  # without the option, $AGENTROUTE_WEB_PAGE_LOAD_S
        if opts.miniwob_url is not None:
            opts.miniwob_url = check_miniwob_url(opts.miniwob_url, "--miniwob-url")
        if opts.out is not None:
            opts.out = Path(opts.out)
        if opts.out is not None and not to_stdout:
            check_out(opts.out, create=False)  # its folders once the run plays: a refused run leaves none
        check_tasks(tasks)
        find_chromium()
        if opts.headed and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise ConfigurationError(
                "--headed needs a display (DISPLAY is not set): drop --headed, or run under `xvfb-run`"
            )
        batch = opts.batch or default_batch(router, pool, opts.max_steps, limits, opts.miniwob_url)
    except AgentrouteError as exc:
        print_error(error_text(exc), err)
        return 2
    tally = Tally()
    with contextlib.ExitStack() as stack:
        try:
            lines = stack.enter_context(StdoutLines()) if to_stdout else None
        except AgentrouteError as exc:  # no standard output at all (`>&-`)
            print_error(error_text(exc), err)
            return 2
        try:
            with lines.relay() if lines is not None else contextlib.nullcontext() as relayed:
                if relayed is not None:  # the episodes' lines go there, a thread copies them to stdout
                    opts.out = relayed
                run = _run(
                    opts, tasks, budget, batch, router, pool, memory, concurrency, console, err, tally, lines
                )
                code = asyncio.run(_stoppable(run, err, tally, lines))
        except KeyboardInterrupt as stop:  # also a SIGTERM while the last lines wait for a stalled reader
            exit_stopped(stop, stop_word(stop))
    return code if lines is None else _lines_written(lines, code, batch, err)


def _lines_written(lines: StdoutLines, code: int, batch: str, err: Console) -> int:
    """The exit code of a run with ``--out -`` once its relay ended: standard output that could not
    be written (``> /dev/full``, during the run or for its last lines) is one error line and 1; a
    reader that left before the last lines, the run over, 141 (one left earlier stopped the run)."""
    if lines.failure is not None:
        print_error(
            f"--out -: cannot write standard output ({lines.failure}); the episodes finished are in the "
            f"memory (batch {batch}): rerun with --resume --out FILE to play the rest and write every line",
            err,
        )
        return 1
    if lines.closed and code in (0, 1):
        err.print(
            f"[yellow]standard output closed (--out -)[/] before every line was written; the memory holds "
            f"every episode (batch {escape(batch)})",
            soft_wrap=True,
        )
        return stopped_exit_code(signal.SIGPIPE)
    return code


async def _stoppable(
    run: Coroutine[Any, Any, int], err: Console, tally: Tally | None = None, lines: StdoutLines | None = None
) -> int:
    """``run`` until it ends or Ctrl-C / SIGTERM cancels it — its ``finally`` blocks close every
    browser (Python's default SIGTERM would leave Chromium and its temp folders behind), the
    episodes in flight end ``interrupted``: then 130 / 143, with what is left to resume. ``--out
    -`` whose reader closed standard output (``| head -1``) stops it the same way: 141."""
    from agentroute.web.env import note_stop_signal

    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(run)
    stopped: list[signal.Signals] = []

    def stop(signum: signal.Signals) -> None:
        stopped.append(signum)
        note_stop_signal()
        task.cancel()

    def closed() -> None:
        stopped.append(signal.SIGPIPE)
        task.cancel()

    def closed_by_relay() -> None:  # in the relay's thread
        with contextlib.suppress(RuntimeError):  # the loop is closed: the run is over
            loop.call_soon_threadsafe(closed)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop, signum)
    if lines is not None:
        lines.on_closed = closed_by_relay
    try:
        return await task
    except asyncio.CancelledError:
        if not stopped:
            raise
        # as `run` says it: the reader of --out - closed it (`| head -1`), no signal was sent
        how = "standard output closing (--out -)" if stopped[0] is signal.SIGPIPE else stopped[0].name
        if lines is not None and lines.failure is not None:  # > /dev/full: run_web says why, in one line
            if tally is not None and tally.results:
                err.print(
                    summary_table(tally.results, title=f"{tally.title} · stopped after {len(tally.results)}")
                )
            return stopped_exit_code(signal.SIGPIPE)
        if tally is None or not tally.total:
            err.print(
                f"[yellow]stopped by {how}[/]: the browsers are closed; episodes finished so far are in the memory",
                soft_wrap=True,  # one line (its resume command stays copyable), as print_error's
            )
            return stopped_exit_code(stopped[0])
        done = len(tally.results)
        if tally.results:
            err.print(summary_table(tally.results, title=f"{tally.title} · stopped after {done}"))
        err.print(
            f"[yellow]stopped by {how}[/]: {done} of {tally.total} episodes finished (in the memory, "
            f"batch {escape(tally.batch)}); the browsers are closed. {tally.total - done} left, played by "
            f"{escape(resume_hint())}",  # the user's arguments as typed: a `[` in one is no markup
            soft_wrap=True,
        )
        return stopped_exit_code(stopped[0])
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        if lines is not None:
            lines.on_closed = None


async def _run(
    opts: Any,
    tasks: list[str],
    budget: Any,
    batch: str,
    router: str,
    pool: str | None,
    memory: str | None,
    concurrency: int,
    console: Console,
    err: Console,
    tally: Tally,
    lines: StdoutLines | None = None,
) -> int:
    from agentroute.memory import open_memory
    from agentroute.web.agent import WebAgent
    from agentroute.web.env import BrowserCrashedError, PageLoadError, find_chromium

    try:
        store = open_memory(memory)
    except AgentrouteError as exc:
        print_error(error_text(exc), err)
        return 2
    out: OutFile | None = None
    try:
        episodes = [(t, opts.seed + i) for t in tasks for i in range(opts.episodes)]
        earlier: dict[tuple[str, int], Any] = {}
        engine = getattr(store, "engine", None)
        if (
            opts.resume
            and engine is not None
            and engine.url.get_backend_name() == "sqlite"
            and (engine.url.database in (None, "", ":memory:"))
        ):  # nothing outlives the run there: --resume would play everything, unsaid
            print_error(
                f"--resume needs a memory that outlives a run; --memory {store.url} is in memory and holds "
                "no earlier episode: give a file (sqlite:///web.db) or a server URL",
                err,
            )
            return 2
        if opts.resume:
            closed = await asyncio.to_thread(interrupt_dead, store, batch)
            if closed:
                console.print(
                    f"--resume: {closed} episode{'s' if closed != 1 else ''} left running by a process "
                    "that died marked interrupted"
                )
            earlier = await asyncio.to_thread(finished_episodes, store, batch)

        def open_out() -> OutFile | None:
            """--out, once the run is sure to play (a refused run leaves an earlier file as it was),
            with the lines of the episodes finished earlier that it lacks (or, new, all of them)."""
            if opts.out is None:
                return None
            opened = OutFile(opts.out, resume=opts.resume, lines=lines)
            if earlier:
                have = opened.task_ids()
                for key in episodes_asked:
                    if key in earlier and earlier[key].task.id not in have:
                        opened.write(memory_line(earlier[key], batch=batch))
            return opened

        episodes_asked = list(episodes)
        if opts.resume:
            skipped = sum(key in earlier for key in episodes)
            episodes = [key for key in episodes if key not in earlier]
            console.print(
                f"--resume: batch {batch}: {skipped} of {skipped + len(episodes)} episodes finished earlier"
                + (f"; {len(episodes)} to play" if episodes else "; nothing left to play"),
                markup=False,  # --batch as given
            )
            if not episodes:
                try:
                    out = open_out()
                except AgentrouteError as exc:
                    print_error(error_text(exc), err)
                    return 2
                return 0
        try:
            agent = WebAgent(
                router=router,
                pool=pool,
                memory=store,
                budget=budget,
                max_steps=opts.max_steps,
                headless=not opts.headed,
                screenshots=opts.screenshots,
                page_load_timeout_s=opts.page_load_timeout,
                miniwob_url=opts.miniwob_url,
            )
        except AgentrouteError as exc:
            print_error(error_text(exc), err)
            return 2
        name = escape(agent.policy.name)  # a saved router's folder as given: rich markup prints it
        title = f"MiniWoB++ · router {name}"
        tally.total, tally.batch, tally.title = len(episodes), batch, title
        started = time.perf_counter()
        try:
            try:  # the first episode's browser, before any episode: one that cannot start stops here
                first = agent.session(episodes[0][0], 0)
                await first.starting(first.open)  # Ctrl-C during its page load stops it at once
            except BrowserCrashedError as exc:
                if isinstance(exc.__cause__, PageLoadError):  # the browser is fine: the page is not
                    print_error(f"{str(exc).rstrip('.')}. No episode was played", err)
                    return 2
                print_error(
                    f"{str(exc).rstrip('.')}. No episode was played: check that this Chromium starts "
                    f"(`{find_chromium()[0]} --headless --no-sandbox --dump-dom about:blank`), or point "
                    "MINIWOB_CHROME_BINARY and MINIWOB_CHROMEDRIVER at a working pair",
                    err,
                )
                return 2
            try:
                out = open_out()
            except AgentrouteError as exc:
                print_error(error_text(exc), err)
                return 2
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            ) as progress:
                bar = progress.add_task(f"web · {name}", total=len(episodes))
                if agent.policy.models is None or any(m != "dom-skill" for m in agent.policy.models):
                    progress.update(bar, description=f"web · {name} · loading models")
                    await agent.preload()
                    progress.update(bar, description=f"web · {name}")

                def done(result: Any) -> None:
                    tally.results.append(result)
                    if out is not None:  # the memory holds the episode before its line is written
                        store.flush()
                        out.write(episode_line(result, batch=batch, router=agent.policy.name))
                    progress.advance(bar)
                    if result.error:
                        progress.console.print(
                            Text(f"{result.task} seed {result.seed}: {result.error}", style="yellow")
                        )

                # the batch (the memory records each task's process: --resume closes a dead one's)
                metadata = {"batch": batch}
                results = await agent.run_many(
                    episodes, concurrency=concurrency, on_done=done, metadata=metadata
                )
        finally:
            await agent.aclose()
        wall = time.perf_counter() - started
        console.print(
            summary_table(
                results, title=f"{title} · {len(results)} episode{'s' if len(results) != 1 else ''}"
            )
        )
        browser = [ms for r in results for ms in r.browser_ms]
        rate = 60 * len(results) / wall if wall > 0 else 0.0
        line = f"{rate:.1f} episodes/min"
        if browser:
            line += f"; browser step median {statistics.median(browser):.0f} ms"
        console.print(
            f"{line}; total cost ${sum(r.cost_usd for r in results):.6f}; memory: {store.url}", markup=False
        )
        if out is not None:
            console.print(  # the earlier episodes' lines it lacked too (--resume)
                f"{out.written} episode line{'s' if out.written != 1 else ''} written to "
                + ("standard output" if out.lines is not None else str(out.path)),
                markup=False,
            )
        return 0 if all(r.status != "failed" or r.error is None for r in results) else 1
    finally:
        if out is not None:
            out.close()
        store.close()


#: The runner without the ``agentroute`` command (docs/web_agent.md).
MODULE_PROG = "python -m agentroute.cli.web_cmd"


def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    """The options ``agentroute run`` parses for ``run web``, for the runner without it."""
    group = parser.add_argument_group("runtime options (those of `agentroute run`)")
    group.add_argument(
        "--router",
        default="cascade",
        help="web preset, registered router or saved router dir (default: cascade)",
    )
    group.add_argument(
        "--pool", default=None, metavar="FILE", help="pool YAML (default: the local SmolLM2 pool)"
    )
    group.add_argument("--budget-usd", type=float, default=None, help="hard per-episode budget in USD")
    group.add_argument("--memory", default=None, metavar="URL", help="SQLAlchemy URL of the memory")
    group.add_argument(
        "--concurrency", type=int, default=1, help="episodes at once, one browser each (default: 1)"
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m agentroute.cli.web_cmd``: the same options plus the runtime ones of ``run``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(argv):  # every option, under this program's name (was: `run web`'s help only)
        full = web_parser(MODULE_PROG)
        add_runtime_options(full)
        full.print_help()
        return 0
    outer = argparse.ArgumentParser(prog=MODULE_PROG, add_help=False)
    add_runtime_options(outer)
    known, rest = outer.parse_known_args(argv)
    return run_web(
        rest,
        router=known.router,
        pool=known.pool,
        budget_usd=known.budget_usd,
        memory=known.memory,
        concurrency=known.concurrency,
        prog=MODULE_PROG,
    )


if __name__ == "__main__":
    sys.exit(main())

"""``agentroute run web``: MiniWoB++ episodes in headless Chromium, every action routed.

``run_web(args, router=, pool=, budget_usd=, memory=, concurrency=)`` parses its own options
from ``args`` and returns the exit code (0 done, 1 run failure, 2 bad input)::

    agentroute run web --tasks click-test,click-button,enter-text --episodes 5 --router cascade

It shows a progress bar, then one table row per task: success rate, mean reward, mean cost,
mean steps and the agent mix. Everything goes to the memory (``--memory URL``).
Also runnable as ``python -m agentroute.cli.web_cmd ...`` (with ``--router``, ``--pool``,
``--budget-usd``, ``--memory``, ``--concurrency``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import time
from collections import Counter
from collections.abc import Coroutine, Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from agentroute.cli.errors import error_text, print_error
from agentroute.errors import AgentrouteError, ConfigurationError

DEFAULT_TASKS = "click-test,click-button,enter-text"


def web_parser(prog: str = "agentroute run web") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run MiniWoB++ episodes with every browser action routed.",
        epilog="--router, --pool, --budget-usd, --memory and --concurrency are the options of `agentroute run`.",
    )
    p.add_argument(
        "--tasks",
        default=DEFAULT_TASKS,
        help=f"comma-separated MiniWoB task names (default: {DEFAULT_TASKS})",
    )
    p.add_argument("--episodes", type=int, default=5, help="episodes per task (seeds SEED … SEED+N-1)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--max-steps", type=int, default=8, help="act steps per episode")
    p.add_argument("--budget-calls", type=int, default=None, help="hard per-episode limit on calls")
    p.add_argument("--budget-seconds", type=float, default=None, help="hard per-episode deadline in seconds")
    p.add_argument(
        "--budget-large-calls", type=int, default=None, help="hard per-episode limit on large-tier calls"
    )
    p.add_argument("--headed", action="store_true", help="show the browser window (needs a display)")
    p.add_argument("--screenshots", default=None, metavar="DIR", help="save a PNG after each step here")
    return p


def _positive(name: str, value: float | None, *, zero: bool = False) -> None:
    if value is not None and (value < 0 or (value == 0 and not zero)):
        raise ConfigurationError(f"{name} must be {'≥' if zero else '>'} 0 (got {value})")


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


def run_web(
    args: list[str],
    *,
    router: str,
    pool: str | None,
    budget_usd: float | None,
    memory: str | None,
    concurrency: int,
    console: Console | None = None,
) -> int:
    """Run the web agent on MiniWoB++ tasks; returns the exit code (0 ok, 1 failure, 2 bad input)."""
    console = console or Console()
    err = Console(stderr=True)
    try:
        opts = web_parser().parse_args(args)
    except SystemExit as exc:  # argparse printed the problem (or --help)
        return int(exc.code or 0)
    try:
        from agentroute.loading import make_budget
        from agentroute.web.env import check_tasks, find_chromium

        tasks = [t.strip() for t in opts.tasks.split(",") if t.strip()]
        if not tasks:
            raise ConfigurationError("--tasks names no task")
        if opts.episodes < 1 or opts.max_steps < 1 or concurrency < 1:
            raise ConfigurationError(
                f"--episodes, --max-steps and --concurrency must be ≥ 1 (got {opts.episodes}, {opts.max_steps}, {concurrency})"
            )
        if opts.seed < 0:  # MiniWoB seeds its pages with it: a negative one failed every episode
            raise ConfigurationError(f"--seed must be ≥ 0 (got {opts.seed})")
        for name, value in (
            ("--budget-usd", budget_usd),
            ("--budget-calls", opts.budget_calls),
            ("--budget-seconds", opts.budget_seconds),
            ("--budget-large-calls", opts.budget_large_calls),
        ):
            _positive(name, value, zero=name in ("--budget-usd", "--budget-large-calls"))
        check_tasks(tasks)
        find_chromium()
        if opts.headed and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise ConfigurationError("--headed needs a display (DISPLAY is not set): drop --headed, or run under `xvfb-run`")
        budget = make_budget(
            budget_usd,
            calls=opts.budget_calls,
            seconds=opts.budget_seconds,
            large_calls=opts.budget_large_calls,
        )
    except AgentrouteError as exc:
        print_error(error_text(exc), err)
        return 2
    return asyncio.run(_stoppable(_run(opts, tasks, budget, router, pool, memory, concurrency, console, err), err))


async def _stoppable(run: Coroutine[Any, Any, int], err: Console) -> int:
    """``run`` until it ends or SIGTERM cancels it — its ``finally`` blocks close every browser
    (Python's default SIGTERM would leave Chromium and its temp folders behind): then 143."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(run)
    stopped: list[bool] = []

    def stop() -> None:
        stopped.append(True)
        task.cancel()

    loop.add_signal_handler(signal.SIGTERM, stop)
    try:
        return await task
    except asyncio.CancelledError:
        if not stopped:
            raise
        err.print("[yellow]stopped by SIGTERM[/]: the browsers are closed; episodes finished so far are in the memory")
        return 128 + signal.SIGTERM
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def _run(
    opts: Any,
    tasks: list[str],
    budget: Any,
    router: str,
    pool: str | None,
    memory: str | None,
    concurrency: int,
    console: Console,
    err: Console,
) -> int:
    from agentroute.memory import open_memory
    from agentroute.web.agent import WebAgent

    try:
        store = open_memory(memory)
    except AgentrouteError as exc:
        print_error(error_text(exc), err)
        return 2
    try:
        try:
            agent = WebAgent(
                router=router,
                pool=pool,
                memory=store,
                budget=budget,
                max_steps=opts.max_steps,
                headless=not opts.headed,
                screenshots=opts.screenshots,
            )
        except AgentrouteError as exc:
            print_error(error_text(exc), err)
            return 2
        episodes = [(t, opts.seed + i) for t in tasks for i in range(opts.episodes)]
        started = time.perf_counter()
        try:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            ) as progress:
                bar = progress.add_task(f"web · {agent.policy.name}", total=len(episodes))
                if agent.policy.models is None or any(m != "dom-skill" for m in agent.policy.models):
                    progress.update(bar, description=f"web · {agent.policy.name} · loading models")
                    await agent.preload()
                    progress.update(bar, description=f"web · {agent.policy.name}")

                def done(result: Any) -> None:
                    progress.advance(bar)
                    if result.error:
                        progress.console.print(Text(f"{result.task} seed {result.seed}: {result.error}", style="yellow"))

                results = await agent.run_many(episodes, concurrency=concurrency, on_done=done)
        finally:
            await agent.aclose()
        wall = time.perf_counter() - started
        console.print(
            summary_table(results, title=f"MiniWoB++ · router {agent.policy.name} · {len(results)} episodes")
        )
        browser = [ms for r in results for ms in r.browser_ms]
        rate = 60 * len(results) / wall if wall > 0 else 0.0
        line = f"{rate:.1f} episodes/min"
        if browser:
            line += f"; browser step median {statistics.median(browser):.0f} ms"
        console.print(f"{line}; total cost ${sum(r.cost_usd for r in results):.6f}; memory: {store.url}")
        return 0 if all(r.status != "failed" or r.error is None for r in results) else 1
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m agentroute.cli.web_cmd``: the same options plus the runtime ones of ``run``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    outer = argparse.ArgumentParser(add_help=False)
    outer.add_argument("--router", default="cascade")
    outer.add_argument("--pool", default=None)
    outer.add_argument("--budget-usd", type=float, default=None)
    outer.add_argument("--memory", default=None)
    outer.add_argument("--concurrency", type=int, default=1)
    known, rest = outer.parse_known_args(argv)
    return run_web(
        rest,
        router=known.router,
        pool=known.pool,
        budget_usd=known.budget_usd,
        memory=known.memory,
        concurrency=known.concurrency,
    )


if __name__ == "__main__":
    sys.exit(main())

"""The overhead benchmarks' variants run and their statistics hold (issue 10's measurement tools).

``benchmarks/overhead_paired.py`` times every variant of the 3-role chain (real LangGraph, replay
backend) in one process, so two routed graphs are compiled there: the least routed step of
``overhead_floor.py`` must find the router's choice among its plans by key (decisions are interned
by value, so they name the first graph's agents). The bootstrap interval is a real resampling.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from overhead_paired import bootstrap_median, runners  # noqa: E402


def test_every_variant_runs_its_tasks_to_the_end_in_one_process() -> None:
    tasks = 3
    run = runners(tasks)

    async def all_variants() -> dict[str, list[object]]:
        return {name: await go() for name, go in run.items()}

    kept = asyncio.run(all_variants())
    for name, results in kept.items():
        assert len(results) == tasks, name
    for name in ("none", "none + call", "minimal", "routed"):  # each a routed graph of its own
        assert all(r.status == "done" and len(r.steps) == 3 for r in kept[name]), name  # type: ignore[attr-defined]
    assert [r.answer for r in kept["minimal"]] == [f"small {i}" for i in range(tasks)]  # type: ignore[attr-defined]


def test_the_bootstrap_interval_brackets_the_median_and_narrows_with_more_rounds() -> None:
    assert bootstrap_median([1.3] * 9) == (1.3, 1.3, 1.3)
    few = [1.2, 1.5, 1.3, 1.4, 1.35]
    mid, lo, hi = bootstrap_median(few)
    assert mid == statistics.median(few) and min(few) <= lo < mid < hi <= max(few)
    many = few * 8
    _, lo8, hi8 = bootstrap_median(many)
    assert hi8 - lo8 < hi - lo

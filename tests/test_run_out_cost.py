"""`agentroute run --out` writes costs without float noise, as `web --out` does (one rule,
``agentroute.batch.out_usd``): a query that continued an interrupted task costs 0.1 + 0.2 USD, written
``0.3``, not ``0.30000000000000004``; a run without a step still writes a float."""

from __future__ import annotations

import json

from agentroute.batch import ItemResult


def test_a_continued_querys_cost_is_written_without_float_noise() -> None:
    item = ItemResult("q1", "2+2?", "done", "t2", "4", task_cost_usd=0.2, continues={"t1": 0.1})
    line = json.dumps(item.line())
    assert '"cost_usd": 0.3,' in line, line
    assert '"task_cost_usd": 0.2,' in line


def test_a_run_without_a_step_costs_a_float_zero() -> None:
    line = ItemResult("q1", "2+2?", "failed", None, task_cost_usd=0).line()
    assert line["cost_usd"] == 0.0 and isinstance(line["cost_usd"], float)

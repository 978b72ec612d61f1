"""``agentroute train --from MEMORY`` on served traffic that one rule routed (``--router cheapest``:
every step went to the same model) warns that the router can only ever choose that agent, as
training on an outcomes file of one agent does (was: the warning came for ``--dataset`` only; the
memory's fit was silent and "saved" a router with nothing to route between)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from agentroute.eval.datasets import RoutingDataset
from agentroute.graph import AgentGraph
from agentroute.memory import SQLMemory
from agentroute.outcomes import OutcomeTable
from agentroute.routers.base import make_router

ROOT = Path(__file__).resolve().parents[1]


def test_training_from_a_memory_of_one_agent_warns(tmp_path: Path) -> None:
    n = 24
    table = OutcomeTable([f"q{i}" for i in range(n)], [f"question {i}" for i in range(n)], ["fast", "pro"],
                         np.array([[i % 2, 1.0] for i in range(n)], dtype=float), np.array([[0.001, 0.02]] * n))  # fmt: skip
    pool = RoutingDataset("two", table, table).replay_pool("train")
    url = f"sqlite:///{tmp_path / 'm.db'}"
    items = [{"query": q, "query_id": i} for q, i in zip(table.queries, table.query_ids, strict=True)]
    with SQLMemory(url) as memory:  # served by the cheapest rule: every step is fast's
        graph = AgentGraph("served").add_role("executor", prompt="answer")
        asyncio.run(graph.compile(pool=pool, router=make_router("cheapest"), memory=memory).arun_many(items))
    out = tmp_path / "r"
    done = subprocess.run([sys.executable, "-m", "agentroute", "train", "knn", "--from", url, "--out", str(out)],
                          cwd=ROOT, env={**os.environ, "COLUMNS": "300"}, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    err = " ".join(done.stderr.split())
    assert "warning: the training data holds one agent (executor:fast:direct): knn can only ever choose it" in err, err
    assert (out / "router.json").is_file()

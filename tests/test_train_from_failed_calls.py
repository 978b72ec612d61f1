"""``agentroute train --from MEMORY`` learns the calls that failed: a failed call is an outcome
scored 0 for the agent that made it (``agentroute.outcomes.learned_scores``), so an agent that fails
half its calls no longer looks as good as its answers (was: failed calls were left out, and the
failing agent, right whenever it answered, was the one chosen). Without a fallback such a call
fails its task: ``train --from`` and ``memory export --format outcomes`` read failed tasks too (was:
scored done/budget_exhausted tasks only, so the failures were never seen)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

from agentroute import AgentGraph, ModelCard, ModelPool, make_router
from agentroute.memory import SQLMemory
from agentroute.routers.base import Router
from agentroute.routers.explore import ExploreRouter
from agentroute.types import Agent, RouteContext
from tests.helpers import serve_on_loopback

ROOT = Path(__file__).resolve().parents[1]
N = 24


async def _chat(request: web.Request) -> web.Response:
    """``flaky`` answers right ("Paris") but refuses (HTTP 500) every odd question; ``steady``
    always answers, right but on every fifth question; both refuse every question from 1000 on (an
    outage)."""
    body = await request.json()
    text = " ".join(str(m.get("content") or "") for m in body["messages"])
    i = int(re.findall(r"question (\d+)", text)[-1])
    if (body["model"] == "flaky" and i % 2) or i >= 1000:
        return web.json_response({"error": {"message": "upstream down", "type": "server_error"}}, status=500)
    answer = "Lyon" if body["model"] == "steady" and i % 5 == 0 else "Paris"
    usage = {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}
    return web.json_response({
        "id": "x", "object": "chat.completion", "created": 0, "model": body["model"], "usage": usage,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
    })  # fmt: skip


async def _log(url: str, router: Router | None = None, first: int = 0, **options: object) -> None:
    """``N`` questions (from number ``first``) routed by ``router`` (default: at random) between
    the two models (a failed call falls back to the other unless ``options`` say
    ``max_fallbacks=0``), scored by exact match against "Paris" (feedback, ``metric:em``)."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _chat)
    root, runner = await serve_on_loopback(app)
    pool = ModelPool([
        ModelCard(id=m, backend="openai", model=m, base_url=f"{root}/v1", input_price=1.0, output_price=2.0,
                  max_tokens=8, timeout_s=10.0, strategies=["direct"])
        for m in ("flaky", "steady")
    ])  # fmt: skip
    try:
        with SQLMemory(url) as memory:
            graph = AgentGraph("one").add_role("executor", prompt="answer")
            compiled = graph.compile(pool=pool, router=router or make_router("random"), memory=memory, retries=0, **options)
            items = [
                {"query": f"question {i}", "query_id": f"q{i}", "task_id": f"t{i:02d}", "gold": "Paris", "metric": "em"}
                for i in range(first, first + N)
            ]
            await compiled.arun_many(items)
    finally:
        await pool.aclose()
        await runner.cleanup()


def test_train_from_a_memory_avoids_the_agent_whose_calls_fail(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    asyncio.run(_log(url))
    with SQLMemory(url) as memory:
        steps = [s for t in memory.trajectories() for s in t.steps]
    failed = [s for s in steps if s.status == "failed"]
    assert failed and {s.agent.model for s in failed} == {"flaky"}, steps  # each fell back to steady
    out = tmp_path / "r"
    done = subprocess.run([sys.executable, "-m", "agentroute", "train", "strongest", "--from", url, "--out", str(out)],
                          cwd=ROOT, env={**os.environ, "COLUMNS": "300"}, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    router = Router.load(out)
    flaky, steady = (Agent(role="executor", model=m) for m in ("flaky", "steady"))
    # flaky: right on the even questions it was given, 0 on the odd ones (≈ 0.5); steady: 0.8 or so
    assert router.quality_[flaky.key] < 0.7 < router.quality_[steady.key], router.quality_  # type: ignore[attr-defined]
    ctx = RouteContext(query="question 99", candidates=[flaky, steady], role="executor")
    assert router.route(ctx).agent == steady


def _agentroute(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentroute", *args], cwd=ROOT, env={**os.environ, "COLUMNS": "300"},
                          capture_output=True, text=True, timeout=60)  # fmt: skip


# the exploring router logs its probabilities; plain random logs how many candidates it chose among
# (`offered`: was nothing, so each lone failed call was taken for an outage and never learned)
LOGGERS = {"explore": lambda: ExploreRouter(base="random", epsilon=0.5, seed=3), "random": lambda: make_router("random")}


@pytest.mark.parametrize("logger", list(LOGGERS))
def test_a_model_whose_calls_fail_its_tasks_without_fallback_is_learned_as_failing(tmp_path: Path, logger: str) -> None:
    """No fallback: each failed call of flaky fails its task. Before: train --from read only the
    scored done tasks (flaky 1.0, steady 0.83: flaky chosen) and the export had no row for them."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    asyncio.run(_log(url, LOGGERS[logger](), max_fallbacks=0))
    with SQLMemory(url) as memory:
        failed = [t for t in memory.trajectories() if t.task.status == "failed"]
        done = memory.trajectories(status=["done"])
    assert failed and {s.agent.model for t in failed for s in t.steps} == {"flaky"}, failed
    assert any(s.agent.model == "flaky" for t in done for s in t.steps)
    out = tmp_path / "r"
    trained = _agentroute("train", "strongest", "--from", url, "--out", str(out))
    assert trained.returncode == 0, trained.stderr
    assert f"on {N} trajectories" in trained.stdout  # the failed tasks too
    router = Router.load(out)
    flaky, steady = (Agent(role="executor", model=m) for m in ("flaky", "steady"))
    assert router.quality_[flaky.key] < 0.7 < router.quality_[steady.key], router.quality_  # type: ignore[attr-defined]
    assert router.route(RouteContext(query="question 99", candidates=[flaky, steady], role="executor")).agent == steady
    exported = tmp_path / "o.jsonl"
    written = _agentroute("memory", "export", "--format", "outcomes", "--memory", url, "--out", str(exported))
    assert written.returncode == 0, written.stderr
    rows = [json.loads(line) for line in exported.read_text().splitlines()]
    zeros = {row["task_id"] for row in rows if row["agent"] == flaky.key and row["score"] == 0.0}
    assert len(rows) == N and zeros == {t.task.id for t in failed}, rows
    only_failed = tmp_path / "f.jsonl"  # --status failed: the failed tasks alone, scored or not
    written = _agentroute("memory", "export", "--format", "outcomes", "--memory", url, "--status", "failed", "--out", str(only_failed))
    assert written.returncode == 0 and len(only_failed.read_text().splitlines()) == len(failed), written.stderr


@pytest.mark.parametrize("logger", list(LOGGERS))
def test_train_from_a_memory_of_outages_says_nothing_was_learned(tmp_path: Path, logger: str) -> None:
    """Every task failed, each after both models failed (an outage, nobody's fault): no outcome to
    learn, and the error says why in one line (the failed tasks read too)."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    asyncio.run(_log(url, LOGGERS[logger](), first=1000))
    with SQLMemory(url) as memory:
        assert {t.task.status for t in memory.trajectories()} == {"failed"}
    trained = _agentroute("train", "strongest", "--from", url, "--out", str(tmp_path / "r"))
    assert trained.returncode == 2, trained.stderr
    message = " ".join(trained.stderr.split())
    assert f"tasks failed: {N}" in message and "outage" in message, message
    exported = tmp_path / "o.jsonl"
    written = _agentroute("memory", "export", "--format", "outcomes", "--memory", url, "--out", str(exported))
    assert written.returncode == 0 and exported.read_text() == "", written.stderr

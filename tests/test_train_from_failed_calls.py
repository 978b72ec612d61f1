"""``agentroute train --from MEMORY`` learns the calls that failed: a failed call is an outcome
scored 0 for the agent that made it (``agentroute.outcomes.learned_scores``), so an agent that fails
half its calls no longer looks as good as its answers (was: failed calls were left out, and the
failing agent, right whenever it answered, was the one chosen)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

from aiohttp import web

from agentroute import AgentGraph, ModelCard, ModelPool, make_router
from agentroute.memory import SQLMemory
from agentroute.routers.base import Router
from agentroute.types import Agent, RouteContext
from tests.helpers import serve_on_loopback

ROOT = Path(__file__).resolve().parents[1]
N = 24


async def _chat(request: web.Request) -> web.Response:
    """``flaky`` answers right ("Paris") but refuses (HTTP 500) every odd question; ``steady``
    always answers, right but on every fifth question."""
    body = await request.json()
    text = " ".join(str(m.get("content") or "") for m in body["messages"])
    i = int(re.findall(r"question (\d+)", text)[-1])
    if body["model"] == "flaky" and i % 2:
        return web.json_response({"error": {"message": "upstream down", "type": "server_error"}}, status=500)
    answer = "Lyon" if body["model"] == "steady" and i % 5 == 0 else "Paris"
    usage = {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}
    return web.json_response({
        "id": "x", "object": "chat.completion", "created": 0, "model": body["model"], "usage": usage,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
    })  # fmt: skip


async def _log(url: str) -> None:
    """``N`` questions routed at random between the two models (a failed call falls back to the
    other), scored by exact match against "Paris" (feedback, ``metric:em``)."""
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
            compiled = graph.compile(pool=pool, router=make_router("random"), memory=memory, retries=0)
            items = [
                {"query": f"question {i}", "query_id": f"q{i}", "task_id": f"t{i:02d}", "gold": "Paris", "metric": "em"}
                for i in range(N)
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

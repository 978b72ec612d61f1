"""``OpenAIBackend.preload`` (what ``agentroute serve`` runs at start-up) does the first call's
one-off work: after it, a call imports none of the SDK's (or its HTTP stack's) modules. Was: the
first call imported the SDK's chat resources and anyio's asyncio backend (~50 ms), and the first
routed request on ``agentroute serve`` took 173 ms (median of 10 fresh servers, load ~11) against
15 ms for the next ones; now 45 ms. Run in a fresh interpreter: the test process has them all."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import asyncio, json, sys
from agentroute.pool.backends.openai import OpenAIBackend
from agentroute.pool.card import ModelCard
from agentroute.types import CompletionRequest
from tests.fixtures_reply_server import ReplyServer

async def main(url):
    backend = OpenAIBackend()
    card = ModelCard(id="m", backend="openai", model="echo", base_url=url, input_price=1.0, output_price=1.0)
    await backend.preload(card)
    before = set(sys.modules)
    reply = await backend.complete(CompletionRequest(model="echo", messages=[{"role": "user", "content": "hi"}]), card)
    await backend.aclose()
    return reply.text, sorted(set(sys.modules) - before)

with ReplyServer() as server:
    print(json.dumps(asyncio.run(main(server.url))))
"""


def test_a_call_after_preload_imports_nothing_of_the_sdk() -> None:
    ran = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, cwd=Path(__file__).parent.parent
    )
    assert ran.returncode == 0, ran.stderr
    text, imported = json.loads(ran.stdout.splitlines()[-1])
    assert text, ran.stdout  # the call was answered
    stack = ("openai", "anyio", "httpx", "httpcore", "jiter", "sniffio")
    assert [name for name in imported if name.split(".")[0] in stack] == []

"""``agentroute serve`` passes an upstream's confidence on only as a finite number (issue 10: what a
backend reports is data from outside, read by one rule, :func:`agentroute.types.finite_number`).

Before, the served ``agentroute.confidence`` averaged whatever was an ``int | float``: ``true`` was
served as ``1.0`` and ``NaN`` as ``NaN`` (not JSON: a strict client refuses the whole reply).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from agentroute.pool import ModelPool
from agentroute.serve import ServerThread
from tests.fixtures_reply_server import LoopbackServer
from tests.test_dispatch_reply_fields import SENT, _card, _Confident


@pytest.fixture(scope="module")
def served() -> Any:
    with LoopbackServer(_Confident) as upstream, ServerThread(ModelPool([_card(m, upstream.url) for m in SENT])) as server:
        yield server


@pytest.mark.parametrize(("model", "expected"), [("text", None), ("nan", None), ("list", None), ("true", None), ("half", 0.5)])
def test_served_confidence_is_a_finite_number_or_absent(served: Any, model: str, expected: float | None) -> None:
    reply = httpx.post(f"{served.url}/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "Capital of France?"}]}, timeout=10)
    assert reply.status_code == 200, reply.text
    body = json.loads(reply.text, parse_constant=lambda name: pytest.fail(f"not JSON: {name}"))  # NaN/Infinity refused
    assert body["choices"][0]["message"]["content"] == "Paris."
    assert body["agentroute"]["confidence"] == expected

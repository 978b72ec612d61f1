"""A policy server (`--policy-url`) that refuses a completion with an error reply says why: vLLM answers a
prompt over the served model's context with HTTP 400 and a JSON message naming the lengths (a served
policy's context is its server's to enforce). Was: `answered HTTP 400 Bad Request`, the message dropped."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from agentroute import AgentGraph, make_router
from agentroute.budget import Budget
from agentroute.routers.router_r1.agent import ThinkRouteAgent
from agentroute.routers.router_r1.served import PolicyServerError, ServedPolicy

sys.path.insert(0, str(Path(__file__).parent))
from fixtures_reply_server import JSONHandler, LoopbackServer  # noqa: E402
from test_router_r1 import CharTokenizer, echo_pool  # noqa: E402

TOO_LONG = ("This model's maximum context length is 4096 tokens. However, you requested 9120 tokens\n"
            "(9024 in the messages, 96 in the completion). Please reduce the length of the messages or completion.")


class _Refusing(JSONHandler):
    """``/v1/models`` lists one model; ``/v1/completions`` answers 400 with vLLM's error body
    (``/openai/v1``: OpenAI's nested ``{"error": {...}}``; ``/html/v1``: an HTML page)."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_json(200, {"data": [{"id": "router-r1"}]})

    def do_POST(self) -> None:  # noqa: N802
        self.read_json()
        if self.path.startswith("/html/"):
            body = b"<html>400</html>"
            self.send_response(400)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path.startswith("/openai/"):
            self.send_json(400, {"error": {"message": TOO_LONG, "type": "invalid_request_error"}})
        else:
            self.send_json(400, {"object": "error", "message": TOO_LONG, "type": "BadRequestError", "code": 400})


@pytest.mark.parametrize(("root", "says"), [
    ("", ": This model's maximum context length is 4096 tokens. However, you requested 9120 tokens (9024"),
    ("/openai", ": This model's maximum context length is 4096 tokens."),
    ("/html", "answered HTTP 400 Bad Request"),
])
async def test_a_refused_completion_names_the_servers_message(root, says):
    with LoopbackServer(_Refusing) as server:
        url = server.url.replace("/v1", f"{root}/v1")
        policy = ServedPolicy(url, CharTokenizer())
        pool, _ = echo_pool()
        graph = AgentGraph("router_r1").add_node("think_route", ThinkRouteAgent(policy), stage="route")
        with pytest.raises(PolicyServerError) as failed:
            await graph.compile(pool=pool, router=make_router("cheapest"), budget=Budget(usd=1.0)).arun("Who wrote Dune?")
    text = str(failed.value)
    assert text.startswith(f"policy server {url}: POST /completions answered HTTP 400 Bad Request") and "\n" not in text
    assert says in text, text
    if root == "/html":
        assert text.endswith("Bad Request"), text

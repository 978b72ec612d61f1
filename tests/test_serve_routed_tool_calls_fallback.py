"""The routed model falls back to another model when an upstream's tool calls are not OpenAI's shape
(a call without an id): the dispatcher checks them as it checks a reply's usage, so the bad step is
recorded failed (audited ``protocol_error``) and the next model answers. Was: a 502 to the client,
and the memory recorded the bad step ``ok``."""

from __future__ import annotations

import json

import pytest

from agentroute.memory import open_memory
from agentroute.pool import ModelPool
from agentroute.pool.card import ModelCard
from agentroute.serve import ServerThread
from tests.fixtures_reply_server import JSONHandler, LoopbackServer
from tests.fixtures_sdk import close_sdk_clients, sdk_client  # noqa: F401


def _handler(call_id: str | None) -> type[JSONHandler]:
    class Calls(JSONHandler):
        """An OpenAI-compatible upstream answering one tool call (``id`` omitted when None), plain or streamed."""

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            if (body := self.chat_body()) is None:
                return
            call = {"index": 0, "type": "function", "function": {"name": "add", "arguments": "{}"}}
            if call_id is not None:
                call["id"] = call_id
            base = {"id": "r1", "created": 0, "model": body["model"], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
            if not body.get("stream"):
                message = {"role": "assistant", "content": None, "tool_calls": [call]}
                return self.send_json(200, {**base, "object": "chat.completion", "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]})
            self.start_events()
            self.send_event({**base, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": "tool_calls"}]})
            self.send_event("[DONE]")

    return Calls


@pytest.mark.parametrize("stream", [False, True])
def test_a_bad_tool_call_falls_back_to_the_next_model_and_is_recorded_failed(tmp_path, stream: bool) -> None:
    memory = open_memory(f"sqlite:///{tmp_path / 'serve.db'}")
    with LoopbackServer(_handler(None)) as bad, LoopbackServer(_handler("call_1")) as good:
        cards = [  # the router (cheapest) tries the bad one first
            ModelCard(id="cheap", backend="openai", model="m", base_url=bad.url, input_price=1.0, output_price=1.0),
            ModelCard(id="dear", backend="openai", model="m", base_url=good.url, input_price=9.0, output_price=9.0),
        ]
        with ServerThread(ModelPool(cards), preload=False, router="cheapest", memory=memory) as server:
            reply = sdk_client(server.url).chat.completions.create(
                model="router", messages=[{"role": "user", "content": "add"}], stream=stream
            )
            chunks = list(reply) if stream else [reply]
    try:
        if stream:
            calls = [c for ch in chunks if ch.choices for c in ch.choices[0].delta.tool_calls or []]
            finish = [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1]
        else:
            calls, finish = chunks[0].choices[0].message.tool_calls or [], chunks[0].choices[0].finish_reason
        assert [(c.id, c.function.name) for c in calls] == [("call_1", "add")] and finish == "tool_calls"
        (record,) = memory.trajectories()
        assert [(s.agent.model, s.status) for s in record.steps] == [("cheap", "failed"), ("dear", "ok")], record.steps
        assert "'tool_calls' 0: needs an \"id\"" in (record.steps[0].error or "")
        kinds = [e.kind for e in memory.audit_events(record.task.id)]
        assert "protocol_error" in kinds, json.dumps(kinds)
    finally:
        memory.close()

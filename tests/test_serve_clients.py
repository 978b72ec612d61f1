"""``agentroute serve`` as users of the OpenAI SDK, LiteLLM and LangChain reach it today.

Real HTTP on 127.0.0.1: the server serves a pool of ``openai`` cards whose provider is the loopback
:class:`~tests.fixtures_reply_server.ReplyServer` (it keeps every request it gets), with the
``cheapest`` router, so each request goes either to a card (``model="plain"``) or through the router
(``model="router"``). What the server cannot honour and whose loss would change the answer (tools,
images, token biases…) is refused with OpenAI's 400 before any provider call.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from agentroute.memory import SQLMemory
from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool
from tests.fixtures_reply_server import ANSWER, ReplyServer
from tests.fixtures_sdk import close_sdk_clients, litellm_sync_loop, sdk_client  # noqa: F401 (closes the clients sdk_client opens)
from tests.helpers import NeverAnswers

pytest.importorskip("fastapi")
from agentroute.serve import ServerThread  # noqa: E402
from agentroute.serve.openai_server import MAX_BODY_BYTES  # noqa: E402

REPLY = "".join(ANSWER)


MODELS = ["plain", "router"]  # a pool card, and the routed model
ASK = [{"role": "user", "content": "What is the capital of France?"}]
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[ServerThread, ReplyServer]]:
    with ReplyServer() as provider:
        card = ModelCard(id="plain", backend="openai", model="plain", base_url=provider.url,
                         input_price=1.0, output_price=2.0, max_tokens=16, timeout_s=10)  # fmt: skip
        with ServerThread(ModelPool([card]), router="cheapest", budget={"usd": 1.0}) as server:
            yield server, provider


def sdk(server: ServerThread, **kwargs: Any) -> openai.OpenAI:
    return sdk_client(server.url, **kwargs)


# -- fields the server cannot honour: refused, never dropped ------------------------------------------
ASSISTANT_TOOL_CALL = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]}  # fmt: skip
IMAGE = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]
REFUSED = [
    ({"tools": [TOOL]}, "tools"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tool_choice": {"type": "function", "function": {"name": "lookup"}}}, "tool_choice"),
    ({"functions": [TOOL["function"]]}, "functions"),
    ({"function_call": {"name": "lookup"}}, "function_call"),
    ({"logit_bias": {"1234": -100}}, "logit_bias"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ({"web_search_options": {}}, "web_search_options"),
    ({"messages": [{"role": "user", "content": IMAGE}]}, "messages.0.content.1"),
    ({"messages": [*ASK, ASSISTANT_TOOL_CALL, {"role": "tool", "tool_call_id": "c1", "content": "Paris"}]}, "messages.1.tool_calls"),
]


PASSED = [
    {"response_format": {"type": "json_object"}},
    {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {}}}},
    {"logprobs": True},
    {"logprobs": True, "top_logprobs": 3},
]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("fields", PASSED, ids=["json_object", "json_schema", "logprobs", "top_logprobs"])
def test_json_modes_and_logprobs_reach_the_provider_of_an_openai_card(
    served: tuple[ServerThread, ReplyServer], model: str, fields: dict[str, Any]
) -> None:
    """Before: refused (400) on every card. An ``openai`` card's provider honours them: they reach it
    as sent, on the card and through the router (tests/test_serve_request_fields.py: what comes back)."""
    server, provider = served
    reply = sdk(server).chat.completions.create(**{"model": model, "messages": ASK, **fields})
    assert reply.choices[0].message.content == REPLY
    assert {name: provider.requests[-1].get(name) for name in fields} == fields


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(("fields", "param"), REFUSED, ids=[p for _, p in REFUSED])
def test_a_field_whose_loss_would_change_the_answer_is_refused_before_any_call(
    served: tuple[ServerThread, ReplyServer], model: str, fields: dict[str, Any], param: str
) -> None:
    """Before: each was accepted and dropped (a 200 with plain text: no tool call, no token bias
    applied, the image unseen). Now a 400 naming the field, and the provider is never called."""
    server, provider = served
    calls = len(provider.requests)
    with pytest.raises(openai.BadRequestError) as info:
        sdk(server).chat.completions.create(**{"model": model, "messages": ASK, **fields})
    assert info.value.code == "unsupported_parameter" and info.value.param == param
    assert info.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    assert info.value.body["message"].startswith(f"{param}: ")  # type: ignore[index]
    assert len(provider.requests) == calls


def test_n_above_one_on_the_router_is_refused_with_a_code(served: tuple[ServerThread, ReplyServer]) -> None:
    """Before: the 400 had no ``code`` (the SDK's ``exc.code`` was ``None``); now ``unsupported_value``."""
    server, provider = served
    calls = len(provider.requests)
    with pytest.raises(openai.BadRequestError) as info:
        sdk(server).chat.completions.create(model="router", messages=ASK, n=2)
    assert (info.value.code, info.value.param) == ("unsupported_value", "n") and len(provider.requests) == calls
    assert len(sdk(server).chat.completions.create(model="plain", messages=ASK, n=2).choices) == 2


ACCEPTED = [
    {"seed": 7, "user": "u1", "top_p": 0.9, "presence_penalty": 0.5, "frequency_penalty": 0.5},
    {"tool_choice": "none", "parallel_tool_calls": False, "tools": [], "logit_bias": {}},
    {"tool_choice": "none", "tools": [TOOL]},  # an agent's final answer: its tools sent, none callable
    {"function_call": "none", "functions": [TOOL["function"]]},
    {"tool_choice": "auto", "response_format": {"type": "text"}, "logprobs": False, "top_logprobs": 0},
    {"modalities": ["text"], "messages": [{"role": "developer", "content": [{"type": "text", "text": "Be brief."}]}, *ASK]},
]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("fields", ACCEPTED)
def test_hints_that_do_not_change_what_is_asked_are_answered(
    served: tuple[ServerThread, ReplyServer], model: str, fields: dict[str, Any]
) -> None:
    server, _ = served
    reply = sdk(server).chat.completions.create(**{"model": model, "messages": ASK, **fields})
    assert reply.choices[0].message.content is not None and "Paris" in reply.choices[0].message.content


# -- parameters honoured end to end ------------------------------------------------------------------
@pytest.mark.parametrize("model", MODELS)
def test_max_completion_tokens_caps_the_provider_call(served: tuple[ServerThread, ReplyServer], model: str) -> None:
    server, provider = served
    sdk(server).chat.completions.create(model=model, messages=ASK, max_completion_tokens=6)
    sent = provider.requests[-1]
    cap = sent.get("max_completion_tokens") or sent.get("max_tokens")
    assert cap == (3 if model == "router" else 6)  # the router's direct strategy asks for half


def test_max_completion_tokens_bounds_the_routed_budgets_worst_case() -> None:
    """A card allowing 1,000 tokens does not fit a 300-token budget, unless the request caps the answer."""
    with ReplyServer() as provider:
        card = ModelCard(id="plain", backend="openai", model="plain", base_url=provider.url,
                         input_price=1.0, output_price=2.0, max_tokens=1000, timeout_s=10)  # fmt: skip
        with ServerThread(ModelPool([card]), router="cheapest", budget={"tokens": 300}) as server:
            with pytest.raises(openai.APIStatusError) as info:
                sdk(server).chat.completions.create(model="router", messages=ASK)
            assert info.value.status_code == 402 and provider.requests == []
            reply = sdk(server).chat.completions.create(model="router", messages=ASK, max_completion_tokens=40)
    assert reply.choices[0].message.content == REPLY and len(provider.requests) == 1


@pytest.mark.parametrize("model", MODELS)
def test_a_developer_message_reaches_the_provider_as_the_system_prompt(
    served: tuple[ServerThread, ReplyServer], model: str
) -> None:
    """``developer`` is OpenAI's new name for ``system``. Before: a card's provider got the role
    ``developer`` as sent (which chat templates and OpenAI-compatible servers other than OpenAI's
    do not know); now, as on the router, it is the system prompt."""
    server, provider = served
    messages = [{"role": "developer", "content": [{"type": "text", "text": "Be brief."}]}, *ASK]
    sdk(server).chat.completions.create(model=model, messages=messages)  # type: ignore[arg-type]
    first, *rest = provider.requests[-1]["messages"]
    assert first["role"] == "system" and first["content"].startswith("Be brief.")
    assert [m["role"] for m in rest] == ["user"]


@pytest.mark.parametrize("model", MODELS)
def test_a_tool_result_reaches_the_provider_as_a_user_turn(served: tuple[ServerThread, ReplyServer], model: str) -> None:
    """The assistant's tool call is refused, so a ``tool`` message answers none: an OpenAI-compatible
    provider refuses such a message. Before: a card's provider got it as role ``tool`` (the router
    already sent it as a user turn ``tool: text``); now both send ``tool: Paris`` as a user turn."""
    server, provider = served
    messages = [*ASK, {"role": "assistant", "content": "Let me look."}, {"role": "tool", "tool_call_id": "c1", "content": "Paris"}]
    sdk(server).chat.completions.create(model=model, messages=messages)  # type: ignore[arg-type]
    sent = provider.requests[-1]["messages"]
    assert [m["role"] for m in sent if m["role"] != "system"] == ["user", "assistant", "user"]
    assert sent[-1]["content"] == "tool: Paris"


@pytest.mark.parametrize("model", MODELS)
def test_include_usage_ends_the_stream_with_a_usage_chunk(served: tuple[ServerThread, ReplyServer], model: str) -> None:
    server, _ = served
    chunks = list(sdk(server).chat.completions.create(
        model=model, messages=ASK, stream=True, stream_options={"include_usage": True}
    ))  # fmt: skip
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None and last.usage.completion_tokens > 0
    assert last.model_extra["agentroute"]["cost_usd"] > 0  # type: ignore[index]
    assert all(c.usage is None for c in chunks[:-1])


def test_litellm_reaches_the_router_plain_and_streamed(served: tuple[ServerThread, ReplyServer], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    litellm = pytest.importorskip("litellm")
    server, _ = served
    common = {"model": "openai/router", "api_base": server.url, "api_key": "x", "messages": ASK}
    with litellm_sync_loop():
        reply = litellm.completion(**common)
        chunks = list(litellm.completion(**common, stream=True, stream_options={"include_usage": True}))
    assert reply.choices[0].message.content == REPLY and reply.usage.completion_tokens > 0
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens


# -- endpoints and bodies ------------------------------------------------------------------------------
def test_models_list_names_the_router_and_missing_endpoints_say_what_exists(served: tuple[ServerThread, ReplyServer]) -> None:
    """Before: ``/v1/embeddings`` was a bare "Not Found"; now the 404 names the endpoints there are."""
    server, _ = served
    client = sdk(server)
    assert [m.id for m in client.models.list()] == ["router", "router:cheapest", "plain"]
    assert client.models.retrieve("router").owned_by == "agentroute:router"
    with pytest.raises(openai.NotFoundError) as info:
        client.embeddings.create(model="plain", input="hello")
    assert "POST /v1/chat/completions" in str(info.value.message)
    with pytest.raises(openai.NotFoundError) as info:
        client.completions.create(model="plain", prompt="hello")
    assert "POST /v1/chat/completions" in str(info.value.message)


MALFORMED = [
    (b"not json", "application/json", None, "the body is not valid JSON"),
    (b"[1, 2]", "application/json", None, "the body must be a JSON object"),
    (b'{"model": "router"}', "application/json", "messages", "messages: Field required"),
    (b'{"model": "router", "messages": []}', "application/json", "messages", "at least 1 item"),
    (b'{"model": "plain", "messages": [{"role": "user", "content": 5}]}', "application/json", "messages.0.content", "expected a string or a list of parts"),
    (b'{"model": "plain", "messages": [{"role": "user", "content": ["hi"]}]}', "application/json", "messages.0.content", "expected a string or a list of parts"),
    (b'{"model": "plain", "messages": [{"role": "user", "content": [{"type": "text"}]}]}', "application/json", "messages.0.content", 'part 0: a text part needs "text"'),
    (b'{"model": "plain", "messages": [{"role": "user", "content": "hi"}]}', "application/x-www-form-urlencoded", None, "sent with 'Content-Type: application/json'"),
]


@pytest.mark.parametrize(("body", "content_type", "param", "says"), MALFORMED)
def test_malformed_bodies_are_400s_in_openais_shape_that_say_what_is_wrong(
    served: tuple[ServerThread, ReplyServer], body: bytes, content_type: str, param: str | None, says: str
) -> None:
    """Before: content of the wrong shape named a member of pydantic's union as the param
    (``messages.0.content.str``), a text part without text was read as empty, and a JSON list or a
    form (``curl -d`` without a JSON header) was "body: Input should be a valid dictionary"."""
    server, provider = served
    calls = len(provider.requests)
    reply = httpx.post(f"{server.url}/chat/completions", content=body, headers={"content-type": content_type})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and says in error["message"]
    assert len(provider.requests) == calls


@pytest.mark.parametrize("declared", [True, False])
def test_a_body_past_the_limit_is_a_413_not_read_whole(served: tuple[ServerThread, ReplyServer], declared: bool) -> None:
    """Before: any body was read whole into memory (then parsed); now past 32 MiB it is a 413,
    whether the client declared its length or sent it in chunks."""
    server, provider = served
    calls = len(provider.requests)
    mib = b"x" * 2**20
    content: Any = mib * (MAX_BODY_BYTES // 2**20 + 1) if declared else iter([mib] * (MAX_BODY_BYTES // 2**20 + 1))
    reply = httpx.post(f"{server.url}/chat/completions", content=content, headers={"content-type": "application/json"}, timeout=60)
    assert reply.status_code == 413
    assert reply.json()["error"]["type"] == "invalid_request_error" and "32 MiB" in reply.json()["error"]["message"]
    assert len(provider.requests) == calls
    assert sdk(server).chat.completions.create(model="plain", messages=ASK).choices[0].message.content == REPLY


def test_a_body_declared_past_the_limit_is_a_413_before_it_is_sent(served: tuple[ServerThread, ReplyServer]) -> None:
    """Before: a client declaring 64 MiB was made to send 32 MiB of it before the 413; now the
    declared length is refused at once (here only 2 bytes are ever sent)."""
    server, _ = served
    host, port = server.url.removeprefix("http://").removesuffix("/v1").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {2 * MAX_BODY_BYTES}\r\n\r\n{{}}".encode()
        )
        answer = b""
        while b"MiB" not in answer and (chunk := raw.recv(4096)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413") and b"the body is over 32 MiB" in answer


# -- many clients, clients that leave ------------------------------------------------------------------
def test_fifty_concurrent_async_requests_on_the_router_are_all_answered_and_recorded(tmp_path: Path) -> None:
    with ReplyServer() as provider, SQLMemory(f"sqlite:///{tmp_path}/memory.db") as memory:
        card = ModelCard(id="plain", backend="openai", model="plain", base_url=provider.url,
                         input_price=1.0, output_price=2.0, max_tokens=16, timeout_s=30)  # fmt: skip
        with ServerThread(ModelPool([card]), router="cheapest", memory=memory, budget={"usd": 1.0}) as server:

            async def main() -> list[tuple[str, float]]:
                client = openai.AsyncOpenAI(base_url=server.url, api_key="x", max_retries=0, timeout=60)

                async def one(i: int) -> tuple[str, float]:
                    if i % 2:
                        reply = await client.chat.completions.create(model="router", messages=ASK)
                        return reply.choices[0].message.content or "", reply.model_extra["agentroute"]["cost_usd"]  # type: ignore[index]
                    stream = await client.chat.completions.create(
                        model="router", messages=ASK, stream=True, stream_options={"include_usage": True}
                    )
                    chunks = [c async for c in stream]
                    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                    return text, chunks[-1].model_extra["agentroute"]["cost_usd"]  # type: ignore[index]

                try:
                    return await asyncio.gather(*(one(i) for i in range(50)))
                finally:
                    await client.close()

            answers = asyncio.run(main())
        tasks = [t.task for t in memory.trajectories()]
    assert [text for text, _ in answers] == [REPLY] * 50 and len(provider.requests) == 50
    assert len(tasks) == 50 and {t.status for t in tasks} == {"done"}
    assert sum(t.cost_usd for t in tasks) == pytest.approx(sum(cost for _, cost in answers))



@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_times_out_leaves_its_task_billed_for_the_call_it_started(tmp_path: Path, stream: bool) -> None:
    """The provider may bill a call the client gave up on: the task is recorded ``interrupted`` with
    that call's worst case, the same figure the budget's ledger charged."""
    backend = NeverAnswers()
    card = ModelCard(id="slow", backend="replay", input_price=1.0, output_price=2.0, max_tokens=16)
    with SQLMemory(f"sqlite:///{tmp_path}/memory.db") as memory:
        with ServerThread(ModelPool([card], {"replay": backend}), router="cheapest", memory=memory) as server:
            with pytest.raises(openai.APITimeoutError):
                create = sdk(server, timeout=0.5).chat.completions.create
                for _ in create(model="router", messages=ASK, stream=True) if stream else [create(model="router", messages=ASK)]:
                    pass
            assert backend.cancelled.wait(5), "the provider call outlived its client"
        [trajectory] = memory.trajectories()
    assert trajectory.task.status == "interrupted"
    [step] = trajectory.steps
    assert step.error == "cancelled" and step.cost_usd > 0
    assert trajectory.task.cost_usd == pytest.approx(step.cost_usd)


# -- LangChain ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", MODELS)
def test_langchain_chat_openai_answers_and_is_told_what_is_not_supported(
    served: tuple[ServerThread, ReplyServer], model: str
) -> None:
    """Before: ``bind_tools`` got an answer with no tool call; now it is the server's clear 400.
    (``with_structured_output`` reaches an ``openai`` card's provider: tests/test_serve_request_fields.py.)"""
    langchain_openai = pytest.importorskip("langchain_openai")
    from pydantic import BaseModel

    server, _ = served
    llm = langchain_openai.ChatOpenAI(model=model, base_url=server.url, api_key="x", max_retries=0, stream_usage=True)
    assert llm.invoke("What is the capital of France?").content == REPLY
    chunks = list(llm.stream("What is the capital of France?"))
    assert "".join(str(c.content) for c in chunks) == REPLY
    assert sum(c.usage_metadata["output_tokens"] for c in chunks if c.usage_metadata) > 0

    class City(BaseModel):
        name: str

    with pytest.raises(openai.BadRequestError) as info:
        llm.bind_tools([City]).invoke("What is the capital of France?")
    assert info.value.param == "tools"

"""The openai and litellm backends, against agentroute's own OpenAI-compatible server (real model)."""

from __future__ import annotations

import asyncio
import dataclasses
import socket

import httpx
import openai
import pytest

from agentroute.errors import BackendError, ConfigurationError
from agentroute.pool.backends.openai import OpenAIBackend, backend_error
from agentroute.pool.card import ModelCard
from agentroute.types import CompletionRequest
from tests.fixtures_openai_server import SERVER_CARD, SERVER_MODEL
from tests.helpers import serve_on_loopback

QUESTION = CompletionRequest(
    model=SERVER_MODEL,
    messages=[{"role": "user", "content": "What is the capital of France?"}],
    max_tokens=16,
)


def openai_card(url: str, **update: object) -> ModelCard:
    fields: dict[str, object] = {
        "id": "served-smol",
        "backend": "openai",
        "model": SERVER_MODEL,
        "base_url": url,
        "input_price": 0.1,
        "output_price": 0.4,
        "timeout_s": 120,
    }
    return ModelCard(**{**fields, **update})


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL nobody listens on (a port just bound and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def litellm_backend():  # imported lazily: LiteLLM takes seconds to import
    pytest.importorskip("litellm")
    from agentroute.pool.backends.litellm import LiteLLMBackend, litellm_module, litellm_usd

    return LiteLLMBackend(), litellm_module(), litellm_usd


# -- error mapping and pricing, no server --------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [
        (429, openai.RateLimitError, True),
        (500, openai.InternalServerError, True),
        (503, openai.InternalServerError, True),
        (401, openai.AuthenticationError, False),
        (400, openai.BadRequestError, False),
        (404, openai.NotFoundError, False),
    ],
)
def test_status_errors_map_to_retryable(
    status: int, cls: type[openai.APIStatusError], retryable: bool
) -> None:
    response = httpx.Response(status, request=httpx.Request("POST", "http://127.0.0.1/v1/chat/completions"))
    error = backend_error(cls(f"status {status}", response=response, body=None), "m")
    assert error.retryable is retryable and f"HTTP {status}" in str(error) and error.model == "m"


def test_connection_errors_are_retryable() -> None:
    request = httpx.Request("POST", "http://127.0.0.1/v1")
    assert backend_error(openai.APIConnectionError(request=request), "m").retryable
    assert backend_error(openai.APITimeoutError(request=request), "m").retryable
    assert not backend_error(ValueError("bad"), "m").retryable


async def test_openai_unreachable_endpoint_is_retryable(closed_port_url: str) -> None:
    backend = OpenAIBackend()
    with pytest.raises(BackendError) as info:
        await backend.complete(QUESTION, openai_card(closed_port_url, timeout_s=5))
    assert info.value.retryable and info.value.model == "served-smol"
    assert not info.value.billed  # the request never left: nothing to bill
    await backend.aclose()


async def test_litellm_unreachable_endpoint_is_retryable(closed_port_url: str) -> None:
    backend, _, _ = litellm_backend()
    card = openai_card(closed_port_url, backend="litellm", model=f"openai/{SERVER_MODEL}", timeout_s=5)
    with pytest.raises(BackendError) as info:
        await backend.complete(QUESTION, card)
    assert info.value.retryable and not info.value.billed


async def test_unpriced_self_hosted_cards_are_refused() -> None:
    url = "http://127.0.0.1:9/v1"
    unpriced = openai_card(url, input_price=None, output_price=None)
    with pytest.raises(ConfigurationError, match="'served-smol' has no price"):
        await OpenAIBackend().complete(QUESTION, unpriced)
    with pytest.raises(ConfigurationError, match="no price"):
        OpenAIBackend().worst_case_usd(QUESTION, unpriced)
    backend, _, _ = litellm_backend()
    hosted = unpriced.model_copy(update={"backend": "litellm", "model": "openai/gpt-4o-mini"})
    with pytest.raises(ConfigurationError, match="self-hosted .* has no price"):
        backend.worst_case_usd(QUESTION, hosted)
    with pytest.raises(ConfigurationError, match="self-hosted"):
        await backend.complete(QUESTION, hosted)
    per_second = unpriced.model_copy(update={"price_per_second": 0.001})
    with pytest.raises(ConfigurationError, match="price_per_second applies to local models only"):
        OpenAIBackend().worst_case_usd(QUESTION, per_second)


def test_missing_api_key_env_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTROUTE_TEST_KEY", raising=False)
    card = openai_card("http://127.0.0.1:9/v1", api_key_env="AGENTROUTE_TEST_KEY")
    with pytest.raises(ConfigurationError, match=r"\$AGENTROUTE_TEST_KEY, which is not set"):
        asyncio.run(OpenAIBackend().complete(QUESTION, card))


def test_litellm_prices_known_models_from_its_local_cost_table(monkeypatch: pytest.MonkeyPatch) -> None:
    backend, litellm, litellm_usd = litellm_backend()

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("pricing must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    card = ModelCard(id="gpt-4o-mini", backend="litellm", model="openai/gpt-4o-mini")
    entry = litellm.model_cost["gpt-4o-mini"]
    assert litellm_usd(card, 1000, 500) == pytest.approx(
        1000 * entry["input_cost_per_token"] + 500 * entry["output_cost_per_token"]
    )
    request = CompletionRequest(
        model=card.model, messages=[{"role": "user", "content": "hello there"}], max_tokens=100
    )
    tokens_in = backend.count_tokens("hello there", card) + 4 + 3
    assert backend.worst_case_usd(request, card) == pytest.approx(litellm_usd(card, tokens_in, 100))
    priced = card.model_copy(update={"input_price": 1.0, "output_price": 2.0})  # the card wins over the table
    assert litellm_usd(priced, 1000, 500) == pytest.approx(priced.usd(1000, 500))
    unknown = ModelCard(id="mystery", backend="litellm", model="openai/no-such-model-xyz")
    with pytest.raises(ConfigurationError, match="cost table has no price for 'openai/no-such-model-xyz'"):
        backend.worst_case_usd(request, unknown)


# -- against the real server ------------------------------------------------------------------------
@pytest.mark.slow
async def test_openai_backend_against_local_server(openai_server_url: str) -> None:
    backend = OpenAIBackend()
    card = openai_card(openai_server_url)
    try:
        done = await backend.complete(QUESTION, card)
    finally:
        await backend.aclose()
    assert "Paris" in done.text
    assert done.tokens_in > 0 and 0 < done.tokens_out <= QUESTION.max_tokens
    assert done.cost_usd == pytest.approx(card.usd(done.tokens_in, done.tokens_out))
    assert 0.0 <= done.raw["confidence"] <= 1.0
    assert done.raw["finish_reason"] in {"stop", "length"}


@pytest.mark.slow
async def test_litellm_backend_against_local_server(openai_server_url: str) -> None:
    backend, _, _ = litellm_backend()
    card = openai_card(openai_server_url, backend="litellm", model=f"openai/{SERVER_MODEL}")
    done = await backend.complete(QUESTION, card)
    assert "Paris" in done.text
    assert done.tokens_in > 0 and 0 < done.tokens_out <= QUESTION.max_tokens
    assert done.cost_usd == pytest.approx(card.usd(done.tokens_in, done.tokens_out))


@pytest.mark.slow
async def test_server_protocol(openai_server_url: str) -> None:
    client = openai.AsyncOpenAI(base_url=openai_server_url, api_key="none", max_retries=0)
    try:
        models = await client.models.list()
        assert [m.id for m in models.data] == [SERVER_MODEL]
        reply = await client.chat.completions.create(
            model=SERVER_MODEL,
            messages=[{"role": "user", "content": [{"type": "text", "text": "Name a fruit."}]}],
            max_tokens=8,
            temperature=0.7,
            n=3,
            stop="\n\n",
        )
        assert len(reply.choices) == 3 and all(c.message.content for c in reply.choices)
        assert reply.usage is not None
        assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
        extra = reply.model_extra["agentroute"]
        card_cost = SERVER_CARD.usd(reply.usage.prompt_tokens, reply.usage.completion_tokens)  # the usage counts each choice's prompt
        assert extra["cost_usd"] == pytest.approx(card_cost)
        with pytest.raises(openai.NotFoundError, match="unknown model 'nope'"):
            await client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.BadRequestError, match="messages"):
            await client.chat.completions.create(model=SERVER_MODEL, messages=[])
    finally:
        await client.close()
    async with httpx.AsyncClient() as http:
        health = await http.get(openai_server_url.removesuffix("/v1") + "/health")
    assert health.json() == {"status": "ok", "models": [SERVER_MODEL]}


@pytest.mark.slow
async def test_openai_backend_maps_server_errors(openai_server_url: str) -> None:
    backend = OpenAIBackend()
    try:
        with pytest.raises(BackendError, match="HTTP 404") as info:
            await backend.complete(QUESTION, openai_card(openai_server_url, model="nope"))
        assert not info.value.retryable
        too_long = dataclasses.replace(QUESTION, max_tokens=9000)
        with pytest.raises(BackendError, match="context window") as info:
            await backend.complete(too_long, openai_card(openai_server_url))
        assert not info.value.retryable
    finally:
        await backend.aclose()


# -- usage is outside data: validated --------------------------------------------------------------
CARD_1K = ModelCard(id="m", backend="openai", base_url="http://127.0.0.1:9/v1", input_price=1, output_price=2, context_window=1000)


@pytest.mark.parametrize(
    ("value", "problem"),
    [(-1, "negative"), (float("nan"), "not finite"), (float("inf"), "not finite"), (2.5, "whole number"),
     ("12", "not a number"), (True, "not a number"), (10_001, "absurd")],
)
def test_bad_usage_is_a_protocol_error(value: object, problem: str) -> None:
    from agentroute.errors import ProtocolError
    from agentroute.pool.backends.usage import checked_usage

    with pytest.raises(ProtocolError, match=problem) as info:
        checked_usage(CARD_1K, {"prompt_tokens": 3, "completion_tokens": value})
    assert not info.value.retryable and info.value.model == "m"


def test_good_usage_is_read_as_whole_numbers() -> None:
    from agentroute.pool.backends.usage import checked_usage, reply_usage

    assert checked_usage(CARD_1K, {"prompt_tokens": 3, "completion_tokens": 4.0}) == (3, 4)
    assert checked_usage(CARD_1K, None) == (None, None)
    assert checked_usage(CARD_1K, {"prompt_tokens": 3}) == (3, None)
    assert checked_usage(CARD_1K, {"prompt_tokens": 3, "completion_tokens": 9_999}) == (3, 9_999)  # above max_tokens: as billed
    # zeros for a non-empty prompt or reply are LiteLLM's stand-in for "no usage": counted instead
    assert reply_usage(CARD_1K, {"prompt_tokens": 0, "completion_tokens": 0}, messages=[{"content": "hi"}], text="yo") == (None, None)


# -- against the adversarial server ----------------------------------------------------------------
@pytest.fixture(scope="module")
def adversary():
    from tests.fixtures_adversary import Adversary

    with Adversary(hang_s=10) as server:
        yield server


def adversary_request(task: str, max_tokens: int = 16) -> CompletionRequest:
    return CompletionRequest(
        model="x", max_tokens=max_tokens,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"[task:{task}] 你好, hello 🙂"}],
    )


async def settled_bill(server, task: str):
    await asyncio.sleep(0.05)  # the server books a cut stream when it sees the client leave
    return server.bill(task)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
async def test_openai_backend_against_every_adversary_behaviour(adversary, stream: bool) -> None:
    from agentroute.errors import ProtocolError

    backend = OpenAIBackend(stream=stream)
    mode = "s" if stream else "p"

    async def call(behaviour: str, max_tokens: int = 16):
        card = ModelCard(id=behaviour, backend="openai", model=behaviour, base_url=adversary.url,
                         input_price=1, output_price=2, timeout_s=1.0)
        request = adversary_request(f"{behaviour}-{mode}", max_tokens)
        await backend.aprompt_tokens(request, card)
        return card, request, await backend.complete(request, card)

    try:
        for behaviour in ("honest", "nousage", "overmax"):
            card, request, done = await call(behaviour)
            bill = await settled_bill(adversary, f"{behaviour}-{mode}")
            (charge,) = bill.charges
            assert (done.tokens_in, done.tokens_out) == (charge.prompt_tokens, charge.completion_tokens), behaviour
            assert done.cost_usd == pytest.approx(charge.usd) == pytest.approx(card.usd(done.tokens_in, done.tokens_out))
            assert done.raw.get("usage_counted", False) is (behaviour == "nousage")
        assert done.tokens_out > request.max_tokens  # overmax: reported above max_tokens, returned as billed
        for behaviour in ("negusage", "nanusage", "garbage"):
            with pytest.raises(ProtocolError) as info:
                await call(behaviour)
            assert not info.value.retryable and info.value.billed
        for behaviour, billed in (("err500", False), ("err429", False), ("drop", True), ("hang", True)):
            with pytest.raises(BackendError) as info:
                await call(behaviour)
            assert info.value.retryable and info.value.billed is billed, behaviour
        card, request, done = await call("runaway", 12)
        bill = await settled_bill(adversary, f"runaway-{mode}")
        if stream:  # cut after max_tokens + 1 chunks; the server stopped when the client left
            assert done.raw["stream_cut"] and done.raw["usage_counted"] and done.tokens_out == 13
            assert done.text.count(" ") == 12
            assert 13 <= bill.charges[0].completion_tokens <= 13 + 4 < 20 * 12
        else:  # a plain request cannot be stopped: it is booked as billed, above max_tokens
            assert done.tokens_out == bill.charges[0].completion_tokens == 36
        if stream:  # a reasoning model's runaway thoughts are billed tokens too
            card, request, done = await call("thinker", 12)
            assert done.raw["stream_cut"] and done.tokens_out == 13 and done.text == ""
    finally:
        await backend.aclose()


async def test_litellm_backend_against_every_adversary_behaviour(adversary) -> None:
    from agentroute.errors import ProtocolError

    backend, _, _ = litellm_backend()

    async def call(behaviour: str):
        card = ModelCard(id=behaviour, backend="litellm", model=f"openai/{behaviour}", base_url=adversary.url,
                         input_price=1, output_price=2, timeout_s=1.0)
        request = adversary_request(f"{behaviour}-l")
        await backend.aprompt_tokens(request, card)
        return card, await backend.complete(request, card)

    try:
        for behaviour in ("honest", "nousage", "overmax"):
            card, done = await call(behaviour)
            (charge,) = (await settled_bill(adversary, f"{behaviour}-l")).charges
            assert (done.tokens_in, done.tokens_out) == (charge.prompt_tokens, charge.completion_tokens), behaviour
            assert done.cost_usd == pytest.approx(charge.usd)
            assert done.raw.get("usage_counted", False) is (behaviour == "nousage")
        for behaviour in ("negusage", "nanusage", "garbage"):
            with pytest.raises(ProtocolError):
                await call(behaviour)
        for behaviour, billed in (("err500", False), ("err429", False), ("drop", True), ("hang", True)):
            with pytest.raises(BackendError) as info:
                await call(behaviour)
            assert info.value.retryable and info.value.billed is billed, behaviour
    finally:
        await backend.aclose()


async def test_missing_usage_without_tokenize_is_counted_with_the_byte_bound() -> None:
    from agentroute.pool.backends.counting import byte_bound
    from tests.fixtures_adversary import Adversary

    with Adversary(tokenize=False) as server:
        backend = OpenAIBackend()
        card = ModelCard(id="n", backend="openai", model="nousage", base_url=server.url, input_price=1, output_price=2)
        request = adversary_request("bound")
        done = await backend.complete(request, card)
        (charge,) = server.bill("bound").charges
        await backend.aclose()
    assert done.raw["usage_counted"]
    assert done.tokens_in == byte_bound(request.messages) >= charge.prompt_tokens
    assert done.tokens_out == len(done.text.encode()) >= charge.completion_tokens  # never below the bill


# -- the event stream, read as plain JSON ----------------------------------------------------------
class _SSEServer:
    """Streams one scripted body for every chat request; counts TCP connections."""

    def __init__(self, body: str):
        self.body, self.connections, self.requests = body, set(), 0

    async def handle(self, request):
        from aiohttp import web

        self.requests += 1
        self.connections.add(request.transport.get_extra_info("peername"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(self.body.encode())
        await response.write_eof()
        return response


async def _sse_server(body: str):
    from aiohttp import web

    server = _SSEServer(body)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", server.handle)
    root, runner = await serve_on_loopback(app)
    server.url = f"{root}/v1"
    return server, runner


def _sse_card(url: str) -> ModelCard:
    return ModelCard(id="sse", backend="openai", model="m", base_url=url, input_price=1.0, output_price=1.0, max_tokens=8)


async def test_event_stream_fields_comments_and_split_data_are_read_and_connections_reused() -> None:
    body = (
        ": a comment line\n"
        "event: message\nid: 1\n"
        'data: {"id": "r1", "choices": [{"index": 0,\n'
        'data:  "delta": {"content": "Par"}}]}\n\n'
        'data: {"id": "r1", "choices": [{"index": 0, "delta": {"content": "is"}, "finish_reason": "stop"}]}\n\n'
        'data: {"id": "r1", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}}\n\n'
        "data: [DONE]\n\n"
    )
    server, runner = await _sse_server(body)
    backend = OpenAIBackend()
    try:
        request = CompletionRequest(model="m", messages=[{"role": "user", "content": "capital of France?"}], max_tokens=8)
        for _ in range(3):
            done = await backend.complete(request, _sse_card(server.url))
            assert (done.text, done.tokens_in, done.tokens_out, done.raw["finish_reason"]) == ("Paris", 9, 2, "stop")
        assert server.requests == 3 and len(server.connections) == 1  # read to the end: the connection is reused
    finally:
        await backend.aclose()
        await runner.cleanup()


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ('data: {"error": {"message": "model overloaded", "type": "server_error"}}\n\n', BackendError),
        ('data: {"choices": [{"delta": {"content": "a"}}]}\n\ndata: {not json\n\n', "protocol"),
        ('data: [1, 2]\n\n', "protocol"),
        ('data: {"choices": [{"delta": "text"}]}\n\n', "protocol"),
        ("data: [DONE]\n\n", "protocol"),  # no chunk at all
    ],
)
async def test_errors_inside_an_event_stream_are_backend_or_protocol_errors(body: str, kind) -> None:
    from agentroute.errors import ProtocolError

    server, runner = await _sse_server(body)
    backend = OpenAIBackend()
    try:
        request = CompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=8)
        with pytest.raises(ProtocolError if kind == "protocol" else kind) as err:
            await backend.complete(request, _sse_card(server.url))
        if kind is BackendError:
            assert "model overloaded" in str(err.value) and not isinstance(err.value, ProtocolError)
    finally:
        await backend.aclose()
        await runner.cleanup()

"""``agentroute serve`` as users of OpenAI-compatible servers (vLLM, LiteLLM proxy) use it.

Real HTTP on 127.0.0.1, the real ``openai`` and ``litellm`` clients. Fast tests serve a replay pool
(and, for disconnects, a backend that never answers); ``slow`` ones the real SmolLM2 through the
session's ``openai_server_url`` server; the CLI tests start ``agentroute serve`` as a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from agentroute.errors import BackendError
from agentroute.pool.backends.base import Backend
from agentroute.pool.backends.replay import LoggedOutcome, ReplayBackend
from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool
from agentroute.types import Completion, CompletionRequest
from tests.fixtures_openai_server import SERVER_MODEL
from tests.helpers import NeverAnswers

pytest.importorskip("fastapi")
from agentroute.serve import ServerThread  # noqa: E402

QUESTION, REPLY = "What is the capital of France?", "Paris is the capital of France."
AGENTROUTE = str(Path(sys.executable).with_name("agentroute"))  # the installed console script
CARD = ModelCard(id="replayed", backend="replay", input_price=1.0, output_price=2.0)



class FailsMidStream(Backend):
    """A streaming backend that sends one word, then fails (a provider dropping mid-answer)."""

    name = "fails"

    async def complete(self, request: CompletionRequest, card: ModelCard) -> Completion:
        raise AssertionError("the server streams through stream()")

    async def stream(self, request: CompletionRequest, card: ModelCard) -> AsyncIterator[str | Completion]:
        yield "Hello"
        raise BackendError(card.id, "the provider dropped the stream", retryable=True)


@pytest.fixture(scope="module")
def replay_url() -> Iterator[str]:
    outcome = LoggedOutcome(QUESTION, CARD.backend_model, 1.0, 0.001, REPLY, tokens_in=12, tokens_out=7)
    with ServerThread(ModelPool([CARD], backends={"replay": ReplayBackend([outcome])})) as server:
        yield server.url


def ask(content: object = QUESTION) -> list[dict[str, object]]:
    return [{"role": "user", "content": content}]


def sse_lines(response: httpx.Response) -> list[str]:
    return [line for line in response.iter_lines() if line]


# -- streaming ----------------------------------------------------------------------------------------
def test_stream_sync_client_chunks_usage_and_done(replay_url: str) -> None:
    client = openai.OpenAI(base_url=replay_url, api_key="x", max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model=CARD.id, messages=ask(), stream=True, stream_options={"include_usage": True}
        )
    )
    assert {c.object for c in chunks} == {"chat.completion.chunk"} and len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (12, 7)
    assert all(c.usage is None for c in chunks[:-1])
    with httpx.stream(
        "POST", f"{replay_url}/chat/completions", json={"model": CARD.id, "messages": ask(), "stream": True}
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = sse_lines(r)
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"
    assert "usage" not in json.loads(lines[-2][6:])  # no include_usage: no usage field


async def test_stream_async_client_n_choices(replay_url: str) -> None:
    client = openai.AsyncOpenAI(base_url=replay_url, api_key="x", max_retries=0)
    try:
        stream = await client.chat.completions.create(model=CARD.id, messages=ask(), stream=True, n=3)
        texts = ["", "", ""]
        async for chunk in stream:
            for choice in chunk.choices:
                texts[choice.index] += choice.delta.content or ""
    finally:
        await client.close()
    assert texts == [REPLY] * 3


def test_stream_errors_before_the_first_chunk_are_http_errors(replay_url: str) -> None:
    client = openai.OpenAI(base_url=replay_url, api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="nope", messages=ask(), stream=True)
    assert info.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="no logged outcome"):
        client.chat.completions.create(model=CARD.id, messages=ask("unlogged"), stream=True)


def test_litellm_client_plain_and_streamed(replay_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network
    litellm = pytest.importorskip("litellm")
    common = {"model": f"openai/{CARD.id}", "api_base": replay_url, "api_key": "x", "messages": ask()}
    assert litellm.completion(**common).choices[0].message.content == REPLY
    pieces = [
        c.choices[0].delta.content or "" for c in litellm.completion(**common, stream=True) if c.choices
    ]
    assert "".join(pieces) == REPLY


def test_failures_mid_stream_and_timeouts() -> None:
    cards = [ModelCard(id="fails", backend="fails", input_price=1, output_price=1),
             ModelCard(id="slow", backend="never", input_price=1, output_price=1, timeout_s=0.5)]  # fmt: skip
    pool = ModelPool(cards, backends={"fails": FailsMidStream(), "never": NeverAnswers()})
    with ServerThread(pool) as server:
        client = openai.OpenAI(base_url=server.url, api_key="x", max_retries=0)
        received = []
        with pytest.raises(openai.APIError, match="dropped the stream"):
            for chunk in client.chat.completions.create(model="fails", messages=ask(), stream=True):
                received += [c.delta.content for c in chunk.choices if c.delta.content]
        assert received == ["Hello"]
        for stream in (False, True):
            with pytest.raises(openai.InternalServerError) as info:
                client.chat.completions.create(model="slow", messages=ask(), stream=stream)
            assert info.value.status_code == 503 and info.value.code == "timeout"
        assert client.models.list().data  # still serving


# -- request validation -------------------------------------------------------------------------------
def test_null_optional_fields_take_their_defaults(replay_url: str) -> None:
    body = {"model": CARD.id, "messages": ask(), "temperature": None, "n": None, "max_tokens": None,
            "stream": None, "stop": None, "stream_options": None}  # fmt: skip
    reply = httpx.post(f"{replay_url}/chat/completions", json=body)
    assert reply.status_code == 200, reply.text
    assert [c["message"]["content"] for c in reply.json()["choices"]] == [REPLY]


def test_content_parts_roles_and_bad_input(replay_url: str) -> None:
    client = openai.OpenAI(base_url=replay_url, api_key="x", max_retries=0)
    parts = [{"type": "text", "text": "What is the capital "}, {"type": "text", "text": "of France?"}]
    assert (
        client.chat.completions.create(model=CARD.id, messages=ask(parts)).choices[0].message.content == REPLY
    )
    for bad, param in [({"n": 0}, "n"), ({"max_tokens": -1}, "max_tokens"), ({"temperature": 2.5}, "temperature"),
                       ({"messages": []}, "messages"), ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role")]:  # fmt: skip
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(**{"model": CARD.id, "messages": ask(), **bad})  # type: ignore[call-overload]
        assert info.value.body["param"] == param, bad  # type: ignore[index]
    malformed = httpx.post(
        f"{replay_url}/chat/completions", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.json()["error"] == {"message": "invalid request: the body is not valid JSON",
                                         "type": "invalid_request_error", "param": None, "code": None}  # fmt: skip


def test_models_listing_retrieve_and_unknown_routes(replay_url: str) -> None:
    client = openai.OpenAI(base_url=replay_url, api_key="x", max_retries=0)
    assert [m.id for m in client.models.list()] == [CARD.id]
    assert client.models.retrieve(CARD.id).owned_by == "agentroute:replay"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("nope")
    assert info.value.code == "model_not_found"
    for method, path, status in [("GET", "/nope", 404), ("GET", "/chat/completions", 405)]:
        reply = httpx.request(method, replay_url + path)
        assert reply.status_code == status and reply.json()["error"]["type"] == "invalid_request_error"


def test_twenty_concurrent_requests_stream_and_plain(replay_url: str) -> None:
    async def main() -> list[str]:
        client = openai.AsyncOpenAI(base_url=replay_url, api_key="x", max_retries=0, timeout=30)

        async def one(i: int) -> str:
            if i % 2:
                return (await client.chat.completions.create(model=CARD.id, messages=ask())).choices[
                    0
                ].message.content or ""
            stream = await client.chat.completions.create(model=CARD.id, messages=ask(), stream=True)
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

        try:
            return await asyncio.gather(*(one(i) for i in range(20)))
        finally:
            await client.close()

    assert asyncio.run(main()) == [REPLY] * 20


# -- client disconnects ------------------------------------------------------------------------------
@pytest.mark.parametrize("stream", [False, True])
def test_client_disconnect_cancels_the_backend_call(stream: bool) -> None:
    backend = NeverAnswers()
    pool = ModelPool(
        [ModelCard(id="hangs", backend="never", input_price=1, output_price=1)], backends={"never": backend}
    )
    with ServerThread(pool) as server:
        body = {"model": "hangs", "messages": ask(), "stream": stream}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{server.url}/chat/completions", json=body, timeout=httpx.Timeout(5, read=0.5))
        assert backend.started.is_set()
        assert backend.cancelled.wait(5), "the backend call outlived its client"
        assert httpx.get(server.url.removesuffix("/v1") + "/health").status_code == 200


# -- the real local model (SmolLM2) ------------------------------------------------------------------
@pytest.mark.slow
def test_local_stream_is_token_by_token_and_equals_the_plain_answer(openai_server_url: str) -> None:
    client = openai.OpenAI(base_url=openai_server_url, api_key="x", max_retries=0)
    common = {
        "model": SERVER_MODEL,
        "messages": ask("Name three colors."),
        "max_tokens": 12,
        "temperature": 0,
    }
    plain = client.chat.completions.create(**common)  # type: ignore[call-overload]
    started = time.perf_counter()
    chunks = list(
        client.chat.completions.create(**common, stream=True, stream_options={"include_usage": True})
    )  # type: ignore[call-overload]
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) == plain.choices[0].message.content
    assert 2 < len(pieces) <= 12  # real chunks, never more than one per token
    assert (
        chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    )  # type: ignore[union-attr]
    assert time.perf_counter() - started < 120
    stopped = client.chat.completions.create(**common, stop=[","], stream=True)  # type: ignore[call-overload]
    text = "".join(c.choices[0].delta.content or "" for c in stopped if c.choices)
    assert text == client.chat.completions.create(**common, stop=[","]).choices[0].message.content  # type: ignore[call-overload]
    assert "," not in text


@pytest.mark.slow
def test_local_too_long_prompt_is_a_clear_400(openai_server_url: str) -> None:
    client = openai.OpenAI(base_url=openai_server_url, api_key="x", max_retries=0)
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError, match="exceeds the context window") as refused:
            client.chat.completions.create(
                model=SERVER_MODEL, messages=ask("word " * 10_000), max_tokens=4, stream=stream
            )
        assert refused.value.code == "context_length_exceeded"  # what OpenAI clients look for


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
def test_local_disconnect_stops_the_generation(openai_server_url: str, stream: bool) -> None:
    """A client that leaves a 600-token generation frees the model at once (this greedy story runs
    to the limit: about half a minute of CPU); the next request does not wait for it."""
    body = {"model": SERVER_MODEL, "messages": ask("Write a long story about a dragon."),
            "max_tokens": 600, "temperature": 0, "stream": stream}  # fmt: skip
    with httpx.Client(timeout=httpx.Timeout(30, read=1.0)) as http:
        try:
            with http.stream("POST", f"{openai_server_url}/chat/completions", json=body) as r:
                assert r.status_code == 200
                for i, _ in enumerate(r.iter_lines()):
                    if i == 6:
                        break  # a streaming client that stops reading and closes
        except httpx.ReadTimeout:
            assert not stream
    started = time.perf_counter()
    client = openai.OpenAI(base_url=openai_server_url, api_key="x", max_retries=0)
    assert client.chat.completions.create(model=SERVER_MODEL, messages=ask("Hi"), max_tokens=2).choices
    assert time.perf_counter() - started < 8


@pytest.mark.slow
def test_local_twenty_concurrent_requests(openai_server_url: str) -> None:
    async def main() -> list[str]:
        client = openai.AsyncOpenAI(base_url=openai_server_url, api_key="x", max_retries=0, timeout=120)
        try:
            replies = await asyncio.gather(
                *(
                    client.chat.completions.create(model=SERVER_MODEL, messages=ask(f"Say {i}"), max_tokens=3)
                    for i in range(20)
                )
            )
        finally:
            await client.close()
        return [r.choices[0].message.content or "" for r in replies]

    assert len(asyncio.run(main())) == 20


@pytest.mark.slow
def test_docs_serve_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/serve.md's client example, as written."""
    docs = Path(__file__).resolve().parents[1] / "docs" / "serve.md"
    example = docs.read_text().split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(example, str(docs), "exec"), {})
    printed = capsys.readouterr().out
    assert "['smollm2-135m']" in printed and "cost_usd" in printed and "completion_tokens=" in printed


# -- the CLI -----------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cli(tmp_path: Path | None, port: int, *options: str) -> subprocess.Popen[str]:
    """``agentroute serve`` on ``port``: a replay pool in ``tmp_path``, or (None) the local SmolLM2."""
    command = [AGENTROUTE, "serve", "--port", str(port), *options]
    if tmp_path is not None:
        pool = tmp_path / "pool.yaml"
        pool.write_text(
            "models:\n  - id: echo\n    backend: replay\n    input_price: 1.0\n    output_price: 2.0\n"
        )
        command += ["--pool", str(pool)]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ
    )


def wait_up(process: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError("agentroute serve did not come up")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, -signal.SIGTERM)])
def test_cli_serves_and_stops_cleanly_on_signals(tmp_path: Path, sig: signal.Signals, code: int) -> None:
    port = free_port()
    process = start_cli(tmp_path, port)
    try:
        wait_up(process, port)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        assert [m.id for m in client.models.list()] == ["echo"]
        process.send_signal(sig)
        out = process.communicate(timeout=30)[0]
    finally:
        process.kill()
    assert process.returncode == code and "Traceback" not in out and "shutdown complete" in out
    with socket.socket() as s:  # nothing listens there any more: a restarted server can bind it
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()


@pytest.mark.slow
def test_cli_stop_during_a_long_generation_is_bounded_by_drain(tmp_path: Path) -> None:
    """SIGTERM while SmolLM2 writes 600 tokens (about half a minute): after ``--drain-s`` the request
    is cancelled, the generation stops and the process exits, instead of waiting for the answer."""
    port = free_port()
    process = start_cli(None, port, "--drain-s", "1")
    outcome: list[object] = []
    body = {
        "model": SERVER_MODEL,
        "messages": ask("Write a long story about a dragon."),
        "max_tokens": 600,
        "temperature": 0,
    }

    def call() -> None:
        try:
            outcome.append(httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=120))
        except httpx.TransportError as exc:
            outcome.append(exc)

    try:
        wait_up(process, port)
        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(1.5)
        started = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        out = process.communicate(timeout=60)[0]
        stopped_after = time.perf_counter() - started
        caller.join(30)
    finally:
        process.kill()
    assert outcome and not isinstance(outcome[0], httpx.Response), outcome  # cut off, not answered
    assert stopped_after < 8 and process.returncode == -signal.SIGTERM and "Traceback" not in out, out


def test_cli_port_in_use_fails_at_once(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start_cli(tmp_path, port)
        out = process.communicate(timeout=60)[0]
    assert process.returncode != 0 and f"127.0.0.1:{port}" in out and "in use" in out
    assert "startup complete" not in out  # refused before loading any model


def test_cli_help_names_the_endpoints() -> None:
    out = subprocess.run(
        [AGENTROUTE, "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "/v1/chat/completions" in out and "stream" in out and "--pool" in out

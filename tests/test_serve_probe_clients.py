"""``agentroute serve`` as OpenAI-SDK, LiteLLM and LangChain clients reach it, over an echoing provider.

Real HTTP on 127.0.0.1 on both sides: the server (:class:`ServerThread`) serves ``openai`` and
``litellm`` cards, a ``replay`` card and the ``cheapest`` router; the cards' provider is
:class:`EchoProvider`, a loopback OpenAI-compatible server that answers each request with the
words of its last user message (so two clients' answers cannot be mistaken for each other), reports
usage as it counts it, keeps every request body and notes every stream whose client went away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from agentroute.memory import SQLMemory
from agentroute.pool.backends.replay import LoggedOutcome, ReplayBackend
from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool
from tests.fixtures_reply_server import JSONHandler, LoopbackServer
from tests.fixtures_sdk import close_sdk_clients, litellm_sync_loop, sdk_client  # noqa: F401 (closes the clients sdk_client opens)

pytest.importorskip("fastapi")
from agentroute.serve import ServerThread  # noqa: E402

PRICES = {"input_price": 1.0, "output_price": 2.0}  # USD per 1M tokens on every card


class _Echo(JSONHandler):
    server: EchoProvider
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.chat_body()
        if body is None:
            return
        words = [m["content"] for m in body["messages"] if m["role"] == "user"][-1].split()
        prompt = sum(len(m["content"].split()) for m in body["messages"])  # this provider's "tokens"
        slow = str(body["model"]).startswith("slow")
        pieces = [f" {w}" for w in words] * (200 if slow else 1)
        usage = {"prompt_tokens": prompt, "completion_tokens": len(pieces), "total_tokens": prompt + len(pieces)}
        base = {"id": "echo", "created": 0, "model": body["model"]}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(pieces)}
            reply = {**base, "object": "chat.completion", "usage": usage,
                     "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}  # fmt: skip
            return self.send_json(200, reply)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        sent = 0

        def event(choices: list[Any], **more: Any) -> None:
            self.send_event({**base, "object": "chat.completion.chunk", "choices": choices, **more})

        try:
            event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
            for piece in pieces:
                if slow:
                    time.sleep(0.02)
                event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
                sent += 1
            event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
            event([], usage=usage)
            self.send_event("[DONE]")
        except (BrokenPipeError, ConnectionResetError):  # the client (the agentroute server) went away
            self.server.abandoned.append(sent)


class _DropsFirst(_Echo):
    """The first ``server.drops`` calls: a stream whose connection closes after one piece of text,
    with no ``finish_reason`` and no ``[DONE]`` (HTTP/1.0 framing: the body ends when the
    connection does, so the client sees an ordinary end of body); then as :class:`_Echo`."""

    protocol_version = "HTTP/1.0"

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        if self.server.drops <= 0 or self.path.rstrip("/").endswith("/tokenize"):
            return super().do_POST()
        self.server.drops -= 1
        self.chat_body()
        self.start_events()
        piece = {"id": "cut", "object": "chat.completion.chunk", "created": 0, "model": "m",
                 "choices": [{"index": 0, "delta": {"role": "assistant", "content": " half"}, "finish_reason": None}]}  # fmt: skip
        if self.server.usage_each:  # as servers that report the usage so far on every chunk
            piece["usage"] = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
        self.send_event(piece)


class EchoProvider(LoopbackServer):
    """``with EchoProvider() as provider: provider.url``; a model named ``slow…`` streams its
    answer 200 times over, a piece every 20 ms (a long answer a client may walk away from)."""

    def __init__(self, handler: type[_Echo] = _Echo) -> None:
        super().__init__(handler)
        self.drops, self.usage_each = 0, False  # for _DropsFirst
        self.abandoned: list[int] = []  # pieces sent before each stream's client left


def cards(url: str) -> list[ModelCard]:
    return [
        ModelCard(id="echo", backend="openai", model="echo", base_url=url, max_tokens=64, timeout_s=30, **PRICES),
        ModelCard(id="lite", backend="litellm", model="openai/echo", base_url=url, max_tokens=64, timeout_s=30, **PRICES),
        ModelCard(id="logged", backend="replay", max_tokens=64, **PRICES),
    ]


def replay() -> ReplayBackend:
    return ReplayBackend([LoggedOutcome("q", "logged", 1.0, 0.0001, "logged answer")])


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[ServerThread, EchoProvider]]:
    with EchoProvider() as provider:
        pool = ModelPool(cards(provider.url), {"replay": replay()})
        with ServerThread(pool, router="cheapest", budget={"usd": 1.0}) as server:
            yield server, provider


def sdk(server: ServerThread, **kwargs: Any) -> openai.OpenAI:
    return sdk_client(server.url, **kwargs)


def ask(text: str = "alpha beta gamma") -> list[Any]:
    return [{"role": "user", "content": text}]


def billed(usage: Any) -> float:
    """What the cards' prices make of a reply's usage."""
    return (usage.prompt_tokens * PRICES["input_price"] + usage.completion_tokens * PRICES["output_price"]) / 1e6


# -- reasoning_effort and seed: honoured where the provider takes them, never silently dropped --------------
@pytest.mark.parametrize("model", ["echo", "lite"])
@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_effort_and_seed_reach_an_openai_or_litellm_cards_provider(
    served: tuple[ServerThread, EchoProvider], model: str, stream: bool
) -> None:
    """Before: the server dropped both (the provider got neither); the answer of a reasoning model
    was then made at its default effort, whatever the client asked."""
    server, provider = served
    # LiteLLM refuses verbosity for a model it does not know as GPT-5's: the litellm test below
    verbosity = {"verbosity": "high"} if model == "echo" else {}
    reply = sdk(server).chat.completions.create(
        model=model, messages=ask(), reasoning_effort="low", seed=7, stream=stream, **verbosity  # type: ignore[arg-type]
    )  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in reply if c.choices) if stream else reply.choices[0].message.content  # type: ignore[union-attr]
    assert text == " alpha beta gamma"
    sent = provider.requests[-1]
    assert (sent.get("reasoning_effort"), sent.get("verbosity"), sent.get("seed")) == ("low", verbosity.get("verbosity"), 7)


@pytest.mark.parametrize("field", ["reasoning_effort", "verbosity"])
@pytest.mark.parametrize("model", ["router", "logged"])
def test_reasoning_effort_is_refused_where_no_provider_would_get_it(
    served: tuple[ServerThread, EchoProvider], model: str, field: str
) -> None:
    """Before: a 200 answered at the default effort (or verbosity). Now a 400 naming the field,
    before any call; ``seed`` (a hint) is still accepted there."""
    server, provider = served
    calls = len(provider.requests)
    with pytest.raises(openai.BadRequestError) as info:
        sdk(server).chat.completions.create(model=model, messages=ask("q"), **{field: "high"})  # type: ignore[call-overload]
    assert (info.value.code, info.value.param) == ("unsupported_parameter", field)
    assert "name such a card as the model" in info.value.message
    assert len(provider.requests) == calls
    extra = {"extra_body": {"agentroute": {"query_id": "q"}}} if model == "router" else {}
    assert sdk(server).chat.completions.create(model=model, messages=ask("q"), seed=7, **extra).choices[0].message.content  # type: ignore[call-overload]


@pytest.mark.parametrize("stream", [False, True])
def test_n_seeded_choices_are_drawn_with_seeds_that_differ(served: tuple[ServerThread, EchoProvider], stream: bool) -> None:
    """Each choice is its own provider call: one seed for all would draw the same answer ``n``
    times (OpenAI's ``n`` with a seed gives different choices). Choice ``i`` gets ``seed + i``."""
    server, provider = served
    reply = sdk(server).chat.completions.create(model="echo", messages=ask(), n=3, seed=7, stream=stream)
    if stream:
        list(reply)  # type: ignore[call-overload]
    assert sorted(sent["seed"] for sent in provider.requests[-3:]) == [7, 8, 9]


def test_a_seed_that_is_not_an_integer_is_a_400_naming_it(served: tuple[ServerThread, EchoProvider]) -> None:
    server, provider = served
    calls = len(provider.requests)
    with pytest.raises(openai.BadRequestError) as info:
        sdk(server).chat.completions.create(model="echo", messages=ask(), extra_body={"seed": "seven"})
    assert info.value.param == "seed" and len(provider.requests) == calls


def test_langchain_and_litellm_clients_reasoning_effort_reaches_the_provider(
    served: tuple[ServerThread, EchoProvider], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As users configure them: ``ChatOpenAI(reasoning_effort=...)`` and ``litellm.completion(...,
    reasoning_effort=...)`` pointed at the server."""
    langchain_openai = pytest.importorskip("langchain_openai")
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    litellm = pytest.importorskip("litellm")
    server, provider = served
    llm = langchain_openai.ChatOpenAI(model="echo", base_url=server.url, api_key="x", max_retries=0, reasoning_effort="medium")
    assert llm.invoke("alpha beta").content == " alpha beta"
    assert provider.requests[-1].get("reasoning_effort") == "medium"
    with litellm_sync_loop():
        reply = litellm.completion(model="openai/echo", api_base=server.url, api_key="x", messages=ask("alpha"), reasoning_effort="high")
    assert reply.choices[0].message.content == " alpha" and provider.requests[-1].get("reasoning_effort") == "high"
    routed = langchain_openai.ChatOpenAI(model="router", base_url=server.url, api_key="x", max_retries=0, reasoning_effort="medium")
    with pytest.raises(openai.BadRequestError) as info:
        routed.invoke("alpha beta")
    assert info.value.param == "reasoning_effort"


# -- usage is what was billed ----------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["echo", "lite"])
@pytest.mark.parametrize("stream", [False, True])
def test_n_choices_report_every_prompt_they_were_billed(
    served: tuple[ServerThread, EchoProvider], model: str, stream: bool
) -> None:
    """Each of ``n`` choices is its own provider call, billed its prompt. Before: ``usage`` counted
    the prompt once, so ``cost_usd`` was more than the usage priced (here 3 prompts billed, 1 shown)."""
    server, provider = served
    create = sdk(server).chat.completions.create
    if stream:
        chunks = list(create(model=model, messages=ask(), n=3, stream=True, stream_options={"include_usage": True}))
        texts = ["".join(c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].index == i) for i in range(3)]
        usage, extension = chunks[-1].usage, chunks[-1].model_extra["agentroute"]  # type: ignore[index]
    else:
        reply = create(model=model, messages=ask(), n=3)
        texts = [c.message.content or "" for c in reply.choices]
        usage, extension = reply.usage, reply.model_extra["agentroute"]  # type: ignore[index]
    assert texts == [" alpha beta gamma"] * 3
    prompts = [sum(len(m["content"].split()) for m in sent["messages"]) for sent in provider.requests[-3:]]
    assert usage is not None and usage.prompt_tokens == sum(prompts) == 9 and usage.completion_tokens == 9
    assert extension["cost_usd"] == pytest.approx(billed(usage))


def test_the_routed_streams_usage_chunk_is_what_the_ledger_charged(tmp_path: Path) -> None:
    with EchoProvider() as provider, SQLMemory(f"sqlite:///{tmp_path}/memory.db") as memory:
        with ServerThread(ModelPool(cards(provider.url)[:1]), router="cheapest", memory=memory, budget={"usd": 1.0}) as server:
            chunks = list(sdk(server).chat.completions.create(
                model="router", messages=ask(), stream=True, stream_options={"include_usage": True}
            ))  # fmt: skip
        [trajectory] = memory.trajectories()
    usage, extension = chunks[-1].usage, chunks[-1].model_extra["agentroute"]  # type: ignore[index]
    assert usage is not None and [s.tokens_in for s in trajectory.steps] == [usage.prompt_tokens]
    assert trajectory.task.cost_usd == pytest.approx(extension["cost_usd"]) == pytest.approx(billed(usage))


# -- request fields as the provider gets them -------------------------------------------------------------
def test_stop_and_max_completion_tokens_reach_a_cards_provider(served: tuple[ServerThread, EchoProvider]) -> None:
    server, provider = served
    create = sdk(server).chat.completions.create
    create(model="echo", messages=ask(), stop="gamma", max_tokens=50, max_completion_tokens=5)
    sent = provider.requests[-1]
    assert sent["stop"] == ["gamma"] and sent["max_tokens"] == 5  # max_completion_tokens wins, as on OpenAI's API
    create(model="lite", messages=ask(), stop=["beta", "gamma"], max_completion_tokens=6)
    sent = provider.requests[-1]
    assert sent["stop"] == ["beta", "gamma"] and (sent.get("max_completion_tokens") or sent.get("max_tokens")) == 6


def test_models_lists_the_router_then_every_card_of_the_pool(served: tuple[ServerThread, EchoProvider]) -> None:
    server, _ = served
    listed = {m.id: m.owned_by for m in sdk(server).models.list()}
    assert listed == {"router": "agentroute:router", "router:cheapest": "agentroute:router", "echo": "agentroute:openai",
                      "lite": "agentroute:litellm", "logged": "agentroute:replay"}  # fmt: skip


# -- many clients, clients that leave ---------------------------------------------------------------------
def test_fifty_concurrent_clients_get_their_own_answers_and_usage_that_matches_the_bill(tmp_path: Path) -> None:
    """Cards and the router, plain and streamed, sync and async clients at once: each answer echoes
    its own question, and each reply's usage priced is its cost (the router's: its task's)."""
    with EchoProvider() as provider, SQLMemory(f"sqlite:///{tmp_path}/memory.db") as memory:
        pool = ModelPool(cards(provider.url)[:2])
        with ServerThread(pool, router="cheapest", memory=memory, budget={"usd": 1.0}) as server:

            async def main() -> list[tuple[int, str, Any, dict[str, Any]]]:
                client = openai.AsyncOpenAI(base_url=server.url, api_key="x", max_retries=0, timeout=60)
                sync = sdk(server, timeout=60)

                async def one(i: int) -> tuple[int, str, Any, dict[str, Any]]:
                    model, messages = ("echo", "lite", "router")[i % 3], ask(f"w{i}a w{i}b w{i}c")
                    if i % 5 == 0:  # a sync client, from a thread
                        reply = await asyncio.to_thread(sync.chat.completions.create, model=model, messages=messages)
                        return i, reply.choices[0].message.content or "", reply.usage, reply.model_extra["agentroute"]  # type: ignore[index]
                    if i % 2:
                        reply = await client.chat.completions.create(model=model, messages=messages)
                        return i, reply.choices[0].message.content or "", reply.usage, reply.model_extra["agentroute"]  # type: ignore[index]
                    stream = await client.chat.completions.create(
                        model=model, messages=messages, stream=True, stream_options={"include_usage": True}
                    )
                    chunks = [c async for c in stream]
                    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                    return i, text, chunks[-1].usage, chunks[-1].model_extra["agentroute"]  # type: ignore[index]

                try:
                    return await asyncio.gather(*(one(i) for i in range(50)))
                finally:
                    await client.close()
                    sync.close()

            answers = asyncio.run(main())
        tasks = {t.task.id: t.task for t in memory.trajectories()}
    assert [text for _, text, _, _ in answers] == [f" w{i}a w{i}b w{i}c" for i in range(50)]
    assert all(ext["cost_usd"] == pytest.approx(billed(usage)) for _, _, usage, ext in answers)
    routed = [ext for i, _, _, ext in answers if i % 3 == 2]
    assert len(tasks) == len(routed) == 16 and {t.status for t in tasks.values()} == {"done"}
    assert all(tasks[ext["task_id"]].cost_usd == pytest.approx(ext["cost_usd"]) for ext in routed)
    assert len(provider.requests) == 50


@pytest.mark.parametrize("model", ["slow", "router"])
def test_a_client_that_leaves_mid_stream_stops_the_provider_and_the_task_is_settled(tmp_path: Path, model: str) -> None:
    """The provider's stream is closed within a moment of the client's leaving (it had sent a
    fraction of its 600 pieces), and a routed task is kept ``interrupted`` with the call's charge."""
    with EchoProvider() as provider, SQLMemory(f"sqlite:///{tmp_path}/memory.db") as memory:
        card = ModelCard(id="slow", backend="openai", model="slow", base_url=provider.url, max_tokens=1000, timeout_s=30, **PRICES)
        with ServerThread(ModelPool([card]), router="cheapest", memory=memory, budget={"usd": 1.0}) as server:
            stream = sdk(server).chat.completions.create(model=model, messages=ask(), stream=True)
            pieces = 0
            for chunk in stream:
                pieces += bool(chunk.choices and chunk.choices[0].delta.content)
                if pieces == 5:
                    break
            stream.close()
            deadline = time.monotonic() + 10
            while not provider.abandoned and time.monotonic() < deadline:
                time.sleep(0.02)
            assert provider.abandoned and provider.abandoned[0] < 300, "the provider's stream outlived its client"
        trajectories = memory.trajectories()
    if model == "router":
        [trajectory] = trajectories
        [step] = trajectory.steps
        assert trajectory.task.status == "interrupted" and step.error == "cancelled"
        assert trajectory.task.cost_usd == pytest.approx(step.cost_usd) and step.cost_usd > 0
    else:
        assert trajectories == []


def test_docs_reasoning_effort_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/serve.md's "Passed to the provider" example, as written, with the echo provider as its vLLM."""
    docs = Path(__file__).resolve().parents[1] / "docs" / "serve.md"
    example = docs.read_text().split("## Passed to the provider", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    with EchoProvider() as provider:
        exec(compile(example.replace("http://127.0.0.1:8001/v1", provider.url), str(docs), "exec"), {})
    assert capsys.readouterr().out.splitlines() == [" Is 91 prime?", " Is 91 prime?"]
    sent, routed = provider.requests  # the card's call, then the routed one: both carry the fields
    assert (sent["model"], sent["reasoning_effort"], sent["seed"], sent["max_tokens"]) == ("Qwen/Qwen3-0.6B", "low", 7, 512)
    assert (routed["model"], routed["reasoning_effort"], routed["seed"]) == ("Qwen/Qwen3-0.6B", "low", 7)


@pytest.mark.parametrize("stream", [False, True])
def test_a_card_on_openais_endpoint_caps_the_answer_with_max_completion_tokens(
    monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    """OpenAI's reasoning models (o1, o3, o4-mini, gpt-5) refuse ``max_tokens`` with a 400 ("Use
    'max_completion_tokens' instead"): before, every call of such a card failed, with or without a
    reasoning effort. The card names OpenAI's host; an HTTP proxy on loopback (``HTTP_PROXY``, as
    a corporate gateway) answers for it here."""
    with EchoProvider() as provider:
        monkeypatch.setenv("HTTP_PROXY", provider.url.removesuffix("/v1"))
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # our own server and clients stay direct
        for name in ("http_proxy", "no_proxy"):  # the lower-case forms win where both are set
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        card = ModelCard(
            id="o4", backend="openai", model="o4-mini", base_url="http://api.openai.com/v1", max_tokens=64, timeout_s=30, **PRICES
        )
        with ServerThread(ModelPool([card])) as server:
            reply = sdk(server).chat.completions.create(
                model="o4", messages=ask(), reasoning_effort="low", max_completion_tokens=40, stream=stream
            )  # fmt: skip
            if stream:
                assert "".join(c.choices[0].delta.content or "" for c in reply if c.choices) == " alpha beta gamma"  # type: ignore[union-attr]
        [sent] = provider.requests
    assert sent["max_completion_tokens"] == 40 and "max_tokens" not in sent and sent["reasoning_effort"] == "low"


def test_a_card_without_base_url_follows_openai_base_url_to_another_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """A card without ``base_url`` goes where the OpenAI SDK sends it: ``$OPENAI_BASE_URL`` (a vLLM
    or Ollama server). Before, such a card counted as OpenAI's endpoint: tiktoken counts for a model
    with another tokenizer (below the truth on CJK text: a budget could be overrun) and
    ``max_completion_tokens``, which older servers ignore. Now it is an ordinary server's card."""
    with EchoProvider() as provider:
        monkeypatch.setenv("OPENAI_BASE_URL", provider.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        card = ModelCard(id="qwen", backend="openai", model="Qwen/Qwen3-0.6B", max_tokens=64, timeout_s=30, **PRICES)
        with ServerThread(ModelPool([card])) as server:
            sdk(server).chat.completions.create(model="qwen", messages=ask(), max_tokens=40)
        [sent] = provider.requests
    assert sent["max_tokens"] == 40 and "max_completion_tokens" not in sent


def test_the_cli_server_passes_reasoning_effort_to_a_pool_files_openai_card(tmp_path: Path) -> None:
    """``agentroute serve --pool pool.yaml --router cheapest`` in a subprocess, as a user runs it."""
    import signal
    import subprocess

    from tests.test_serve_user_paths import AGENTROUTE, free_port, wait_up

    with EchoProvider() as provider:
        pool = tmp_path / "pool.yaml"
        pool.write_text(
            f"models:\n  - id: qwen3\n    backend: openai\n    model: Qwen/Qwen3-0.6B\n    base_url: {provider.url}\n"
            "    input_price: 0.1\n    output_price: 0.4\n"
        )
        port = free_port()
        command = [AGENTROUTE, "serve", "--pool", str(pool), "--port", str(port), "--router", "cheapest",
                   "--memory", f"sqlite:///{tmp_path}/memory.db"]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_up(process, port)
            client = sdk_client(f"http://127.0.0.1:{port}/v1")
            reply = client.chat.completions.create(model="qwen3", messages=ask(), reasoning_effort="high", seed=1)
            routed = client.chat.completions.create(model="router", messages=ask(), reasoning_effort="medium")
            process.send_signal(signal.SIGINT)
            out = process.communicate(timeout=30)[0]
        finally:
            process.kill()
    assert reply.choices[0].message.content == " alpha beta gamma" and routed.choices[0].message.content
    sent, sent_routed = provider.requests  # the router over an openai-only pool passes it on too
    assert (sent["reasoning_effort"], sent["seed"]) == ("high", 1) and "Traceback" not in out
    assert sent_routed["reasoning_effort"] == "medium" and "seed" not in sent_routed


@pytest.mark.parametrize("model", ["echo", "lite", "router"])
@pytest.mark.parametrize("stream", [False, True])
def test_a_stream_the_provider_drops_midway_is_no_answer(tmp_path: Path, model: str, stream: bool) -> None:
    """A provider stream that ends without ``[DONE]`` and without a ``finish_reason`` was cut (the
    connection dropped). Before: its first piece (" half") was the whole answer, ``finish_reason``
    "stop", on a card as on the router. Now it is a retryable failure: a card's plain request is a
    503 (the SDK retries those) and the router's dispatcher retries it and answers in full. Streamed,
    " half" has already reached the client: the stream ends with an error event instead of a
    ``finish_reason`` (the router's task is ``interrupted``: no answer is spliced onto another)."""
    with EchoProvider(_DropsFirst) as provider, SQLMemory(f"sqlite:///{tmp_path}/memory.db") as memory:
        provider.drops = 1
        pool = ModelPool(cards(provider.url)[:2])
        with ServerThread(pool, router="cheapest", memory=memory, budget={"usd": 1.0}) as server:
            create = sdk(server).chat.completions.create
            if stream:
                texts: list[str] = []
                with pytest.raises(openai.APIError) as info:
                    for chunk in create(model=model, messages=ask(), stream=True):
                        texts += [chunk.choices[0].delta.content or ""] if chunk.choices else []
                        assert not (chunk.choices and chunk.choices[0].finish_reason), "a cut answer was finished"
                assert "".join(texts) == " half" and "dropped midway" in info.value.message
            elif model == "router":
                assert create(model=model, messages=ask()).choices[0].message.content == " alpha beta gamma"
            else:
                with pytest.raises(openai.InternalServerError) as info:
                    create(model=model, messages=ask())
                assert info.value.status_code == 503 and "dropped midway" in info.value.message
            if model != "router" or stream:  # the client sends it again
                assert create(model=model, messages=ask()).choices[0].message.content == " alpha beta gamma"
        tasks = [t.task for t in memory.trajectories()]
    assert len(provider.requests) == 2
    if model == "router":
        assert [(t.status, t.answer) for t in tasks][-1] == ("done", " alpha beta gamma")
        assert tasks[0].status == ("interrupted" if stream else "done")


def test_a_routed_request_without_an_answer_says_its_task_and_is_not_retried_by_the_sdk(tmp_path: Path) -> None:
    """What docs/serve.md promises of a 402: ``x-should-retry: false`` (the SDK, with its default
    2 retries, sends it once: a ``calls=1`` request makes one provider call, however it goes) and
    ``x-agentroute-task-id`` naming the task in the memory; nothing is called when nothing is affordable."""
    with EchoProvider(_DropsFirst) as provider, SQLMemory(f"sqlite:///{tmp_path}/memory.db") as memory:
        provider.drops = 10
        with ServerThread(ModelPool(cards(provider.url)[:1]), router="cheapest", memory=memory) as server:
            client = sdk_client(server.url, max_retries=openai.DEFAULT_MAX_RETRIES)  # the SDK's default retries
            errors = []
            for budget in ({"usd": 1e-9}, {"calls": 1}):
                with pytest.raises(openai.APIStatusError) as info:
                    client.chat.completions.create(model="router", messages=ask(), extra_body={"agentroute": {"budget": budget}})
                errors.append(info.value)
                assert len(provider.requests) == (0 if "usd" in budget else 1)
        tasks = {t.task.id: t.task for t in memory.trajectories()}
    assert len(tasks) == 2
    for error in errors:
        assert (error.status_code, error.code, error.response.headers["x-should-retry"]) == (402, "budget_exhausted", "false")
        assert tasks[error.response.headers["x-agentroute-task-id"]].status == "budget_exhausted"
    assert "dropped midway" in errors[1].message  # the last error is told


def test_a_litellm_card_whose_model_has_no_reasoning_effort_is_a_400_before_any_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """LiteLLM knows ``gpt-4o-mini`` takes no reasoning effort and refuses it: the client gets that
    as a 400 (not retried), and no provider is called; LiteLLM's own o-series mapping sends
    ``max_completion_tokens``."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    pytest.importorskip("litellm")
    with EchoProvider() as own:
        pool = ModelPool([ModelCard(id=m, backend="litellm", model=f"openai/{m}", base_url=own.url, max_tokens=64, **PRICES)
                          for m in ("gpt-4o-mini", "o4-mini", "gpt-5")])  # fmt: skip
        with ServerThread(pool) as other:
            for field in ("reasoning_effort", "verbosity"):
                with pytest.raises(openai.BadRequestError) as info:
                    sdk(other).chat.completions.create(model="gpt-4o-mini", messages=ask(), **{field: "low"})  # type: ignore[call-overload]
                assert field in info.value.message and own.requests == []
            sdk(other).chat.completions.create(model="o4-mini", messages=ask(), reasoning_effort="low", max_completion_tokens=20)
            sdk(other).chat.completions.create(model="gpt-5", messages=ask(), verbosity="low")
    [effort, verbose] = own.requests
    assert (effort["reasoning_effort"], effort["max_completion_tokens"], verbose["verbosity"]) == ("low", 20, "low")


@pytest.mark.slow
def test_the_local_model_refuses_a_reasoning_effort_and_answers_with_a_seed(openai_server_url: str) -> None:
    """The real SmolLM2 (``backend: local``): it has no reasoning effort to set (a 400 before any
    generation, naming the card and its backend); a seed is a hint it does not need at temperature 0."""
    from tests.fixtures_openai_server import SERVER_MODEL

    client = sdk_client(openai_server_url)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=SERVER_MODEL, messages=ask("Name a fruit."), reasoning_effort="low")
    assert info.value.param == "reasoning_effort" and f"model '{SERVER_MODEL}' (backend local)" in info.value.message
    reply = client.chat.completions.create(model=SERVER_MODEL, messages=ask("Name a fruit."), seed=3, max_tokens=8, temperature=0)
    assert reply.choices[0].message.content and reply.usage is not None and reply.usage.completion_tokens > 0


def test_a_dropped_stream_whose_chunks_each_carry_usage_is_still_no_answer() -> None:
    """Usage on a chunk that has choices is no end of stream (only OpenAI's closing usage chunk,
    with no choices, is): the cut answer is a 503, not " half"."""
    with EchoProvider(_DropsFirst) as provider:
        provider.drops, provider.usage_each = 1, True
        with ServerThread(ModelPool(cards(provider.url)[:1])) as server:
            with pytest.raises(openai.InternalServerError) as info:
                sdk(server).chat.completions.create(model="echo", messages=ask())
    assert "dropped midway" in info.value.message

"""Request fields through ``agentroute serve``: JSON modes, log probabilities, reasoning text, seeds.

The real ``openai`` client talks to :class:`ServerThread`, whose ``openai`` cards call a small
OpenAI-compatible upstream on loopback (below) that keeps every request it gets, refuses a seed
outside the signed 64-bit range (as vLLM does), and answers with ``reasoning_content`` and, when
asked, ``logprobs``, plain or streamed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

from agentroute.pool.card import ModelCard  # noqa: E402
from agentroute.pool.pool import ModelPool  # noqa: E402
from agentroute.serve import ServerThread  # noqa: E402
from tests.fixtures_reply_server import JSONHandler, LoopbackServer  # noqa: E402

ANSWER = ["Par", "is"]
JSON_ANSWER = ['{"name": ', '"Paris"}']  # the answer when a JSON response_format is asked for
THOUGHT = ["Let me ", "think."]
ASK = [{"role": "user", "content": "Capital of France?"}]
INT64 = 2**63


def _logprob(token: str) -> dict[str, Any]:
    return {"token": token, "logprob": -0.5, "bytes": list(token.encode()), "top_logprobs": []}


class _Upstream(JSONHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.chat_body()
        if body is None:
            return
        seed = body.get("seed")
        if seed is not None and not -INT64 <= seed < INT64:  # vLLM: seed within torch.long
            return self.send_json(400, {"error": {"message": f"seed {seed} out of range", "type": "BadRequestError",
                                                  "param": "seed", "code": 400}})  # fmt: skip
        thinks = str(body.get("model")).startswith("reasoner")
        logprobs = bool(body.get("logprobs"))
        answer = JSON_ANSWER if (body.get("response_format") or {}).get("type", "text") != "text" else ANSWER
        usage = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
        base = {"id": "u1", "created": 0, "model": body.get("model")}
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": "".join(answer)}
            if thinks:
                message["reasoning_content"] = "".join(THOUGHT)
            lp = {"content": [_logprob(t) for t in answer]} if logprobs else None
            choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": lp}
            return self.send_json(200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage})
        self.start_events()

        def event(delta: dict[str, Any], finish: str | None = None, lp: Any = None, use: Any = None) -> None:
            choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": lp}]
            self.send_event({**base, "object": "chat.completion.chunk", "choices": choices, "usage": use})

        event({"role": "assistant", "content": ""})
        for piece in THOUGHT if thinks else []:
            event({"reasoning_content": piece})
        for piece in answer:
            event({"content": piece}, lp={"content": [_logprob(piece)]} if logprobs else None)
        event({}, "stop")
        event(None, use=usage)  # type: ignore[arg-type]
        self.send_event("[DONE]")


class Upstream(LoopbackServer):
    """The upstream described above: ``with Upstream() as server: server.url``."""

    def __init__(self) -> None:
        super().__init__(_Upstream)


def _card(id: str, url: str, backend: str = "openai") -> ModelCard:
    return ModelCard(id=id, backend=backend, model=id, base_url=url, input_price=1.0, output_price=2.0,
                     max_tokens=16, timeout_s=30)  # fmt: skip


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


@pytest.fixture(scope="module")
def served(upstream: Upstream) -> Iterator[ServerThread]:
    pool = ModelPool([_card("plain", upstream.url), _card("reasoner", upstream.url)])
    with ServerThread(pool, router="cheapest", budget={"usd": 1.0}) as server:
        yield server


def client(server: ServerThread) -> Any:
    return openai.OpenAI(base_url=server.url, api_key="x", max_retries=0)


SCHEMA = {"type": "json_schema", "json_schema": {"name": "city", "schema": {"type": "object"}}}


@pytest.mark.parametrize("stream", [False, True])
def test_json_mode_and_logprobs_reach_an_openai_card_and_come_back(served: ServerThread, upstream: Upstream, stream: bool) -> None:
    """Before: a 400 (``response_format: only {"type": "text"}``, ``logprobs are not returned``) even
    for a card whose provider honours them; now they reach it and its log probabilities come back."""
    made = client(served).chat.completions.create(
        model="plain", messages=ASK, response_format=SCHEMA, logprobs=True, top_logprobs=2, stream=stream
    )
    sent = upstream.requests[-1]
    assert (sent["response_format"], sent["logprobs"], sent["top_logprobs"]) == (SCHEMA, True, 2)
    if stream:
        chunks = list(made)
        tokens = [t.token for c in chunks for ch in c.choices if ch.logprobs for t in ch.logprobs.content]
        text = "".join(ch.delta.content or "" for c in chunks for ch in c.choices)
    else:
        tokens, text = [t.token for t in made.choices[0].logprobs.content], made.choices[0].message.content
    assert tokens == JSON_ANSWER and json.loads(text) == {"name": "Paris"}


def test_without_logprobs_none_come_back(served: ServerThread, upstream: Upstream) -> None:
    made = client(served).chat.completions.create(model="plain", messages=ASK, response_format={"type": "text"})
    assert made.choices[0].logprobs is None and "response_format" not in upstream.requests[-1]


def test_a_card_whose_backend_cannot_honour_them_is_a_400(upstream: Upstream) -> None:
    """A local card (no provider fields) and the router over a pool holding one: a 400 naming the
    field and the card, before any call."""
    pool = ModelPool([_card("plain", upstream.url), ModelCard(id="tiny", backend="local", model="x.gguf", price_per_second=0.001)])
    with ServerThread(pool, router="cheapest", budget={"usd": 1.0}, preload=False) as server:
        calls = len(upstream.requests)
        for model, fields in [("tiny", {"logprobs": True}), ("router", {"response_format": SCHEMA}),
                              ("router", {"reasoning_effort": "low"})]:  # fmt: skip
            with pytest.raises(openai.BadRequestError) as info:
                client(server).chat.completions.create(model=model, messages=ASK, **fields)
            assert info.value.param == next(iter(fields)) and "'tiny'" in info.value.message
        assert len(upstream.requests) == calls


def test_a_routed_request_carries_its_provider_fields(served: ServerThread, upstream: Upstream) -> None:
    """Before: ``reasoning_effort`` on the router was a 400 and ``seed`` was dropped; now the routed
    call carries them (and ``response_format``)."""
    made = client(served).chat.completions.create(
        model="router", messages=ASK, reasoning_effort="low", seed=11, response_format={"type": "json_object"}
    )
    sent = upstream.requests[-1]
    assert (sent["reasoning_effort"], sent["seed"], sent["response_format"]) == ("low", 11, {"type": "json_object"})
    assert json.loads(made.choices[0].message.content) == {"name": "Paris"}


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_content_comes_back(served: ServerThread, stream: bool) -> None:
    """Before: an upstream reasoning model's ``reasoning_content`` was dropped; now it is returned
    (streamed as ``reasoning_content`` deltas before the answer)."""
    made = client(served).chat.completions.create(model="reasoner", messages=ASK, stream=stream)
    if stream:
        deltas = [ch.delta for c in made for ch in c.choices]
        thought = [d.model_extra.get("reasoning_content") for d in deltas if (d.model_extra or {}).get("reasoning_content")]
        assert thought == THOUGHT and "".join(d.content or "" for d in deltas) == "".join(ANSWER)
    else:
        message = made.choices[0].message
        assert message.model_extra["reasoning_content"] == "".join(THOUGHT) and message.content == "".join(ANSWER)


@pytest.mark.parametrize("seed", [INT64 - 1, -INT64])
def test_n_choices_seeds_stay_in_the_int64_range(served: ServerThread, upstream: Upstream, seed: int) -> None:
    """Before: ``seed + i`` went past 2**63-1, and the upstream refused choice 1 (a 400 to the client)."""
    calls = len(upstream.requests)
    made = client(served).chat.completions.create(model="plain", messages=ASK, n=3, seed=seed)
    seeds = sorted(r["seed"] for r in upstream.requests[calls:])
    assert len(made.choices) == 3 and len(set(seeds)) == 3 and all(-INT64 <= s < INT64 for s in seeds)
    assert seed in seeds


def test_a_seed_outside_int64_is_a_400_naming_it(served: ServerThread) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client(served).chat.completions.create(model="plain", messages=ASK, seed=INT64)
    assert info.value.param == "seed"


def test_a_litellm_card_passes_them_on_and_returns_logprobs_and_reasoning(upstream: Upstream, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same path through LiteLLM (``openai/`` provider): the fields reach the upstream, and its
    log probabilities and reasoning text come back."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # its import fetches no remote price table (seconds)
    pytest.importorskip("litellm")
    pool = ModelPool([_card("lite", upstream.url, "litellm").model_copy(update={"model": "openai/reasoner"})])
    with ServerThread(pool, preload=False) as server:
        made = client(server).chat.completions.create(
            model="lite", messages=ASK, response_format=SCHEMA, logprobs=True, reasoning_effort="low"
        )
        sent = upstream.requests[-1]
        assert (sent["response_format"], sent["logprobs"], sent["reasoning_effort"]) == (SCHEMA, True, "low")
        assert [t.token for t in made.choices[0].logprobs.content] == JSON_ANSWER
        assert made.choices[0].message.model_extra["reasoning_content"] == "".join(THOUGHT)
        with client(server).chat.completions.stream(model="lite", messages=ASK, logprobs=True) as stream:
            final = stream.get_final_completion().choices[0]  # streamed: LiteLLM's chunks' log probabilities
        assert [t.token for t in final.logprobs.content] == ANSWER and final.message.model_extra["reasoning_content"] == "".join(THOUGHT)


@pytest.mark.parametrize("model", ["plain", "router"])
def test_langchain_structured_output_gets_the_providers_json(served: ServerThread, upstream: Upstream, model: str) -> None:
    """Before: ``with_structured_output`` was a 400 (``response_format``); now its JSON schema reaches
    the provider, on a card and through the router, and LangChain parses the answer."""
    langchain_openai = pytest.importorskip("langchain_openai")
    from pydantic import BaseModel

    class City(BaseModel):
        name: str

    llm = langchain_openai.ChatOpenAI(model=model, base_url=served.url, api_key="x", max_retries=0)
    assert llm.with_structured_output(City).invoke("Capital of France?") == City(name="Paris")
    sent = upstream.requests[-1]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "City"


@pytest.mark.parametrize(("router", "stream"), [("cheapest", False), ("cheapest", True), ("cascade", True)])
def test_a_routed_answer_brings_its_reasoning_and_logprobs(upstream: Upstream, router: str, stream: bool) -> None:
    """Before: the router's reply dropped them (``logprobs: null``, no ``reasoning_content``) though
    the routed call had asked for them; now the answering attempt's come back, plain or streamed
    (as the tokens come; ``cascade``, which may answer twice, streams the answer once it is final)."""
    with ServerThread(ModelPool([_card("reasoner", upstream.url)]), router=router, budget={"usd": 1.0}) as server:
        made = client(server).chat.completions.create(model="router", messages=ASK, logprobs=True, stream=stream)
        assert upstream.requests[-1]["logprobs"] is True
        if stream:
            choices = [ch for c in made for ch in c.choices]
            tokens = [t.token for ch in choices if ch.logprobs for t in ch.logprobs.content]
            thought = "".join((ch.delta.model_extra or {}).get("reasoning_content") or "" for ch in choices)
            text = "".join(ch.delta.content or "" for ch in choices)
        else:
            message = made.choices[0].message
            tokens, thought, text = [t.token for t in made.choices[0].logprobs.content], message.model_extra["reasoning_content"], message.content
    assert (tokens, thought, text) == (ANSWER, "".join(THOUGHT), "".join(ANSWER))


def test_the_sdks_stream_accumulator_and_langchain_gather_the_streamed_logprobs(upstream: Upstream) -> None:
    """Streamed, a choice's log probabilities come whole on its last chunk: the OpenAI SDK's
    ``stream().get_final_completion()`` and LangChain's summed chunks read them, on a card and
    through the router."""
    langchain_openai = pytest.importorskip("langchain_openai")
    with ServerThread(ModelPool([_card("reasoner", upstream.url)]), router="cheapest", budget={"usd": 1.0}) as server:
        for model in ("reasoner", "router"):
            with client(server).chat.completions.stream(model=model, messages=ASK, logprobs=True) as stream:
                final = stream.get_final_completion().choices[0]
            assert [t.token for t in final.logprobs.content] == ANSWER and final.message.content == "".join(ANSWER)
            llm = langchain_openai.ChatOpenAI(model=model, base_url=server.url, api_key="x", max_retries=0).bind(logprobs=True)
            chunks = list(llm.stream("Capital of France?"))
            merged = sum(chunks[1:], chunks[0])
            assert [t["token"] for t in merged.response_metadata["logprobs"]["content"]] == ANSWER


@pytest.mark.parametrize("model", ["plain", "router"])
def test_top_logprobs_without_logprobs_is_a_400_naming_it_before_any_call(served: ServerThread, upstream: Upstream, model: str) -> None:
    """Before: passed on alone, which OpenAI's API refuses ("logprobs must be set to true if this
    parameter is used") only after the call; now the server's own 400 before any call."""
    calls = len(upstream.requests)
    with pytest.raises(openai.BadRequestError) as info:
        client(served).chat.completions.create(model=model, messages=ASK, top_logprobs=2)
    assert info.value.param == "top_logprobs" and "logprobs: true" in info.value.message
    assert len(upstream.requests) == calls

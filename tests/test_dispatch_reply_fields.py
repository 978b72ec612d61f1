"""What a backend hands back after a paid call is data from outside (issue 10): a field that cannot be
trusted never takes the paid step down with it.

A reply's ``raw["confidence"]`` that is not a finite number (text, NaN, a list, ``True``) is recorded
as absent and audited ``protocol_error``: the step, its cost and the task stand. Before, text or a list
made :meth:`Dispatcher.step` raise pydantic's ``ValidationError`` after the call was paid, nothing
recorded (NaN and ``inf`` were stored as the confidence). A backend returning anything but a
:class:`Completion`, or whose token counter raises while counting the usage it did not report, is a
backend bug charged as billed, like any other: before, an ``AttributeError``/its error escaped the
step, the call booked at nothing.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest

from agentroute import AgentGraph, Budget, Dispatcher
from agentroute.memory import SQLMemory
from agentroute.pool import ModelCard, ModelPool
from agentroute.pool.backends.base import Backend
from agentroute.pool.backends.openai import OpenAIBackend
from agentroute.routers import make_router
from agentroute.types import Completion, CompletionRequest
from tests.fixtures_reply_server import JSONHandler, LoopbackServer

#: What the loopback server sends as ``agentroute.confidence``, by the model asked for.
SENT: dict[str, Any] = {"text": "high", "nan": float("nan"), "list": [0.5], "true": True, "half": 0.5}


class _Confident(JSONHandler):
    """An agentroute-like server: a two-word answer, true usage, and ``agentroute.confidence`` as
    :data:`SENT` says for the model asked (NaN written as JSON's ``NaN``, as Python's json reads it)."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.chat_body()
        if body is None:
            return
        model = str(body["model"])
        usage = {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
        extra = {"agentroute": {"confidence": SENT[model]}}
        base = {"id": "r1", "created": 0, "model": model}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "Paris."}
            return self.send_json(200, {**base, "object": "chat.completion", **extra, "usage": usage,
                                        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})
        self.start_events()
        chunk = {**base, "object": "chat.completion.chunk", **extra}
        self.send_event({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Paris."}, "finish_reason": None}]})
        self.send_event({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        self.send_event({**chunk, "choices": [], "usage": usage})
        self.send_event("[DONE]")


def _card(model: str, url: str | None = None, backend: str = "openai") -> ModelCard:
    return ModelCard(id=model, backend=backend, model=model, base_url=url, input_price=1.0, output_price=2.0, max_tokens=8, timeout_s=5)


def _protocol_errors(events: list[Any]) -> list[str]:
    return [e.detail for e in events if e.kind == "protocol_error"]


@pytest.fixture(scope="module")
def server() -> Any:
    with LoopbackServer(_Confident) as running:
        yield running


@pytest.mark.parametrize("stream", [False, True])
def test_a_served_confidence_that_is_no_number_is_absent_and_audited_in_a_graph(server: Any, stream: bool, tmp_path: Any) -> None:
    """A compiled graph run synchronously (one role a model), with a SQLite memory: every step paid
    and stored, a bad confidence absent and audited, the number kept; the task done."""
    graph = AgentGraph("g")
    for i, model in enumerate(SENT):
        graph.add_role(f"r{i}", prompt="e", models=[model])
        if i:
            graph.add_edge(f"r{i - 1}", f"r{i}")
    memory = SQLMemory(f"sqlite:///{tmp_path}/memory.db")
    pool = ModelPool([_card(m, server.url) for m in SENT], {"openai": OpenAIBackend(stream=stream)})
    try:
        result = graph.compile(pool=pool, router=make_router("cheapest"), memory=memory).run("q")
        assert result.status == "done" and result.answer == "Paris."
        assert [s.agent.model for s in result.steps] == list(SENT) and {s.status for s in result.steps} == {"ok"}
        assert [s.confidence for s in result.steps] == [None, None, None, None, 0.5]
        assert result.cost_usd == pytest.approx(len(SENT) * _card("m").usd(7, 2))
        stored = memory.get_task(result.task.id)
        assert stored is not None and [s.confidence for s in stored.steps] == [s.confidence for s in result.steps]
        audited = _protocol_errors(memory.audit_events(result.task.id))
        assert len(audited) == 4 and all("confidence is not a finite number" in a for a in audited)
        assert [a.split(":")[0] for a in audited] == ["text", "nan", "list", "true"]
    finally:
        memory.close()


class _Raw(Backend):
    """A backend of the user's whose reply carries ``raw["confidence"]`` as given."""

    name = "raw"
    blocks = False

    def __init__(self, confidence: Any):
        self.confidence = confidence

    async def complete(self, request: CompletionRequest, card: ModelCard) -> Completion:
        return Completion(model=card.id, text="answer", tokens_in=5, tokens_out=2, cost_usd=card.usd(5, 2), raw={"confidence": self.confidence})


@pytest.mark.parametrize(
    ("given", "kept"),
    [("high", None), ("0.75", None), ([0.5], None), ({"p": 1}, None), (True, None), (float("nan"), None), (float("-inf"), None), (10**400, None),
     (0.75, 0.75), (1, 1.0), (np.float32(0.5), 0.5), (np.int64(0), 0.0), (None, None)],
)
def test_a_backends_raw_confidence_is_kept_only_as_a_finite_number(given: Any, kept: float | None) -> None:
    dispatcher = Dispatcher(ModelPool([_card("m", backend="raw")], {"raw": _Raw(given)}), make_router("cheapest"))

    async def main() -> Any:
        run = dispatcher.start("q", budget=Budget(usd=100.0))
        steps = [await dispatcher.step(run, role="executor", stage=s, prompt="p", input="q") for s in ("plan", "execute")]
        return run, steps, dispatcher.finish(run)

    run, steps, task = asyncio.run(main())
    assert task.status == "done" and [s.status for s in steps] == ["ok", "ok"] and run.steps == steps
    assert all(s.confidence == kept and type(s.confidence) is type(kept) for s in steps)
    assert run.ledger.spent["usd"] == pytest.approx(2 * _card("m").usd(5, 2)) and run.ledger.spent["usd"] > 0
    audited = _protocol_errors(run.context.get("audit", []))
    assert len(audited) == (0 if given is None or kept is not None else 2)


class _NotACompletion(Backend):
    name = "raw"
    blocks = False

    async def complete(self, request: CompletionRequest, card: ModelCard) -> Any:
        return json.dumps({"text": "answer"})  # a common slip: the provider's body, not a Completion


class _CounterRaises(Backend):
    name = "raw"
    blocks = False

    async def complete(self, request: CompletionRequest, card: ModelCard) -> Completion:
        return Completion(model=card.id, text="answer")  # no usage: the dispatcher counts it

    def count_tokens(self, text: str, card: ModelCard) -> int:
        raise RuntimeError("tokenizer file missing")


@pytest.mark.parametrize(("backend", "why"), [(_NotACompletion(), "_NotACompletion.complete returned str, not a Completion"),
                                              (_CounterRaises(), "RuntimeError: tokenizer file missing")])
def test_a_backend_bug_after_the_call_is_a_failed_step_charged_as_billed(backend: Backend, why: str) -> None:
    cards = [_card("bad", backend="raw"), ModelCard(id="good", backend="good", input_price=5.0, output_price=5.0, max_tokens=8)]
    dispatcher = Dispatcher(ModelPool(cards, {"raw": backend, "good": _Raw(0.5)}), make_router("cheapest"))

    async def main() -> Any:
        run = dispatcher.start("q", budget=Budget(usd=100.0))
        step = await dispatcher.step(run, role="executor", stage="execute", prompt="p", input="q")
        return run, step, dispatcher.finish(run)

    run, step, task = asyncio.run(main())
    failed, answered = run.steps
    assert failed.status == "failed" and why in (failed.error or "") and failed.cost_usd > 0  # its worst case
    assert answered is step and step.status == "ok" and step.agent.model == "good" and task.status == "done"
    assert run.ledger.spent["calls"] == 2

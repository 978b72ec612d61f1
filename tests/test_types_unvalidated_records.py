"""A step's records built without pydantic's validation where their values are already typed (issue 10).

The dispatcher's common path (one attempt that succeeds) builds its :class:`Step` with
:func:`ok_step`: when every value already has its field's exact type, the step is built without
validation (benchmarks/RESULTS.md, twelfth pass), and it must be the record that ``Step(...)``
would build: equal, the same dump, JSON, set fields and pickle. Anything else (a ``str`` subclass,
an ``int`` or NumPy score, a backend's ``raw`` confidence given as text) goes through pydantic as
before. Held here on a real compiled graph (LangGraph, replay backend) and on a backend of the
user's over the dispatcher. (The replay backend's :class:`Completion` stays validated: built the
same way it cost the bare graph ≈ 10 K instructions and ≈ 300 L2 misses more a step.)
"""

from __future__ import annotations

import asyncio
import pickle
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel, ValidationError

from agentroute import Budget, Dispatcher
from agentroute.pool import ModelCard, ModelPool
from agentroute.pool.backends.base import Backend
from agentroute.routers import make_router
from agentroute.types import Agent, Completion, CompletionRequest, Decision, Step, ok_step

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_graphs import STAGES, pool, routed_graph  # noqa: E402

AGENT = Agent(role="executor", model="m")
DECISION = Decision(agents=[AGENT], router="r")
STEP = dict(
    task_id="t", index=2, stage="execute", agent=AGENT, decision=DECISION, input="in", output="out",
    tokens_in=3, tokens_out=4, cost_usd=0.25, latency_ms=1.5, score=1.0, confidence=None,
)  # fmt: skip


def _same(built: BaseModel, validated: BaseModel) -> None:
    """``built`` is the record pydantic would have built (ids and times aside: fresh in each)."""
    for name in ("id", "created_at"):
        if name in type(built).model_fields:
            setattr(validated, name, getattr(built, name))
            validated.model_fields_set.discard(name)
    assert built == validated
    assert list(built.__dict__) == list(type(built).model_fields) == list(validated.__dict__)
    assert {k: type(v) for k, v in built.__dict__.items()} == {k: type(v) for k, v in validated.__dict__.items()}
    assert built.model_dump() == validated.model_dump()
    assert built.model_dump_json() == validated.model_dump_json()
    assert built.model_fields_set == validated.model_fields_set
    assert built.model_dump(exclude_unset=True) == validated.model_dump(exclude_unset=True)
    assert pickle.loads(pickle.dumps(built)) == built
    assert type(built).model_validate_json(built.model_dump_json()) == built
    assert repr(built) == repr(validated)


def test_typed_values_build_the_record_pydantic_would() -> None:
    _same(ok_step(**STEP), Step(**STEP))  # type: ignore[arg-type]
    _same(ok_step(**STEP | {"decision": None, "score": None, "confidence": 0.5}), Step(**STEP | {"decision": None, "score": None, "confidence": 0.5}))  # type: ignore[arg-type]
    first, second = ok_step(**STEP), ok_step(**STEP)  # type: ignore[arg-type]
    first.error = "changed"  # each step's set fields are its own
    assert "error" in first.model_fields_set and second.model_fields_set == set(STEP) and first.id != second.id


class Stage(StrEnum):
    EXECUTE = "execute"


@pytest.mark.parametrize(
    "fields",
    [
        {"stage": Stage.EXECUTE},
        {"score": np.float64(0.5), "confidence": 1},
        {"tokens_in": np.int64(3), "cost_usd": 1},
        {"confidence": "0.75"},
        {"decision": DECISION.model_dump()},
        {"agent": AGENT.model_dump()},
    ],
)
def test_values_of_other_types_are_validated_as_before(fields: dict[str, Any]) -> None:
    _same(ok_step(**STEP | fields), Step(**STEP | fields))  # type: ignore[arg-type]


@pytest.mark.parametrize("fields", [{"stage": 5}, {"confidence": "high"}, {"input": None}, {"tokens_in": 1.5}])
def test_invalid_values_are_refused_as_before(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Step(**STEP | fields)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        ok_step(**STEP | fields)  # type: ignore[arg-type]


def test_nothing_validation_would_run_is_skipped() -> None:
    """The fast path skips validation only: a validator or ``model_post_init`` added to :class:`Step`
    later would be skipped too, so its addition must come with the fast path's review."""
    model = Step
    decorators = model.__pydantic_decorators__
    assert not (decorators.validators or decorators.field_validators or decorators.model_validators or decorators.root_validators)
    assert model.model_post_init is BaseModel.model_post_init
    assert not model.model_config.get("extra") and not model.__private_attributes__


def test_a_routed_graph_steps_without_validating_its_records() -> None:
    """A compiled graph's steps (real LangGraph, replay backend) validate no Step."""
    validators = {Step.__pydantic_validator__: "Step"}
    app, tasks = routed_graph(pool(6)), 3
    queries = [{"query": "question", "query_id": f"q{i}"} for i in range(2 * tasks)]
    validated: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "c_call" and getattr(arg, "__name__", "") == "validate_python":
            if (name := validators.get(getattr(arg, "__self__", None))) is not None:  # type: ignore[arg-type]
                validated.append(name)

    async def main() -> list[Any]:
        await app.arun_many(queries[:tasks], concurrency=1)
        sys.setprofile(profile)
        try:
            return await app.arun_many(queries[tasks:], concurrency=1)
        finally:
            sys.setprofile(None)

    results = asyncio.run(main())
    assert [len(r.steps) for r in results] == [len(STAGES)] * tasks and {r.status for r in results} == {"done"}
    assert validated == []
    for result in results:
        for step in result.steps:
            _same(step, Step(**{k: getattr(step, k) for k in step.model_fields_set}))


class _Raw(Backend):
    """A backend of the user's: a reply with usage, and a confidence in ``raw`` as the provider gave it."""

    name = "raw-confidence"
    blocks = False

    def __init__(self, confidence: Any):
        self.confidence = confidence

    async def complete(self, request: CompletionRequest, card: ModelCard) -> Completion:
        return Completion(model=card.id, text="answer", tokens_in=5, tokens_out=2, cost_usd=0.001, raw={"confidence": self.confidence})


@pytest.mark.parametrize(("given", "stored"), [(0.75, 0.75), ("0.75", 0.75), (1, 1.0), (np.float64(0.5), 0.5), (None, None)])
def test_a_backends_confidence_is_still_validated(given: Any, stored: float | None) -> None:
    card = ModelCard(id="m", backend="raw-confidence", input_price=0.1, output_price=0.1)
    dispatcher = Dispatcher(ModelPool([card], {"raw-confidence": _Raw(given)}), make_router("cheapest"))

    async def main() -> Step | None:
        run = dispatcher.start("q", budget=Budget(usd=1.0))
        return await dispatcher.step(run, role="executor", stage="execute", prompt="p", input="q")

    step = asyncio.run(main())
    assert step is not None and step.status == "ok" and step.confidence == stored
    assert type(step.confidence) is (float if stored is not None else type(None))

"""A backend's own score of its answer (``Completion.score``) is data from outside, read by the
rule that reads its confidence (issue 10): a score that is not a finite number (NaN, infinity) is
recorded as absent and audited ``protocol_error``; the step, its cost and the task stand.

Before: a NaN or infinite score reached the stored :class:`Step`, the task's score (taken from its
last step) and the routers that learn from them.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from agentroute import Budget, Dispatcher
from agentroute.memory import SQLMemory
from agentroute.pool import ModelCard, ModelPool
from agentroute.pool.backends.base import Backend
from agentroute.pool.backends.replay import LoggedOutcome, ReplayBackend
from agentroute.routers import make_router
from agentroute.types import Completion, CompletionRequest

#: Each model's logged score, in the order the steps run (the last step's score is the task's).
SCORES = {"half": 0.5, "inf": math.inf, "nan": math.nan}


def _card(model: str, backend: str) -> ModelCard:
    return ModelCard(id=model, backend=backend, model=model, input_price=1.0, output_price=2.0, max_tokens=8)


def _steps(pool: ModelPool, memory: SQLMemory | None = None) -> Any:
    dispatcher = Dispatcher(pool, make_router("cheapest"), memory=memory)

    async def main() -> Any:
        run = dispatcher.start("q", budget=Budget(usd=100.0))
        steps = [await dispatcher.step(run, role="r", stage="execute", prompt="p", input="q", models=[m], query_id="q1") for m in SCORES]
        return run, steps, dispatcher.finish(run)

    return asyncio.run(main())


def test_a_replayed_score_that_is_no_number_is_absent_audited_and_stored_so(tmp_path: Any) -> None:
    outcomes = [LoggedOutcome(query_id="q1", model=m, score=s, cost_usd=0.01, response=m, tokens_in=5, tokens_out=2) for m, s in SCORES.items()]
    memory = SQLMemory(f"sqlite:///{tmp_path}/memory.db")
    try:
        run, steps, task = _steps(ModelPool([_card(m, "replay") for m in SCORES], {"replay": ReplayBackend(outcomes)}), memory)
        assert task.status == "done" and [s.status for s in steps] == ["ok"] * 3 and [s.output for s in steps] == list(SCORES)
        assert [s.score for s in steps] == [0.5, None, None] and task.score is None
        assert run.ledger.spent["usd"] == pytest.approx(0.03)  # every step paid, as logged
        stored = memory.get_task(task.id)
        assert stored is not None and [s.score for s in stored.steps] == [0.5, None, None] and stored.task.score is None
        audited = [e.detail for e in memory.audit_events(task.id) if e.kind == "protocol_error"]
        assert [a.split(":")[0] for a in audited] == ["inf", "nan"] and all("score is not a finite number" in a for a in audited)
    finally:
        memory.close()


class _Scored(Backend):
    """A backend of the user's that scores its own answer by the model's name (:data:`SCORES`)."""

    name = "scored"
    blocks = False

    async def complete(self, request: CompletionRequest, card: ModelCard) -> Completion:
        return Completion(model=card.id, text="answer", tokens_in=5, tokens_out=2, cost_usd=card.usd(5, 2), score=SCORES[card.id])


def test_a_user_backends_score_that_is_no_number_is_absent_and_audited() -> None:
    run, steps, task = _steps(ModelPool([_card(m, "scored") for m in SCORES], {"scored": _Scored()}))
    assert [s.status for s in steps] == ["ok"] * 3 and [s.score for s in steps] == [0.5, None, None] and task.score is None
    assert run.ledger.spent["usd"] == pytest.approx(3 * _card("m", "scored").usd(5, 2))
    assert sum(e.kind == "protocol_error" for e in run.context["audit"]) == 2

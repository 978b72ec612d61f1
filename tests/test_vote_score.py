"""A multi-sample step (``sc@K``) takes its score from the sample whose answer won the vote, not
from the first sample (helper-69, item 3): a user's own ``Backend`` that scores its completions."""

from __future__ import annotations

import asyncio

from agentroute import Budget, Dispatcher, make_router
from agentroute.pool import ModelCard, ModelPool
from agentroute.pool.backends.base import Backend
from agentroute.types import Completion, CompletionRequest

GOLD = "Paris"


class Graded(Backend):
    """Answers from a script, one per call, and scores each against the gold answer (as an
    evaluation harness with a checker would)."""

    name = "graded"

    def __init__(self, answers: list[str]):
        self.answers, self.calls = answers, 0

    async def complete(self, request: CompletionRequest, card: ModelCard) -> Completion:
        text = self.answers[self.calls % len(self.answers)]
        self.calls += 1
        return Completion(model=card.id, text=text, tokens_in=5, tokens_out=2, score=float(text.strip(".") == GOLD))


def _dispatcher(answers: list[str], strategy: str = "sc@3") -> tuple[Dispatcher, Graded]:
    backend = Graded(answers)
    card = ModelCard(id="m", backend="graded", input_price=1.0, output_price=1.0, max_tokens=8, strategies=(strategy,))
    return Dispatcher(ModelPool([card], {"graded": backend}), make_router("cheapest")), backend


def _step(answers: list[str], strategy: str = "sc@3") -> tuple[object, object, int]:
    dispatcher, backend = _dispatcher(answers, strategy)

    async def go() -> tuple[object, object]:
        run = dispatcher.start("What is the capital of France?", budget=Budget(calls=10))
        step = await dispatcher.step(run, role="executor", stage="execute", prompt="", input="capital of France?")
        return step, dispatcher.finish(run)

    step, task = asyncio.run(go())
    return step, task, backend.calls


def test_the_winning_answer_s_score_is_the_step_s_and_the_task_s() -> None:
    step, task, calls = _step(["Rome", "Paris", "Paris."])
    assert calls == 3
    assert step.output == "Paris" and step.score == 1.0  # was 0.0: the first sample's (Rome)
    assert task.score == 1.0 and task.answer == "Paris"


def test_a_losing_first_sample_never_lends_its_score() -> None:
    step, _, _ = _step(["Paris", "Rome", "Rome"])
    assert step.output == "Rome" and step.score == 0.0  # was 1.0


def test_one_sample_keeps_its_own_score() -> None:
    step, _, _ = _step(["Paris"], strategy="direct")
    assert step.output == "Paris" and step.score == 1.0

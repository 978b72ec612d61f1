"""A multiple-choice answer is an answer: ``"A"`` is not erased by SQuAD's article rule.

Before, the rule dropped the word *a* even when it was the whole answer, so ``"A"`` normalised to
the empty string: an empty prediction scored 1.0 against the gold ``"A"`` (``em`` and ``f1``, in
``app.run(gold=...)``, ``run --input`` and the memory the routers learn from), and self-consistency
and the weighted vote counted an ``"A"`` sample and an empty one as the same answer.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentroute import AgentGraph, make_router
from agentroute.aggregate import weighted_vote
from agentroute.eval.answers import contains, exact_match, f1_score
from agentroute.memory import SQLMemory
from agentroute.pool import LoggedOutcome, ModelCard, ModelPool, ReplayBackend
from agentroute.strategies import get_strategy, normalize_answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [("A", "a"), ("A.", "a"), ("(a)", "a"), ("The", "the"), ("an", "an"), ("A cat", "cat"), ("The  Eiffel Tower!", "eiffel tower"), ("", "")],
)
def test_articles_go_unless_they_are_the_whole_answer(text, expected):
    assert normalize_answer(text) == expected


@pytest.mark.parametrize("metric", [exact_match, f1_score])
def test_an_empty_prediction_does_not_match_the_gold_letter_a(metric):
    assert metric("", "A") == 0.0
    assert metric(None, ["A"]) == 0.0
    assert metric("A", "a.") == 1.0
    assert metric("B", "A") == 0.0


def test_contains_finds_the_letter_a_as_a_whole_token_only():
    assert contains("a", "A") == 1.0
    assert contains("", "A") == 0.0


def test_self_consistency_does_not_merge_an_a_sample_with_an_empty_one():
    # four samples: "A", an empty answer, "B", "B" — before, "A" and "" were one group of 2, tied
    # with "B" and ahead by order, so the step answered "A" with agreement 0.5
    answer, agreement = get_strategy("sc@4").aggregate(["Answer: A", "", "Answer: B", "Answer: B"])
    assert (answer, agreement) == ("Answer: B", 0.5)


def test_the_weighted_vote_keeps_a_apart_from_empty_answers():
    assert weighted_vote(["A", "", "B"], [0.3, 0.3, 0.4]) == ("B", 0.4)


def test_a_task_answered_with_nothing_scores_zero_against_gold_a(tmp_path):
    """The user's path: ``app.run(query, gold=...)`` scores the task and the memory keeps the score."""
    card = ModelCard(id="m", backend="replay", input_price=0.1, output_price=0.1)
    outcomes = [LoggedOutcome("empty", "m", 0.0, 0.001, ""), LoggedOutcome("letter", "m", 1.0, 0.001, "A")]
    pool = ModelPool([card], {"replay": ReplayBackend(outcomes)})
    memory = SQLMemory(f"sqlite:///{tmp_path}/m.db")
    try:
        app = AgentGraph("one").add_role("executor", prompt="Answer with a letter.").compile(
            pool=pool, router=make_router("cheapest"), memory=memory
        )
        empty = app.run("Which? A) x B) y", query_id="empty", gold="A")
        letter = app.run("Which? A) x B) y", query_id="letter", gold="A")
        assert (empty.task.score, letter.task.score) == (0.0, 1.0)
        memory.flush()
        assert memory.get_task(empty.task.id).task.score == 0.0
    finally:
        memory.close()


@given(st.text(max_size=40))
def test_normalisation_is_idempotent_and_never_erases_a_word(text):
    once = normalize_answer(text)
    assert normalize_answer(once) == once
    if text.lower().translate(str.maketrans("", "", string.punctuation)).split():
        assert once  # some word survives: only punctuation and white space normalise to ""

"""The collaboration aggregator: probability-weighted vote over normalised answers."""

from __future__ import annotations

import doctest
import math

import pytest

import agentroute.aggregate as aggregate
from agentroute.aggregate import weighted_vote
from agentroute.errors import ConfigurationError
from agentroute.strategies import extract_answer


def test_doctests():
    result = doctest.testmod(aggregate)
    assert result.attempted >= 5 and result.failed == 0


def test_answers_are_compared_after_extraction_and_normalisation():
    answers = ["Let me think. Answer: The Beatles!", "beatles", "Answer: Rolling Stones"]
    text, share = weighted_vote(answers, [0.3, 0.3, 0.4])
    assert text == answers[0] and share == pytest.approx(0.6)


def test_weight_beats_headcount_and_ties_follow_the_router_order():
    assert weighted_vote(["x", "x", "y"], [0.1, 0.1, 0.8]) == ("y", pytest.approx(0.8))
    assert weighted_vote(["x", "y"], [0.5, 0.5]) == ("x", 0.5)
    assert weighted_vote(["y", "x"], [0.5, 0.5]) == ("y", 0.5)


def test_the_heaviest_member_of_the_winning_group_is_returned():
    text, share = weighted_vote(["42.", "Answer: 42", "7"], [0.2, 0.5, 0.3])
    assert text == "Answer: 42" and share == pytest.approx(0.7)


def test_an_answer_beats_any_number_of_empty_answers():
    """Empty answers are no vote for an answer: a user of the vote (or of ``sc@k``) gets an answer
    when any agent gave one. Before, two empty answers outweighed one "Paris" and the step answered
    nothing. Their weight still counts in the share: only 0.4 of the weight agreed on "Paris"."""
    assert weighted_vote(["", "", "Paris"], [0.3, 0.3, 0.4]) == ("Paris", pytest.approx(0.4))
    assert weighted_vote(["?", " ", "Answer: Paris"], [0.45, 0.45, 0.1]) == ("Answer: Paris", pytest.approx(0.1))


def test_an_answer_marker_with_nothing_after_it_is_an_empty_answer():
    assert extract_answer("The capital is\nAnswer:") == "" and extract_answer("答案：") == ""
    assert extract_answer("Answer:\nParis") == "Paris" and extract_answer("Answer: Paris\nAnswer:") == "Paris"
    assert weighted_vote(["Answer:", "Answer: ", "Answer: Paris"], [0.4, 0.4, 0.2]) == ("Answer: Paris", pytest.approx(0.2))


def test_empty_wins_only_when_every_answer_is_empty():
    assert weighted_vote(["", "  ", "!"], [0.2, 0.5, 0.3]) == ("  ", pytest.approx(1.0))


@pytest.mark.parametrize(
    ("answers", "weights", "message"),
    [
        ([], [], "no answers"),
        (["a"], [0.5, 0.5], "1 answers but 2 weights"),
        (["a", "b"], [0.5, -0.1], "finite and >= 0"),
        (["a"], [math.nan], "finite and >= 0"),
    ],
)
def test_bad_input_is_refused(answers, weights, message):
    with pytest.raises(ConfigurationError, match=message):
        weighted_vote(answers, weights)

"""Aggregators: combine the answers of several agents that ran on the same step (collaboration).

AgentRouter (ROUTERS.md §2) names the top agents of a query with their probabilities; the
dispatcher runs them concurrently within the budget and combines their answers with
ŷ = φ({y_a, p_θ(a)}). The default φ is :func:`weighted_vote`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from agentroute.errors import ConfigurationError
from agentroute.strategies import extract_answer, normalize_answer

__all__ = ["weighted_vote"]


def weighted_vote(answers: Sequence[str], weights: Sequence[float]) -> tuple[str, float]:
    """Probability-weighted vote over normalised answers.

    Each answer is reduced to its final answer (:func:`~agentroute.strategies.extract_answer`:
    the text after the last ``Answer:``, else its first line) and normalised SQuAD-style
    (:func:`~agentroute.strategies.normalize_answer`); the normalised answer with the largest total
    weight wins. Returns the *original text* of the heaviest answer in the winning group, and the
    winning group's share of the total weight. Ties go to the group whose first member comes first
    (the router's order). An empty answer (nothing left after normalising) is no vote for an
    answer: it wins only when every answer is empty, and its weight still counts in the share, so
    ``["", "", "Paris"]`` gives ``"Paris"`` with the agreement of its own weight alone. This is the
    one voting rule: ``sc@k`` (:meth:`~agentroute.strategies.Strategy.aggregate`) is this vote with
    equal weights.

    Args:
        answers: the agents' full answer texts.
        weights: their non-negative weights (e.g. the router's probabilities); all zero counts as
            equal weights.

    Raises:
        ConfigurationError: no answers, lengths differ, or a weight is negative or not finite.

    >>> weighted_vote(["Paris", "paris.", "London"], [0.5, 0.25, 0.25])
    ('Paris', 0.75)
    >>> weighted_vote(["A", "A", "B"], [0.2, 0.2, 0.6])  # weight, not headcount
    ('B', 0.6)
    >>> weighted_vote(["It is B. Answer: B", "Answer: (b)", "A"], [0.3, 0.3, 0.4])
    ('It is B. Answer: B', 0.6)
    >>> weighted_vote(["The Eiffel Tower", "eiffel tower!"], [0.0, 0.0])
    ('The Eiffel Tower', 1.0)
    >>> weighted_vote(["4"], [0.9])
    ('4', 1.0)
    >>> weighted_vote(["", "...", "Paris"], [0.3, 0.3, 0.4])  # an answer beats more empty ones
    ('Paris', 0.4)
    """
    if not answers:
        raise ConfigurationError("weighted_vote: no answers to aggregate")
    if len(answers) != len(weights):
        raise ConfigurationError(f"weighted_vote: {len(answers)} answers but {len(weights)} weights")
    w = [float(x) for x in weights]
    bad = [x for x in w if not math.isfinite(x) or x < 0]
    if bad:
        raise ConfigurationError(f"weighted_vote: weights must be finite and >= 0 (got {bad[0]})")
    total = sum(w)
    if total == 0:
        w, total = [1.0] * len(w), float(len(w))
    groups: dict[str, list[int]] = {}
    for i, text in enumerate(answers):
        groups.setdefault(normalize_answer(extract_answer(text)), []).append(i)
    answered = [members for key, members in groups.items() if key] or list(groups.values())
    # dicts keep insertion order, so max() breaks ties by the first member's position
    best = max(answered, key=lambda members: sum(w[i] for i in members))
    share = sum(w[i] for i in best) / total
    representative = max(best, key=lambda i: (w[i], -i))
    return answers[representative], share

"""Answer metrics against gold answers: exact match, token F1 and containment.

SQuAD's normalisation (Rajpurkar et al., "SQuAD: 100,000+ Questions for Machine Comprehension of
Text", arXiv 1606.05250, and its official evaluation script): lower-case, drop punctuation, drop the
articles *a*, *an*, *the* (unless the answer is only an article, as a multiple-choice ``"A"``),
collapse white space — :func:`agentroute.strategies.normalize_answer`, the one home of the rule.
With several gold answers the best one counts.

- ``em``: 1.0 when the normalised prediction equals a normalised gold answer, else 0.0.
- ``f1``: the harmonic mean of token precision and recall (bag of tokens), 0 … 1.
- ``contains``: 1.0 when a normalised gold answer occurs in the normalised prediction as whole
  tokens (lenient: a long answer that states the right one counts).

Tokens are the words between spaces, except that a Chinese character or a Japanese kana — scripts
written without spaces — is a token of its own, as MLQA's evaluation segments Chinese (Lewis et
al., arXiv 1910.07475, ``mixed_segmentation``): ``"法国巴黎"`` against ``"巴黎"`` scores F1 0.667,
not 0 (the characters: :data:`agentroute.cjk.UNSPACED`). Text without such a character is split on
spaces alone, so English scores as SQuAD's do, and so does Korean, which is written with spaces
(``"서울 특별시"`` against ``"서울"``: F1 0.667) (:func:`answer_tokens`, the one home of this rule).

Every metric is a plain function ``metric(prediction, gold) -> float`` (``gold``: one answer or
a list), looked up by name with :func:`get_metric`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from agentroute.cjk import UNSPACED
from agentroute.errors import UnknownNameError
from agentroute.strategies import normalize_answer

__all__ = [
    "METRICS", "answer_tokens", "contains", "exact_match", "f1_score", "get_metric", "normalize_answer", "score_answer",
]  # fmt: skip

Gold = str | Iterable[str]
Metric = Callable[[str | None, Gold], float]


def answer_tokens(text: str | None) -> list[str]:
    """The tokens of the normalised ``text`` (:func:`normalize_answer`): its words, and in text with
    Chinese or Japanese characters each such character apart.

    >>> answer_tokens("The Eiffel Tower!")
    ['eiffel', 'tower']
    >>> answer_tokens("法国巴黎 (Paris)")
    ['法', '国', '巴', '黎', 'paris']
    """
    normal = normalize_answer(text)
    if normal.isascii() or not UNSPACED.search(normal):
        return normal.split()
    return UNSPACED.sub(r" \g<0> ", normal).split()


def _golds(gold: Gold) -> list[str]:
    return [gold] if isinstance(gold, str) else [str(g) for g in gold]


def exact_match(prediction: str | None, gold: Gold) -> float:
    """1.0 when the normalised prediction equals a normalised gold answer.

    >>> exact_match("The Beatles", ["beatles", "the fab four"])
    1.0
    >>> exact_match("Hamlet by William Shakespeare.", "William Shakespeare")
    0.0
    """
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in _golds(gold)))


def _f1(prediction: str, gold: str) -> float:
    pred, ref = answer_tokens(prediction), answer_tokens(gold)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def f1_score(prediction: str | None, gold: Gold) -> float:
    """Token F1 of the normalised texts, the best over gold answers.

    >>> round(f1_score("Hamlet by William Shakespeare.", "William Shakespeare"), 3)
    0.667
    >>> f1_score("", "Paris")
    0.0
    >>> round(f1_score("法国巴黎", "巴黎"), 3)  # by character in Chinese and Japanese text
    0.667
    """
    return max((_f1(prediction or "", g) for g in _golds(gold)), default=0.0)


def contains(prediction: str | None, gold: Gold) -> float:
    """1.0 when a normalised gold answer occurs in the normalised prediction as whole tokens.

    >>> contains("Hamlet by William Shakespeare.", "William Shakespeare")
    1.0
    >>> contains("Shakespeare's sonnets", "Shakespeare")
    0.0
    >>> contains("首都是巴黎。", "巴黎")
    1.0
    """
    pred = f" {' '.join(answer_tokens(prediction))} "
    return float(
        any(ref and f" {ref} " in pred for ref in (" ".join(answer_tokens(g)) for g in _golds(gold)))
    )


METRICS: dict[str, Metric] = {"em": exact_match, "f1": f1_score, "contains": contains}
"""The metrics by name (``--metric em|f1|contains``)."""


def get_metric(name: str) -> Metric:
    """The metric called ``name``; an unknown name is an error listing the known ones.

    >>> get_metric("f1")("Paris", ["paris"])
    1.0
    """
    try:
        return METRICS[name]
    except KeyError:
        raise UnknownNameError("metric", name, sorted(METRICS)) from None


def score_answer(prediction: str | None, gold: Gold, metric: str = "em") -> float:
    """``get_metric(metric)(prediction, gold)``.

    >>> score_answer("the answer is Paris", "Paris", "contains")
    1.0
    """
    return get_metric(metric)(prediction, gold)

"""Prompting strategies: how an agent's model is asked.

``direct`` answers at once; ``cot`` reasons step by step first; ``sc@k`` (self-consistency) samples
k chains of thought and takes the majority answer. A strategy fixes the number of calls, their
temperature and the prompt, so its worst-case cost is ``samples × one call``.
"""

from __future__ import annotations

import re
import string
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from agentroute.errors import ConfigurationError

_PUNCT = str.maketrans("", "", string.punctuation)
_ARTICLES = frozenset({"a", "an", "the"})
# the answer marker in English, Chinese, Japanese and Korean (a model asked in those often writes it so)
_ANSWER = re.compile(r"(?:final answer|answer|答案|答え|回答|정답)\s*[:：]\s*(.*)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Strategy:
    name: str
    samples: int = 1
    temperature: float = 0.0
    instruction: str = ""
    max_tokens_factor: float = 1.0

    def system_prompt(self, role_prompt: str) -> str:
        return f"{role_prompt}\n{self.instruction}".strip()

    def aggregate(self, texts: list[str]) -> tuple[str, float]:
        """The answer of several samples and its agreement (share of samples that gave it).

        :func:`~agentroute.aggregate.weighted_vote` with equal weights: samples are grouped by their
        normalised final answer (:func:`extract_answer`, :func:`normalize_answer`); a tie between
        groups goes to the group of the earliest sample, and the text returned is that group's
        first sample, so equal samples give equal results. Empty samples are no vote for an
        answer: any sample that answered beats them (its agreement counts every sample drawn),
        and an empty answer comes back only when every sample is empty.

        >>> get_strategy("sc@4").aggregate(["Answer: Rome", "Answer: Paris", "Paris.", "rome"])
        ('Answer: Rome', 0.5)
        >>> get_strategy("sc@3").aggregate(["", "", "Answer: Paris"])
        ('Answer: Paris', 0.3333333333333333)
        """
        from agentroute.aggregate import weighted_vote  # aggregate imports this module

        return weighted_vote(texts, [1.0] * len(texts))


#: The most samples a ``sc@K`` strategy may draw (K calls per step; beyond this it is a typo).
MAX_SAMPLES = 64
_SC = re.compile(r"sc@([1-9][0-9]{0,5})")


def get_strategy(name: object) -> Strategy:
    """Parse a strategy name: ``direct``, ``cot`` or ``sc@K`` with 1 ≤ K ≤ :data:`MAX_SAMPLES`.

    >>> get_strategy("sc@5").samples
    5
    >>> get_strategy("cot").temperature
    0.0
    >>> get_strategy("sc@0")
    Traceback (most recent call last):
    ...
    agentroute.errors.ConfigurationError: unknown strategy 'sc@0'; use direct, cot or sc@K (1 ≤ K ≤ 64)
    """
    if not isinstance(name, str):
        raise ConfigurationError(
            f"a strategy is a name such as 'direct', 'cot' or 'sc@3' (got {type(name).__name__})"
        )
    return _parse_strategy(name)


@lru_cache(maxsize=64)
def _parse_strategy(name: str) -> Strategy:
    if name == "direct":
        return Strategy("direct", instruction="Answer concisely.", max_tokens_factor=0.5)
    if name == "cot":
        return Strategy("cot", instruction="Think step by step, then give the final answer after 'Answer:'.")
    match = _SC.fullmatch(name)
    if match and int(match.group(1)) <= MAX_SAMPLES:
        return Strategy(
            name,
            samples=int(match.group(1)),
            temperature=0.7,
            instruction="Think step by step, then give the final answer after 'Answer:'.",
        )
    shown = name if len(name) <= 40 else name[:40] + "…"
    raise ConfigurationError(f"unknown strategy {shown!r}; use direct, cot or sc@K (1 ≤ K ≤ {MAX_SAMPLES})")


def extract_answer(text: str) -> str:
    """The part after the last 'Answer:' marker (or 答案：, 答え：, 回答：, 정답:) that has one, else
    the first line. A text whose markers all end their line with nothing after them (a sample cut
    off by its token limit right at ``Answer:``) gave no answer: ``""``, not its reasoning's first
    line and not the word "Answer" — so it votes as an empty sample in ``sc@k``.

    >>> extract_answer("Paris is big. Answer: Paris")
    'Paris'
    >>> extract_answer("首都是巴黎。答案：巴黎")
    '巴黎'
    >>> extract_answer("The capital is" + chr(10) + "Answer:")
    ''
    """
    matches = [m.strip() for m in _ANSWER.findall(text)]
    if matches:
        given = [m for m in matches if m]
        return given[-1] if given else ""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0] if lines else ""


def _other_script(words: list[str]) -> bool:
    """Whether a letter of ``words`` is of a script other than Latin (by its Unicode name)."""
    return any(
        c.isalpha() and not c.isascii() and not unicodedata.name(c, "").startswith("LATIN ")
        for w in words
        for c in w
    )


def normalize_answer(text: str | None) -> str:
    """SQuAD-style normalisation: lower case, no punctuation, no articles, single spaces.

    Punctuation is ASCII's (SQuAD's script: ``string.punctuation``), so English and other text in
    the Latin script scores exactly as the published EM/F1 do (``"1989–90"`` keeps its en dash,
    ``"Monk’s"`` its apostrophe). Text with a letter of another script (Chinese, Japanese, Cyrillic,
    Greek …) loses Unicode's punctuation too, as MLQA's scoring does (Lewis et al., arXiv
    1910.07475): ``"巴黎。"`` is ``"巴黎"``, ``"«Москва»"`` is ``"москва"``. An answer made only of
    non-ASCII punctuation (``"…"``) is kept as it is rather than emptied. The rule is idempotent.

    The articles *a*, *an*, *the* are dropped as words (Rajpurkar et al., arXiv 1606.05250) unless
    they are the whole answer: a multiple-choice answer ``"A"`` stays ``"a"``, never the empty
    answer (which would make an empty prediction match the gold ``"A"`` and merge ``"A"`` votes
    with empty samples). The one home of this rule: voting (:mod:`agentroute.aggregate`, ``sc@k``)
    and the answer metrics (:mod:`agentroute.eval.answers`) use it.

    >>> normalize_answer("The  Eiffel Tower!")
    'eiffel tower'
    >>> normalize_answer("A.")
    'a'
    >>> normalize_answer("「東京」。") == normalize_answer("東京")
    True
    >>> normalize_answer("“1989–90”")  # Latin script: SQuAD's ASCII punctuation only
    '“1989–90”'
    """
    words = (text or "").lower().translate(_PUNCT).split()
    if not all(w.isascii() for w in words) and _other_script(words):  # Unicode punctuation too (P*: 。「」«»)
        words = "".join(c for c in " ".join(words) if unicodedata.category(c)[0] != "P").split() or words
    kept = [w for w in words if w not in _ARTICLES]
    return " ".join(kept or words)

"""Router-R1's rewards as plain functions (the TRL habit: keyword arguments in, ``list[float]`` out).

Router-R1 (Zhang et al., "Router-R1: Teaching LLMs Multi-Round Routing and Aggregation via
Reinforcement Learning", arXiv:2506.09033) scores one rollout of the think/route loop with

.. math::

    R = \\begin{cases} -1 & \\text{format fails} \\\\
        (1-\\alpha)\\,\\text{outcome} + \\alpha\\, c & \\text{format holds and the answer is correct} \\\\
        0 & \\text{otherwise} \\end{cases}

where the *format* rules are those of :func:`format_errors`, *outcome* is SQuAD-normalised exact
match (or token F1) against any gold answer, and the *cost* reward :math:`c` is computed as the
released code does: :math:`raw = \\sum_\\text{calls} \\text{completion\\_tokens} \\times
\\text{output price per 1M}`, :math:`r = \\sqrt{raw}`, a rolling window of the last 1,000 values
of :math:`r` (the current batch included), :math:`lo, hi` its 5th/95th percentiles and
:math:`c = 1 - \\operatorname{clip}((r - lo)/(hi - lo), 0, 1)`, or 0.5 when :math:`hi - lo < 10^{-8}`.
"""

from __future__ import annotations

import math
import re
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from agentroute.strategies import normalize_answer

#: The action tags: Router-R1's ``<search>`` and agentroute's ``<route>`` mean the same.
ROUTE_TAGS = ("route", "search")
TAGS = ("think", "answer", "information", *ROUTE_TAGS)
_TAG = re.compile(r"<(/?)(think|answer|information|route|search)>")
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or a list of chat messages (their contents joined).

    >>> completion_text([{"role": "assistant", "content": "<answer>x</answer>"}])
    '<answer>x</answer>'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    return "".join(str(m.get("content", "")) for m in completion)


def extract_answer(text: str) -> str | None:
    """The content of the last ``<answer>`` block, stripped; ``None`` when there is none.

    >>> extract_answer("<think>t</think><answer> Paris </answer>")
    'Paris'
    >>> extract_answer("no answer") is None
    True
    """
    found = _ANSWER.findall(text)
    return found[-1].strip() if found else None


def parse_route(body: str, agents: Iterable[str]) -> tuple[str, str] | str:
    """``(agent, query)`` from a route body ``name: query``, or why the body is not one.

    The name is matched case-insensitively against ``agents`` and returned as they spell it.

    >>> parse_route(" Smol-Direct: who wrote Dune? ", ["smol-direct"])
    ('smol-direct', 'who wrote Dune?')
    >>> parse_route("who wrote Dune?", ["smol-direct"])
    'a route action is `agent-name: query` with exactly one colon'
    >>> parse_route("gpt-9: who wrote Dune?", ["smol-direct"])
    "unknown agent 'gpt-9'"
    """
    if body.count(":") != 1:
        return "a route action is `agent-name: query` with exactly one colon"
    name, query = (part.strip() for part in body.split(":"))
    known = {a.lower(): a for a in agents}
    if name.lower() not in known:
        return f"unknown agent {name!r}"
    if not query:
        return "the query after the colon is empty"
    return known[name.lower()], query


def routable(query: str) -> str:
    """``query`` as the body of a route action can carry it: its colons written as ``∶`` (a route
    body has exactly one colon, after the agent's name) and the loop's tags removed.

    >>> routable("Dune: who wrote it? <answer>")
    'Dune∶ who wrote it?'
    """
    return " ".join(_TAG.sub(" ", query).replace(":", "\u2236").split())


def format_errors(text: str, agents: Iterable[str]) -> list[str]:
    """Every rule of Router-R1's format that ``text`` (one whole rollout) breaks; ``[]`` when valid.

    The rules: starts with ``<think>``, ends with ``</answer>``; tags balanced and not nested;
    exactly one answer; at least one think; as many ``<information>`` blocks as route actions;
    each route body ``name:query`` with one colon, a known agent and a non-empty query.

    >>> format_errors("<think>easy</think><answer>4</answer>", ["a"])
    []
    >>> format_errors("<think>x</think><route>a: q</route><information>i</information><answer>y</answer>", ["a"])
    []
    >>> format_errors("<answer>4</answer>", ["a"])
    ['does not start with <think>', 'no <think> block']
    >>> format_errors("<think><answer>4</answer></think>", ["a"])
    ['does not end with </answer>', '<answer> nested in <think>']
    """
    agents = list(agents)
    text = text.strip()
    errors: list[str] = []
    if not text.startswith("<think>"):
        errors.append("does not start with <think>")
    if not text.endswith("</answer>"):
        errors.append("does not end with </answer>")
    counts: Counter[str] = Counter()
    open_tag: str | None = None
    start = 0
    bodies: list[str] = []
    for m in _TAG.finditer(text):
        closing, tag = m.group(1) == "/", m.group(2)
        if not closing:
            if open_tag is not None:
                errors.append(f"<{tag}> nested in <{open_tag}>")
                break
            open_tag, start = tag, m.end()
        else:
            if open_tag != tag:
                errors.append(f"</{tag}> without a matching <{tag}>")
                break
            counts["route" if tag in ROUTE_TAGS else tag] += 1
            if tag in ROUTE_TAGS:
                bodies.append(text[start : m.start()])
            open_tag = None
    else:
        if open_tag is not None:
            errors.append(f"<{open_tag}> is never closed")
    if errors and any("nested" in e or "matching" in e for e in errors):
        return errors
    if counts["answer"] != 1:
        errors.append(f"{counts['answer']} <answer> blocks (exactly one is required)")
    if counts["think"] < 1:
        errors.append("no <think> block")
    if counts["route"] != counts["information"]:
        errors.append(f"{counts['route']} route actions but {counts['information']} <information> blocks")
    for body in bodies:
        parsed = parse_route(body, agents)
        if isinstance(parsed, str):
            errors.append(parsed)
    return errors


def format_valid(text: str, agents: Iterable[str]) -> bool:
    """Whether ``text`` follows every format rule of :func:`format_errors`.

    >>> format_valid("<think>x</think><answer>y</answer>", [])
    True
    """
    return not format_errors(text, agents)


def exact_match(prediction: str | None, golds: str | Sequence[str]) -> float:
    """1.0 when the SQuAD-normalised prediction equals a normalised gold answer, else 0.0.

    >>> exact_match("The Eiffel Tower.", ["eiffel tower"])
    1.0
    >>> exact_match(None, "x")
    0.0
    """
    if prediction is None:
        return 0.0
    golds = [golds] if isinstance(golds, str) else list(golds)
    pred = normalize_answer(prediction)
    return 1.0 if any(pred == normalize_answer(g) for g in golds) else 0.0


def token_f1(prediction: str | None, golds: str | Sequence[str]) -> float:
    """The best SQuAD token F1 of the prediction against the gold answers.

    >>> token_f1("Barack Obama", ["Obama"])
    0.6666666666666666
    >>> token_f1("yes", ["no"])
    0.0
    """
    if prediction is None:
        return 0.0
    golds = [golds] if isinstance(golds, str) else list(golds)
    pred = normalize_answer(prediction).split()
    best = 0.0
    for gold in golds:
        ref = normalize_answer(gold).split()
        if pred in (["yes"], ["no"], ["noanswer"]) or ref in (["yes"], ["no"], ["noanswer"]):
            score = float(pred == ref)  # SQuAD/HotpotQA: yes/no answers score all or nothing
        else:
            common = sum((Counter(pred) & Counter(ref)).values())
            score = 0.0 if common == 0 else 2 * common / (len(pred) + len(ref))
        best = max(best, score)
    return best


def outcome_score(
    prediction: str | None, golds: str | Sequence[str], metric: Literal["em", "f1"] = "em"
) -> float:
    """Exact match or token F1 (``metric``) of an extracted answer.

    >>> outcome_score("Obama", ["Barack Obama"], "f1")
    0.6666666666666666
    """
    return exact_match(prediction, golds) if metric == "em" else token_f1(prediction, golds)


def raw_cost(calls: Iterable[tuple[float, float]]) -> float:
    """Σ completion_tokens × output price (USD per 1M tokens) over the routed calls.

    >>> raw_cost([(10, 0.2), (30, 1.0)])
    32.0
    """
    return float(sum(tokens * price for tokens, price in calls))


class CostNormalizer:
    """The cost reward c = 1 − clip((√raw − lo)/(hi − lo), 0, 1) over a rolling window of √raw.

    ``lo``/``hi`` are the 5th/95th percentiles (linear interpolation, NumPy's default) of the last
    ``window`` values of √raw, the batch being scored included; c = 0.5 when hi − lo < 1e-8.

    >>> norm = CostNormalizer(window=1000)
    >>> norm([0.0, 0.0])        # degenerate window: every cost looks the same
    [0.5, 0.5]
    >>> [round(c, 4) for c in norm([0.0, 100.0])]  # √: 0 and 10; window [0, 0, 0, 10]
    [1.0, 0.0]
    """

    def __init__(self, window: int = 1000, low: float = 5.0, high: float = 95.0):
        if window < 1:
            raise ValueError(f"window must be ≥ 1 (got {window})")
        self.window, self.low, self.high = window, low, high
        self.history: deque[float] = deque(maxlen=window)

    def __call__(self, raw: Sequence[float]) -> list[float]:
        roots = [math.sqrt(max(0.0, float(r))) for r in raw]
        self.history.extend(roots)
        lo, hi = _percentile(self.history, self.low), _percentile(self.history, self.high)
        if hi - lo < 1e-8:
            return [0.5] * len(roots)
        return [1.0 - min(1.0, max(0.0, (r - lo) / (hi - lo))) for r in roots]


def _percentile(values: Iterable[float], q: float) -> float:
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def total_reward(valid: bool, outcome: float, cost: float, alpha: float = 0.0) -> float:
    """Router-R1's total: −1 on bad format; (1−α)·outcome + α·cost when correct; 0 otherwise.

    "Correct" means outcome > 0 (exact match; with F1, any overlap).

    >>> total_reward(False, 1.0, 1.0, 0.5)
    -1.0
    >>> total_reward(True, 1.0, 0.25, 0.2)
    0.85
    >>> total_reward(True, 0.0, 1.0, 0.5)
    0.0
    """
    if not valid:
        return -1.0
    if outcome <= 0:
        return 0.0
    return round((1 - alpha) * outcome + alpha * cost, 12)


# -- TRL reward functions ---------------------------------------------------------------------------
def format_reward(
    completions: Sequence[Any], *, agents: Sequence[Sequence[str]], **kwargs: Any
) -> list[float]:
    """0 for a well-formed rollout, −1 otherwise (``agents``: the agent names each prompt offered).

    >>> format_reward(["<think>a</think><answer>b</answer>", "<answer>b</answer>"], agents=[["x"], ["x"]])
    [0.0, -1.0]
    """
    return [
        0.0 if format_valid(completion_text(c), a) else -1.0 for c, a in zip(completions, agents, strict=True)
    ]


def outcome_reward(
    completions: Sequence[Any], *, answer: Sequence[str | Sequence[str]], metric: str = "em", **kwargs: Any
) -> list[float]:
    """Outcome of each rollout's extracted answer against its gold ``answer`` (no format gate).

    >>> outcome_reward(["<answer>Paris</answer>", "<answer>Rome</answer>"], answer=["paris", "Paris"])
    [1.0, 0.0]
    """
    m: Any = metric
    return [
        outcome_score(extract_answer(completion_text(c)), g, m)
        for c, g in zip(completions, answer, strict=True)
    ]


class RouterR1Reward:
    """The total reward as a TRL reward function; owns the cost window across training steps.

    Takes ``answer`` (gold answers), ``agents`` (names offered) and ``cost_raw`` (Σ completion
    tokens × output price per 1M of each rollout's routed calls, from the rollout).

    >>> reward = RouterR1Reward(alpha=0.5)
    >>> ok = "<think>a</think><route>x: q</route><information>i</information><answer>Paris</answer>"
    >>> reward([ok, ok, "<answer>Paris</answer>"], answer=["Paris"] * 3, agents=[["x"]] * 3,
    ...        cost_raw=[4.0, 16.0, 0.0])   # √: 2, 4, 0 → lo 0.2, hi 3.8 → c = 0.5, 0.0
    [0.75, 0.5, -1.0]
    """

    __name__ = "router_r1"

    def __init__(self, *, alpha: float = 0.0, metric: Literal["em", "f1"] = "em", window: int = 1000):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha (cost_coe) must be in [0, 1] (got {alpha})")
        self.alpha, self.metric = alpha, metric
        self.normalizer = CostNormalizer(window)

    def __call__(
        self,
        completions: Sequence[Any],
        *,
        answer: Sequence[str | Sequence[str]],
        agents: Sequence[Sequence[str]],
        cost_raw: Sequence[float],
        **kwargs: Any,
    ) -> list[float]:
        # the rollout's own text when given (TRL's decode of the completion ids is the same text)
        texts = list(kwargs.get("episode_text") or [completion_text(c) for c in completions])
        costs = self.normalizer(cost_raw)
        out = []
        for text, gold, names, c in zip(texts, answer, agents, costs, strict=True):
            valid = format_valid(text, names)
            outcome = outcome_score(extract_answer(text), gold, self.metric) if valid else 0.0
            out.append(total_reward(valid, outcome, c, self.alpha))
        return out

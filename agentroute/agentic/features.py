"""The routing state of a budget-aware agentic router, computed from a :class:`RouteContext`.

One function serves training (contexts built by :class:`~agentroute.agentic.env.AgenticEnv`) and
serving (contexts built by the dispatcher), so the policy never sees a state at serving time that
was computed differently in training. BoPO (arXiv:2602.21227) lists not conditioning on the
remaining budget as a limitation of its policy; this state includes it, both as a fraction and in
absolute terms:

- **step**: horizon known, step/horizon, steps left/horizon, step index (/10);
- **USD budget**: limited, fraction left, left in top-tier calls (/10), per step left, log₁₀ USD;
- **large-call budget**: limited, fraction left, calls left (/10), per step left;
- **available rungs**: which tiers the ledger still affords (budget-constrained decoding);
- **history**: share of earlier steps on each rung, last rung, steps so far (/10), share of known
  failures, last outcome (success / failure / unknown), and whether this step was already tried.

The query part is the MiniLM embedding of the *tail* of the step's text (its last
``BoPOConfig.tail_chars`` characters, cut anywhere: :func:`agentroute.embed.context_text` with
``word_start=False``): long prompts put few-shot demonstrations first and the step's own request
last, and MiniLM reads only the first 256 word pieces.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agentroute.types import RouteContext, Step

_CARD_RANK = {"small": 0, "medium": 1, "large": 2}
STEP_FEATURES = 4
USD_FEATURES = 5
LARGE_FEATURES = 4
FIXED_HISTORY = 1 + 1 + 3 + 2
#: Index (from the end) of the "this step was already tried" flag: set at a retry state.
RETRY_FLAG = -2


def n_scalar_features(n_tiers: int) -> int:
    """Length of :func:`scalar_features` for a ladder of ``n_tiers`` rungs.

    >>> n_scalar_features(2)
    26
    """
    return STEP_FEATURES + USD_FEATURES + LARGE_FEATURES + 3 * n_tiers + FIXED_HISTORY


def rung_of(model: str, cards: Mapping[str, Any], ladder: Sequence[str]) -> int:
    """A model's rung on ``ladder``: its position when on it, else from its card's tier.

    Off-ladder models map by card tier: ``small`` → 0, ``large`` → the top, ``medium`` → the
    middle (rounded down), so a router trained on one pool routes another pool's tiers.

    >>> rung_of("b", {}, ["a", "b"]), rung_of("x", {}, ["a", "b"])
    (1, 0)
    """
    if model in ladder:
        return list(ladder).index(model)
    tier = getattr(cards.get(model), "tier", "small")
    top = len(ladder) - 1
    return {0: 0, 2: top}.get(_CARD_RANK.get(tier, 0), top // 2)


def _outcome(step: Step) -> int:
    """0 success, 1 failure, 2 unknown."""
    if step.status == "failed":
        return 1
    if step.score is None:
        return 2
    return 0 if step.score >= 0.5 else 1


def scalar_features(ctx: RouteContext, ladder: Sequence[str], ref_usd: float) -> np.ndarray:
    """The non-text part of the state (length :func:`n_scalar_features`), all in [0, 1].

    ``ref_usd`` is the typical worst case of a top-tier call: absolute USD budgets are expressed
    in such calls.
    """
    n = len(ladder)
    out: list[float] = []
    horizon = ctx.metadata.get("horizon") if ctx.metadata else None
    t = ctx.step_index
    if horizon:
        h = float(horizon)
        steps_left = max(h - t, 1.0)
        out += [1.0, min(t / h, 1.0), steps_left / h, min(t, 10) / 10]
    else:
        steps_left = 1.0
        out += [0.0, 0.0, 0.0, min(t, 10) / 10]
    for resource in ("usd", "large_calls"):
        limit = ctx.budget.get(resource)
        if limit is None:
            out += [0.0, 1.0, 1.0, 1.0] + ([1.0] if resource == "usd" else [])
            continue
        left = max(float(ctx.remaining.get(resource, limit)), 0.0)
        units = left / ref_usd if resource == "usd" else left
        out += [1.0, min(left / limit, 1.0), min(units, 10.0) / 10, min(units / steps_left, 2.0) / 2]
        if resource == "usd":
            out.append(min(max((math.log10(max(left, 1e-7)) + 7) / 7, 0.0), 1.0))
    available = np.zeros(n)
    for agent in ctx.candidates:
        available[rung_of(agent.model, ctx.cards, ladder)] = 1.0
    share, last = np.zeros(n), np.zeros(n)
    history = ctx.history
    for step in history:
        share[rung_of(step.agent.model, ctx.cards, ladder)] += 1
    if history:
        share /= len(history)
        last[rung_of(history[-1].agent.model, ctx.cards, ladder)] = 1.0
    outcomes = [_outcome(s) for s in history]
    last_outcome = np.zeros(3)
    if outcomes:
        last_outcome[outcomes[-1]] = 1.0
    attempts = ctx.attempts
    out += [*available, *share, *last, min(len(history), 10) / 10]
    out += [outcomes.count(1) / max(len(outcomes), 1), *last_outcome]
    out += [float(bool(attempts)), float(bool(attempts) and _outcome(attempts[-1]) == 1)]
    return np.asarray(out, dtype=np.float32)


def available_mask(ctx: RouteContext, ladder: Sequence[str]) -> np.ndarray:
    """Which rungs have a candidate now (the ledger has masked the others)."""
    mask = np.zeros(len(ladder), dtype=bool)
    for agent in ctx.candidates:
        mask[rung_of(agent.model, ctx.cards, ladder)] = True
    return mask

"""A provider's reported usage is outside data: validated before the ledger books it.

:func:`checked_usage` reads ``prompt_tokens`` / ``completion_tokens`` from a usage object or
mapping and returns them as whole numbers, or ``None`` for a field the provider did not report
(the caller counts it from the text). Anything else — a negative, NaN or infinite count, a
fractional or non-numeric one, or a count above :data:`ABSURD_FACTOR` × the model's context window —
raises :class:`~agentroute.errors.ProtocolError`: the dispatcher then charges the attempt's worst
case, audits ``protocol_error`` and avoids the endpoint for the rest of the task. A completion
longer than ``max_tokens`` is *not* a protocol error: it is returned as reported, the ledger books
it as billed and the dispatcher audits the overrun.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agentroute.errors import ProtocolError
from agentroute.pool.card import ModelCard
from agentroute.types import Completion, CompletionRequest

if TYPE_CHECKING:
    from agentroute.pool.backends.base import Backend

#: A reported count above this multiple of the card's context window cannot be real.
ABSURD_FACTOR = 10


def checked_count(card: ModelCard, field: str, value: Any) -> int | None:
    """``value`` as a token count, ``None`` when absent; :class:`ProtocolError` when it cannot be one.

    >>> from agentroute.pool.card import ModelCard
    >>> card = ModelCard(id="m", context_window=1000)
    >>> checked_count(card, "completion_tokens", 12.0)
    12
    >>> checked_count(card, "completion_tokens", -1)
    Traceback (most recent call last):
    ...
    agentroute.errors.ProtocolError: m: usage.completion_tokens is negative (got -1)
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(
            card.id, f"usage.{field} is not a number (got {type(value).__name__} {value!r:.40})"
        )
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ProtocolError(card.id, f"usage.{field} is not finite (got {value!r})")
        if value != int(value):
            raise ProtocolError(card.id, f"usage.{field} is not a whole number (got {value!r})")
    count = int(value)
    if count < 0:
        raise ProtocolError(card.id, f"usage.{field} is negative (got {value!r})")
    limit = ABSURD_FACTOR * card.context_window
    if count > limit:
        raise ProtocolError(
            card.id,
            f"usage.{field} is absurd (got {count}, above {ABSURD_FACTOR} × context window {card.context_window})",
        )
    return count


def checked_usage(card: ModelCard, usage: Any) -> tuple[int | None, int | None]:
    """``(prompt_tokens, completion_tokens)`` of a reported usage, each ``None`` when not reported.

    ``usage`` may be ``None``, a mapping, or an object with those attributes (the OpenAI SDK and
    LiteLLM build their usage objects without validating the numbers in them).
    """
    if usage is None:
        return None, None
    if isinstance(usage, Mapping):
        raw = dict(usage)
    elif hasattr(usage, "prompt_tokens") or hasattr(usage, "completion_tokens"):
        raw = {f: getattr(usage, f, None) for f in ("prompt_tokens", "completion_tokens")}
    else:
        raise ProtocolError(card.id, f"usage is not an object (got {type(usage).__name__} {usage!r:.60})")
    return (
        checked_count(card, "prompt_tokens", raw.get("prompt_tokens")),
        checked_count(card, "completion_tokens", raw.get("completion_tokens")),
    )


def reply_usage(
    card: ModelCard, usage: Any, *, messages: Any, text: str, chunks: int = 0
) -> tuple[int | None, int | None]:
    """:func:`checked_usage`, read against the reply it came with.

    A completion count that leaves out the reasoning tokens — ``total_tokens`` above prompt plus
    completion, or ``completion_tokens_details.reasoning_tokens`` above the completion (some
    OpenAI-compatible gateways to Gemini send ``candidatesTokenCount`` alone, while the provider
    bills the thoughts as output) — is raised to what was billed (:func:`billed_completion`). A
    zero count for a non-empty prompt or reply is no report (LiteLLM fills in zeros when the
    provider sent no usage): ``None``, to be counted. A completion count below the content chunks
    received (each carries at least one token) is a :class:`ProtocolError`.
    """
    tokens_in, tokens_out = checked_usage(card, usage)
    tokens_out = billed_completion(card, usage, tokens_in, tokens_out)
    if tokens_in == 0 and any((m.get("content") or "") for m in messages):
        tokens_in = None
    if tokens_out == 0 and text:
        tokens_out = None
    if tokens_out is not None and tokens_out < chunks:
        raise ProtocolError(
            card.id, f"usage.completion_tokens ({tokens_out}) is below the {chunks} chunks received"
        )
    return tokens_in, tokens_out


def billed_completion(
    card: ModelCard, usage: Any, tokens_in: int | None, tokens_out: int | None
) -> int | None:
    """The completion tokens billed, from a usage whose ``completion_tokens`` may leave out the
    reasoning: ``total_tokens - prompt_tokens`` when the total is larger than the two counts, else
    ``completion_tokens + reasoning_tokens`` when the reasoning alone is larger than the
    completion (it cannot be part of it); ``tokens_out`` as it is otherwise. A total or reasoning
    count that is not a valid count is ignored (the completion count was checked).

    >>> from agentroute.pool.card import ModelCard
    >>> card = ModelCard(id="m", context_window=1000)
    >>> billed_completion(card, {"prompt_tokens": 20, "completion_tokens": 151, "total_tokens": 553}, 20, 151)
    533
    >>> billed_completion(card, {"completion_tokens": 5, "completion_tokens_details": {"reasoning_tokens": 6}}, None, 5)
    11
    """
    if tokens_out is None:
        return None
    total = _optional_count(card, "total_tokens", field_of(usage, "total_tokens"))
    if tokens_in is not None and total is not None and total > tokens_in + tokens_out:
        return total - tokens_in
    reasoning = _optional_count(
        card, "reasoning_tokens", field_of(field_of(usage, "completion_tokens_details"), "reasoning_tokens")
    )
    if reasoning is not None and reasoning > tokens_out:
        return tokens_out + reasoning
    return tokens_out


def field_of(part: Any, name: str) -> Any:
    """``part[name]`` of a mapping sent as JSON, ``part.name`` of an SDK's object; ``None`` when absent."""
    return part.get(name) if isinstance(part, Mapping) else getattr(part, name, None)


def _optional_count(card: ModelCard, field: str, value: Any) -> int | None:
    try:
        return checked_count(card, field, value)
    except ProtocolError:
        return None


__all__ = ["ABSURD_FACTOR", "billed_completion", "checked_count", "checked_usage", "field_of", "reply_usage"]


def with_usage(
    completion: Completion, backend: Backend, request: CompletionRequest, card: ModelCard
) -> Completion:
    """``completion`` with the usage it did not report counted: prompt tokens as the backend counts
    them for the ledger, the text with :meth:`Backend.count_tokens`, the cost from the card's
    prices (``raw["usage_counted"]`` set). Built-in backends report all three."""
    if (
        completion.tokens_in is not None
        and completion.tokens_out is not None
        and completion.cost_usd is not None
    ):
        return completion
    tokens_in = (
        completion.tokens_in if completion.tokens_in is not None else backend.prompt_tokens(request, card)
    )
    tokens_out = (
        completion.tokens_out
        if completion.tokens_out is not None
        else backend.count_tokens(completion.text, card)
    )
    cost = completion.cost_usd if completion.cost_usd is not None else card.usd(tokens_in, tokens_out)
    return completion.model_copy(
        update={
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "cost_usd": cost,
            "raw": {**completion.raw, "usage_counted": True},
        }
    )

"""LiteLLM backend: any provider LiteLLM knows (``openai/gpt-4o-mini``, ``anthropic/…``, ``hosted_vllm/…``).

Keys come from the environment (``api_key_env`` on the card, else the provider's usual variable).
Prices come from the card when it sets them, else from LiteLLM's bundled cost table (read locally:
``LITELLM_LOCAL_MODEL_COST_MAP=True``, no network). A self-hosted card (``base_url``) without
prices, or a model the cost table does not know, is refused with :class:`ConfigurationError` —
never priced $0. ``worst_case_usd`` and the settled cost use the same price source. LiteLLM is
imported on first use (it takes seconds) and makes no retries (the dispatcher retries).
"""

from __future__ import annotations

import os
import time
from types import ModuleType
from typing import Any

from agentroute._optional import require
from agentroute.errors import BackendError, ConfigurationError
from agentroute.pool.backends.base import Backend
from agentroute.pool.backends.openai import api_key_for, backend_error, prompt_overhead
from agentroute.pool.card import ModelCard
from agentroute.types import Completion, CompletionRequest


def litellm_module() -> ModuleType:
    """Import LiteLLM with its local cost map (the default fetches it from the network at import)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    litellm = require("litellm")
    setattr(litellm, "suppress_debug_info", True)  # noqa: B010 (ModuleType has no such attribute for mypy)
    return litellm


def litellm_usd(card: ModelCard, tokens_in: int, tokens_out: int) -> float:
    """Cost of a call of ``card``: its own prices, else LiteLLM's cost table.

    Raises :class:`ConfigurationError` for a self-hosted card without prices, a card priced only
    per second, or a model the cost table does not know.
    """
    if card.priced:
        return card.usd(tokens_in, tokens_out)
    if card.price_per_second is not None:
        raise ConfigurationError(
            f"model {card.id!r}: price_per_second applies to local models only; "
            "set input_price and output_price (USD per 1M tokens) for the litellm backend"
        )
    if card.base_url:
        raise ConfigurationError(
            f"model {card.id!r} is self-hosted (base_url {card.base_url!r}) and has no price: set "
            "input_price and output_price (USD per 1M tokens) on its card"
        )
    litellm = litellm_module()
    try:
        usd_in, usd_out = litellm.cost_per_token(
            model=card.backend_model, prompt_tokens=tokens_in, completion_tokens=tokens_out
        )
    except Exception as exc:
        raise ConfigurationError(
            f"model {card.id!r}: LiteLLM's cost table has no price for {card.backend_model!r}; "
            "set input_price and output_price (USD per 1M tokens) on its card"
        ) from exc
    return float(usd_in) + float(usd_out)


class LiteLLMBackend(Backend):
    """Call cards with ``backend: litellm`` through ``litellm.acompletion``."""

    name = "litellm"

    def count_tokens(self, text: str, card: ModelCard) -> int:
        """Tokens by LiteLLM's bundled tiktoken encoding (offline; exact for OpenAI models, close for others)."""
        encoding = getattr(litellm_module(), "encoding", None)
        if encoding is None:
            return super().count_tokens(text, card)
        return max(1, len(encoding.encode(text, disallowed_special=())))

    def prompt_tokens(self, request: CompletionRequest, card: ModelCard) -> int:
        return self.count_tokens(request.prompt_text, card) + prompt_overhead(request.messages)

    def worst_case_usd(self, request: CompletionRequest, card: ModelCard, prompt_tokens: int | None = None) -> float:
        if prompt_tokens is None:
            prompt_tokens = self.prompt_tokens(request, card)
        return litellm_usd(card, prompt_tokens, request.max_tokens)

    async def complete(self, request: CompletionRequest, card: ModelCard) -> Completion:
        litellm_usd(card, 0, 0)  # refuse an unpriceable card before calling
        litellm = litellm_module()
        kwargs: dict[str, Any] = {
            "model": card.backend_model,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "timeout": card.timeout_s,
            "num_retries": 0,
            "max_retries": 0,
        }
        if request.stop:
            kwargs["stop"] = request.stop
        if card.base_url:
            kwargs["api_base"] = card.base_url
        key = api_key_for(card)
        if key is not None:
            kwargs["api_key"] = key
        started = time.perf_counter()
        try:
            response = await litellm.acompletion(**kwargs)
        except Exception as exc:
            raise backend_error(exc, card.id) from exc
        latency_ms = (time.perf_counter() - started) * 1000
        if not response.choices:
            raise BackendError(card.id, "the provider returned no choices", retryable=True)
        choice = response.choices[0]
        text = choice.message.content or ""
        usage = getattr(response, "usage", None)
        tokens_in = int(usage.prompt_tokens) if usage else self.count_tokens(request.prompt_text, card)
        tokens_out = int(usage.completion_tokens) if usage else self.count_tokens(text, card)
        return Completion(
            model=card.id,
            text=text,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=litellm_usd(card, tokens_in, tokens_out),
            latency_ms=latency_ms,
            raw={"id": response.id, "finish_reason": choice.finish_reason},
        )


__all__ = ["LiteLLMBackend", "litellm_module", "litellm_usd"]

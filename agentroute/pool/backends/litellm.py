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

import httpx
import openai

from agentroute._optional import require
from agentroute.errors import BackendError, ConfigurationError, ProtocolError
from agentroute.pool.backends.base import Backend
from agentroute.pool.backends.counting import (
    EndpointCounting,
    is_openai_endpoint,
    openai_encoding,
)
from agentroute.pool.backends.openai import api_key_for, backend_error, never_sent
from agentroute.pool.backends.usage import reply_usage
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


#: LiteLLM provider prefixes whose models are OpenAI's (counted with tiktoken on OpenAI's endpoint).
OPENAI_PROVIDERS = frozenset({"openai", "azure", "text-completion-openai"})


class LiteLLMBackend(EndpointCounting, Backend):
    """Call cards with ``backend: litellm`` through ``litellm.acompletion``.

    Prompt tokens: OpenAI models (``gpt-4o-mini``, ``openai/…``, ``azure/…``) on OpenAI's endpoint
    through tiktoken, offline; a self-hosted ``base_url`` through its ``POST /tokenize`` when
    :meth:`aprompt_tokens` found one; every other provider with the byte bound (their tokenizers
    are not on disk, and a count below the bill would break the budget). Usage is validated like
    the openai backend's.
    """

    name = "litellm"

    def __init__(self) -> None:
        self._init_counting()

    def encoding(self, card: ModelCard) -> Any | None:
        """tiktoken's encoding when ``card`` is an OpenAI model on OpenAI's endpoint, else ``None``."""
        model = card.backend_model
        provider = model.split("/", 1)[0] if "/" in model else "openai"
        if provider not in OPENAI_PROVIDERS or not is_openai_endpoint(card.base_url):
            return None
        return openai_encoding(model)

    def served_name(self, card: ModelCard) -> str:
        """The model name a self-hosted server knows (LiteLLM's ``hosted_vllm/`` or ``openai/`` prefix dropped)."""
        model = card.backend_model
        return model.split("/", 1)[1] if "/" in model and model.split("/", 1)[0] in {"hosted_vllm", "openai"} else model

    def worst_case_usd(self, request: CompletionRequest, card: ModelCard, prompt_tokens: int | None = None) -> float:
        if prompt_tokens is None:
            prompt_tokens = self.prompt_tokens(request, card)
        return litellm_usd(card, prompt_tokens, request.max_tokens)

    async def complete(self, request: CompletionRequest, card: ModelCard) -> Completion:
        litellm_usd(card, 0, 0)  # refuse an unpriceable card before calling
        problem = self_hosted_without_url(card)
        if problem:
            raise ConfigurationError(f"model {card.id!r} {problem}")
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
            raise litellm_error(exc, card.id, card.base_url) from exc
        latency_ms = (time.perf_counter() - started) * 1000
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise ProtocolError(card.id, "the reply has no choices")
        choice = choices[0]
        text = getattr(getattr(choice, "message", None), "content", None) or ""
        if not isinstance(text, str):
            raise ProtocolError(card.id, f"the reply's content is not text (got {type(text).__name__})")
        raw: dict[str, Any] = {"id": getattr(response, "id", ""), "finish_reason": getattr(choice, "finish_reason", None)}
        tokens_in, tokens_out = reply_usage(card, getattr(response, "usage", None), messages=request.messages, text=text)
        if tokens_in is None or tokens_out is None:
            raw["usage_counted"] = True
            if tokens_in is None:
                tokens_in = await self.aprompt_tokens(request, card)
            if tokens_out is None:
                tokens_out = await self.count_text(text, card)
        return Completion(
            model=card.id,
            text=text,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=litellm_usd(card, tokens_in, tokens_out),
            latency_ms=latency_ms,
            raw=raw,
        )

    async def aclose(self) -> None:
        await self.tokenize.aclose()


def litellm_error(exc: BaseException, model: str, base_url: str | None = None) -> BackendError:
    """Map a LiteLLM exception to :class:`BackendError`, telling its real HTTP errors apart.

    LiteLLM reports failures of its own as ``InternalServerError`` (status 500) with no response
    headers and no body: a dropped connection (retryable; the provider may have billed it), or a
    reply it could not read — not JSON, or usage its response model rejects (NaN) — which is a
    :class:`ProtocolError`. An error status the provider really sent is mapped by
    :func:`~agentroute.pool.backends.openai.backend_error` (not billed).
    """
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, openai.APIConnectionError | TimeoutError | ConnectionError):  # litellm.Timeout too
        return backend_error(exc, model, base_url)
    status = getattr(exc, "status_code", None)
    synthesized = (
        isinstance(status, int)
        and getattr(exc, "litellm_response_headers", "") is None
        and getattr(exc, "body", "") is None
    )
    if not synthesized:
        if isinstance(exc, ValueError | TypeError | KeyError | AttributeError) and status is None:
            return ProtocolError(model, f"unreadable reply: {type(exc).__name__}: {str(exc)[:200]}")
        return backend_error(exc, model, base_url)
    cause = exc.__cause__ or exc.__context__
    detail = " ".join(str(cause or exc).split())[:300]
    if "Connection error" in detail or _transport_failure(exc):
        where = f" (endpoint {base_url})" if base_url else ""
        return BackendError(model, f"connection failed: {detail}{where}", retryable=True, billed=not never_sent(exc))
    return ProtocolError(model, f"unreadable reply: {detail}")


def _transport_failure(exc: BaseException) -> bool:
    """Whether a failed connection or transfer caused ``exc`` (LiteLLM's aiohttp transport, used for
    ``hosted_vllm/``, wraps it in a status-500 error: it is no unreadable reply)."""
    seen: BaseException | None = exc.__cause__ or exc.__context__
    for _ in range(12):
        if seen is None:
            return False
        if isinstance(seen, httpx.TransportError | ConnectionError | TimeoutError | OSError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def self_hosted_without_url(card: ModelCard) -> str | None:
    """Why ``card`` cannot be called: a ``hosted_vllm/`` model with no ``base_url`` (LiteLLM would
    send it to OpenAI's endpoint, with whatever OpenAI key is set), else ``None``."""
    if card.base_url or not card.backend_model.startswith("hosted_vllm/"):
        return None
    return (
        "field 'base_url': a hosted_vllm/ model is served by your own server: set base_url to its "
        "OpenAI URL (e.g. http://127.0.0.1:8000/v1)"
    )


__all__ = ["OPENAI_PROVIDERS", "LiteLLMBackend", "litellm_module", "litellm_error", "litellm_usd"]

"""OpenAI backend: any OpenAI-compatible chat-completions server (vLLM, llama.cpp, agentroute serve, OpenAI).

The card names the endpoint (``base_url``), the served model (``model``) and, optionally, the
environment variable holding its key (``api_key_env``; a self-hosted server gets ``"none"``).
Prices must be on the card: a self-hosted model is never priced $0 by accident. The backend makes
no retries of its own (the dispatcher retries retryable errors within the budget).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import httpx
import openai

from agentroute.errors import BackendError, ConfigurationError
from agentroute.pool.backends.base import Backend
from agentroute.pool.card import ModelCard
from agentroute.types import Completion, CompletionRequest

#: HTTP statuses worth retrying: timeout, conflict, too early, rate limit (and every 5xx).
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})


def backend_error(exc: BaseException, model: str) -> BackendError:
    """Map an OpenAI-SDK (or LiteLLM, whose errors subclass them) exception to :class:`BackendError`.

    Connection failures, timeouts, 408/409/425/429 and 5xx are retryable; authentication, bad
    requests and everything else are not.
    """
    if isinstance(exc, BackendError):
        return exc
    message = " ".join(str(exc).split())[:500] or type(exc).__name__
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError | TimeoutError | ConnectionError):
        return BackendError(model, f"{type(exc).__name__}: {message}", retryable=True)
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        retryable = status in RETRYABLE_STATUS or status >= 500
        return BackendError(model, f"HTTP {status} ({type(exc).__name__}): {message}", retryable=retryable)
    return BackendError(model, f"{type(exc).__name__}: {message}", retryable=False)


def api_key_for(card: ModelCard) -> str | None:
    """The card's key: ``$api_key_env`` when named (must be set), ``"none"`` for a self-hosted
    ``base_url``, else ``None`` (the client library reads its provider's usual variable)."""
    if card.api_key_env:
        key = os.environ.get(card.api_key_env)
        if not key:
            raise ConfigurationError(
                f"model {card.id!r} reads its API key from ${card.api_key_env}, which is not set"
            )
        return key
    return "none" if card.base_url else None


def prompt_overhead(messages: list[dict[str, str]]) -> int:
    """Tokens a chat template adds around the messages (≈4 a message + 3 to open the reply)."""
    return 4 * len(messages) + 3


def require_token_prices(card: ModelCard, backend: str) -> None:
    """Refuse a card this backend cannot price (token prices are required)."""
    if card.priced:
        return
    if card.price_per_second is not None:
        raise ConfigurationError(
            f"model {card.id!r}: price_per_second applies to local models only; "
            f"set input_price and output_price (USD per 1M tokens) for the {backend} backend"
        )
    raise ConfigurationError(
        f"model {card.id!r} has no price: set input_price and output_price (USD per 1M tokens) "
        f"on its card; the {backend} backend never prices a self-hosted model $0"
    )


class OpenAIBackend(Backend):
    """Call cards with ``backend: openai`` through ``openai.AsyncOpenAI`` (one client per endpoint and key)."""

    name = "openai"

    def __init__(self) -> None:
        self._clients: dict[
            tuple[str | None, str | None], tuple[asyncio.AbstractEventLoop, openai.AsyncOpenAI]
        ] = {}

    def client(self, card: ModelCard) -> openai.AsyncOpenAI:
        """The client for ``card``'s endpoint, bound to the running event loop."""
        key = (card.base_url, api_key_for(card))
        loop = asyncio.get_running_loop()
        entry = self._clients.get(key)
        if entry is None or entry[0] is not loop:  # connections cannot cross event loops
            try:
                client = openai.AsyncOpenAI(
                    base_url=card.base_url, api_key=key[1], max_retries=0, timeout=card.timeout_s
                )
            except openai.OpenAIError as exc:
                raise ConfigurationError(f"model {card.id!r}: {exc}") from exc
            self._clients[key] = entry = (loop, client)
        return entry[1]

    def prompt_tokens(self, request: CompletionRequest, card: ModelCard) -> int:
        return self.count_tokens(request.prompt_text, card) + prompt_overhead(request.messages)

    def worst_case_usd(self, request: CompletionRequest, card: ModelCard, prompt_tokens: int | None = None) -> float:
        require_token_prices(card, self.name)
        return super().worst_case_usd(request, card, prompt_tokens)

    async def complete(self, request: CompletionRequest, card: ModelCard) -> Completion:
        require_token_prices(card, self.name)
        client = self.client(card)
        kwargs: dict[str, Any] = {
            "model": card.backend_model,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "timeout": card.timeout_s,
        }
        if request.stop:
            kwargs["stop"] = request.stop
        started = time.perf_counter()
        try:
            response = await client.chat.completions.create(**kwargs)
        except Exception as exc:
            raise backend_error(exc, card.id) from exc
        latency_ms = (time.perf_counter() - started) * 1000
        if not response.choices:
            raise BackendError(card.id, "the server returned no choices", retryable=True)
        choice = response.choices[0]
        text = choice.message.content or ""
        usage = response.usage
        tokens_in = usage.prompt_tokens if usage else self.count_tokens(request.prompt_text, card)
        tokens_out = usage.completion_tokens if usage else self.count_tokens(text, card)
        raw: dict[str, Any] = {"id": response.id, "finish_reason": choice.finish_reason}
        extra = (response.model_extra or {}).get("agentroute")
        if isinstance(extra, dict) and isinstance(extra.get("confidence"), int | float):
            raw["confidence"] = float(extra["confidence"])  # served by agentroute's own server
        return Completion(
            model=card.id,
            text=text,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=card.usd(tokens_in, tokens_out),
            latency_ms=latency_ms,
            raw=raw,
        )

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        loop = asyncio.get_running_loop()
        for client_loop, client in clients:
            if client_loop is loop:
                await client.close()


__all__ = [
    "RETRYABLE_STATUS",
    "OpenAIBackend",
    "api_key_for",
    "backend_error",
    "prompt_overhead",
    "require_token_prices",
]

"""A response cache kept in the interaction memory, for learning in the live environment.

Training GraphPlanner live (the planner graph on the local pool) repeats episodes over the same
questions; with :func:`with_response_cache` the same prompt to the same agent is served from the
memory after its first visit — at $0 and 0 tokens, so a repeated episode costs nothing — and a
miss calls the model for real and stores the reply. Entries are kept with the memory's router-state
API (``save_router_state``/``load_router_state``) under ``graph-planner/cache/<sha256 of the
request>``, so any store (SQLite, PostgreSQL) holds them and every worker sharing the store shares
the cache.

Only deterministic requests (temperature 0) are cached: a sampled request (self-consistency) must
draw a fresh sample each time, so it always calls the model.

A hit is free by default ($0, 0 tokens: what a repeated training episode pays). With
``charge_hits=True`` a hit is settled at the token counts and USD of the call that filled the entry,
so costs and budgets read as if every call were made (evaluation: the compute is saved, the
accounting is the live one).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from agentroute.pool.backends.base import Backend
from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool
from agentroute.types import Completion, CompletionRequest

NAMESPACE = "graph-planner/cache"


def request_key(request: CompletionRequest, card: ModelCard, namespace: str = NAMESPACE) -> str:
    """The cache key of a request: its model card, messages and output limit."""
    body = json.dumps([card.id, card.backend_model, request.messages, request.max_tokens], sort_keys=True)
    return f"{namespace}/{hashlib.sha256(body.encode()).hexdigest()}"


class CachedBackend(Backend):
    """Wraps ``inner``: deterministic requests are answered from ``memory`` after their first call.

    ``hits`` and ``misses`` count what it served; prices, token counts and worst cases are the
    inner backend's (a hit is still reserved at its worst case, then settled at $0)."""

    def __init__(
        self, inner: Backend, memory: Any, namespace: str = NAMESPACE, *, charge_hits: bool = False
    ) -> None:
        self.inner, self.memory, self.namespace, self.charge_hits = inner, memory, namespace, charge_hits
        self.name = inner.name
        self.blocks = inner.blocks
        self.hits = 0
        self.misses = 0

    async def complete(self, request: CompletionRequest, card: ModelCard) -> Completion:
        if request.temperature > 0:
            return await self.inner.complete(request, card)
        key = request_key(request, card, self.namespace)
        hit = self.memory.load_router_state(key)
        if hit is not None and isinstance(hit.get("text"), str):
            self.hits += 1
            paid: dict[str, Any] = (
                {
                    "tokens_in": int(hit.get("tokens_in", 0)),
                    "tokens_out": int(hit.get("tokens_out", 0)),
                    "cost_usd": float(hit.get("cost_usd", 0.0)),
                }
                if self.charge_hits
                else {"tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0}
            )
            return Completion(
                model=card.id, text=hit["text"], score=hit.get("score"), raw={"cache": "hit"}, **paid
            )
        completion = await self.inner.complete(request, card)
        self.misses += 1
        self.memory.save_router_state(
            key,
            {
                "text": completion.text,
                "score": completion.score,
                "tokens_in": completion.tokens_in,
                "tokens_out": completion.tokens_out,
                "cost_usd": completion.cost_usd,
            },
        )
        return completion

    def count_tokens(self, text: str, card: ModelCard) -> int:
        return self.inner.count_tokens(text, card)

    def prompt_tokens(self, request: CompletionRequest, card: ModelCard) -> int:
        return self.inner.prompt_tokens(request, card)

    async def aprompt_tokens(self, request: CompletionRequest, card: ModelCard) -> int:
        return await self.inner.aprompt_tokens(request, card)

    def worst_case_usd(
        self, request: CompletionRequest, card: ModelCard, prompt_tokens: int | None = None
    ) -> float:
        return self.inner.worst_case_usd(request, card, prompt_tokens)

    async def preload(self, card: ModelCard) -> object:
        return await self.inner.preload(card)

    async def aclose(self) -> None:
        await self.inner.aclose()


def with_response_cache(
    pool: ModelPool, memory: Any, namespace: str = NAMESPACE, *, charge_hits: bool = False
) -> dict[str, CachedBackend]:
    """Wrap every backend kind ``pool`` uses in a :class:`CachedBackend` over ``memory`` (in place);
    returns the wrappers by backend kind (their ``hits``/``misses``). ``charge_hits``: see the
    module docstring (a pool wrapped already keeps its wrappers' setting)."""
    wrapped: dict[str, CachedBackend] = {}
    for card in pool:
        if card.backend in wrapped:
            continue
        inner = pool.backend(card.id)
        cached = (
            inner
            if isinstance(inner, CachedBackend)
            else CachedBackend(inner, memory, namespace, charge_hits=charge_hits)
        )
        pool.set_backend(card.backend, cached)
        wrapped[card.backend] = cached
    return wrapped

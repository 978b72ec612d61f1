"""The one async interface every model backend implements."""

from __future__ import annotations

import abc
import math

from agentroute.pool.card import ModelCard
from agentroute.types import Completion, CompletionRequest


class Backend(abc.ABC):
    """Calls models of one kind. Subclasses implement :meth:`complete`; everything else has defaults."""

    name: str = ""
    #: False for backends that answer without waiting on I/O (replay): the dispatcher then skips
    #: the timeout wrapper, which costs a task per call.
    blocks: bool = True

    @abc.abstractmethod
    async def complete(self, request: CompletionRequest, card: ModelCard) -> Completion:
        """Run one completion. Raise :class:`~agentroute.errors.BackendError` on failure."""

    def count_tokens(self, text: str, card: ModelCard) -> int:
        """Tokens in ``text`` before the call (≈4 characters a token unless a tokenizer is known)."""
        return max(1, math.ceil(len(text) / 4))

    def prompt_tokens(self, request: CompletionRequest, card: ModelCard) -> int:
        """Tokens the request's prompt takes: what the ledger reserves for it.

        The default counts the message texts; backends that wrap them in a chat template (local,
        openai, litellm) add the template's tokens.
        """
        return self.count_tokens(request.prompt_text, card)

    def worst_case_usd(self, request: CompletionRequest, card: ModelCard, prompt_tokens: int | None = None) -> float:
        """Upper bound of the call's cost: prompt tokens × input price + max_tokens × output price.

        ``prompt_tokens`` is :meth:`prompt_tokens` when the caller has already counted them.
        """
        if prompt_tokens is None:
            prompt_tokens = self.prompt_tokens(request, card)
        return card.usd(prompt_tokens, request.max_tokens)

    async def preload(self, card: ModelCard) -> None:  # noqa: B027 - optional hook
        """Load what the first call needs (a local model, a tokenizer) off the event loop."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections or models."""

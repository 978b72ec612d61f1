"""Replay backend: logged outcomes looked up per (query, model), zero latency.

The offline backend that evaluation and router training use. Each outcome carries the logged
response, score and cost; the request names its query by ``query_id`` (or its text).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from agentroute.errors import BackendError
from agentroute.pool.backends.base import Backend
from agentroute.pool.card import ModelCard
from agentroute.types import Completion, CompletionRequest


@dataclass(frozen=True, slots=True)
class LoggedOutcome:
    query_id: str
    model: str
    score: float
    cost_usd: float
    response: str = ""
    tokens_in: int = 0
    tokens_out: int = 0


class ReplayBackend(Backend):
    """Serve logged outcomes. ``worst_case_usd`` is the logged cost, so budgets hold exactly."""

    name = "replay"
    blocks = False

    def __init__(self, outcomes: Iterable[LoggedOutcome] = ()):
        self._outcomes: dict[tuple[str, str], LoggedOutcome] = {}
        self._last_chat: tuple[object, int] | None = None
        self.add(outcomes)

    def add(self, outcomes: Iterable[LoggedOutcome]) -> None:
        for outcome in outcomes:
            self._outcomes[(outcome.query_id, outcome.model)] = outcome

    def __len__(self) -> int:
        return len(self._outcomes)

    def lookup(self, request: CompletionRequest, card: ModelCard) -> LoggedOutcome:
        outcome = self._find(request, card)
        if outcome is None:
            key = request.query_id or request.prompt_text
            # nothing ran, so nothing was billed: the attempt counts a call, not its worst case
            raise BackendError(
                card.id, f"no logged outcome for query {key[:60]!r}", retryable=False, billed=False
            )
        return outcome

    def _find(self, request: CompletionRequest, card: ModelCard) -> LoggedOutcome | None:
        """The logged outcome of ``request`` on ``card`` (the dispatcher asks :meth:`worst_case`:
        one look-up a candidate and step)."""
        return self._outcomes.get((request.query_id or request.prompt_text, card.backend_model))

    def prompt_tokens(self, request: CompletionRequest, card: ModelCard) -> int:
        """The logged prompt tokens when the outcome logs them, else the byte bound.

        The bound of the last chat is remembered (by identity: the dispatcher builds one chat per
        strategy and step and never changes it), so the candidates of a step count it once.
        """
        outcome = self._find(request, card)
        if outcome is not None and outcome.tokens_in > 0:
            return outcome.tokens_in
        return self._chat_bound(request, card)

    def _chat_bound(self, request: CompletionRequest, card: ModelCard) -> int:
        messages, last = request.messages, self._last_chat
        if last is not None and last[0] is messages:
            return last[1]
        count = super().prompt_tokens(request, card)
        self._last_chat = (messages, count)
        return count

    def worst_case_usd(
        self, request: CompletionRequest, card: ModelCard, prompt_tokens: int | None = None
    ) -> float:
        outcome = self._find(request, card)
        if outcome is not None:
            return outcome.cost_usd
        return super().worst_case_usd(request, card, prompt_tokens)

    def worst_case(self, request: CompletionRequest, card: ModelCard) -> tuple[int, float]:
        """The logged prompt tokens (else the bound) and the logged cost (else the card's price):
        :meth:`prompt_tokens` and :meth:`worst_case_usd` from one look-up."""
        outcome = self._find(request, card)
        if outcome is not None and outcome.tokens_in > 0:
            return outcome.tokens_in, outcome.cost_usd
        tokens = self._chat_bound(request, card)
        return tokens, (outcome.cost_usd if outcome is not None else card.usd(tokens, request.max_tokens))

    async def complete(self, request: CompletionRequest, card: ModelCard) -> Completion:
        outcome = self.lookup(request, card)
        return Completion(
            model=card.id,
            text=outcome.response,
            tokens_in=outcome.tokens_in,
            tokens_out=outcome.tokens_out,
            cost_usd=outcome.cost_usd,
            latency_ms=0.0,
            score=outcome.score,
        )

"""The one async interface every model backend implements."""

from __future__ import annotations

import abc
import functools
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

from agentroute.pool.backends.counting import byte_bound, text_bound
from agentroute.pool.card import ModelCard
from agentroute.types import Completion, CompletionRequest

#: Set by the dispatcher while callback handlers watch an attempt (LangGraph's ``messages`` stream
#: mode, ``astream_events``, a tracer): a backend that streams awaits it with each piece of the
#: answer's text as it arrives, and ignores it otherwise. ``None`` when nobody watches.
token_sink: ContextVar[Callable[[str], Awaitable[None]] | None] = ContextVar(
    "agentroute_token_sink", default=None
)


class Pulse:
    """When a call last showed life: its start, then each streamed chunk that carried text (``at``,
    :func:`time.monotonic`). The dispatcher times a call out when ``at`` is ``timeout_s`` old."""

    __slots__ = ("at",)

    def __init__(self, at: float):
        self.at = at


#: Set by the dispatcher around each provider attempt: a backend that streams (``StreamText``)
#: moves its ``at`` on with every chunk that carries text, so that a card's ``timeout_s`` bounds the
#: wait for the first chunk and each gap between two, not a steady stream's length. A backend that
#: never touches it is timed out ``timeout_s`` after the call began (the whole call).
stream_pulse: ContextVar[Pulse | None] = ContextVar("agentroute_stream_pulse", default=None)


def show_progress() -> None:
    """Tell the dispatcher that the current call made progress (a token, a chunk of the answer).

    A backend of your own that produces its answer piece by piece calls it with each piece (or
    yields the pieces from :meth:`~agentroute.pool.backends.streaming.StreamingBackend.stream`,
    which calls it): the card's ``timeout_s`` then bounds the wait for the first piece and each gap
    between two, not the whole call, as for the built-in backends that stream. Outside a
    dispatcher's attempt it does nothing.
    """
    pulse = stream_pulse.get()
    if pulse is not None:
        pulse.at = time.monotonic()


class Backend(abc.ABC):
    """Calls models of one kind. Subclasses implement :meth:`complete`; everything else has defaults.

    A card's ``timeout_s`` bounds a call of :meth:`complete` as a whole unless the call shows its
    progress (:func:`show_progress`, or pieces yielded by a
    :class:`~agentroute.pool.backends.streaming.StreamingBackend`): then it bounds the silences.
    """

    name: str = ""
    #: True for backends whose :meth:`complete` sends the answer's pieces to :data:`token_sink` as
    #: they arrive; the dispatcher then reports each attempt to watching callback handlers as it
    #: runs. Other backends' steps are reported once done, as one message.
    streams_tokens: bool = False
    #: False for backends that answer without waiting on I/O (replay): the dispatcher then skips
    #: the timeout wrapper, which costs a task per call.
    blocks: bool = True

    @abc.abstractmethod
    async def complete(self, request: CompletionRequest, card: ModelCard) -> Completion:
        """Run one completion. Raise :class:`~agentroute.errors.BackendError` on failure."""

    def count_tokens(self, text: str, card: ModelCard) -> int:
        """Tokens in ``text``: the model's tokenizer where the backend knows it, else a bound never
        below a byte-level tokenizer's count (its UTF-8 bytes)."""
        return text_bound(text)

    def prompt_tokens(self, request: CompletionRequest, card: ModelCard) -> int:
        """Tokens the chat-templated prompt takes: what the ledger reserves for it. Synchronous and
        cheap (the dispatcher calls it for every candidate of every step).

        Never below what the provider will bill for the prompt: the model's tokenizer where the
        backend knows it, else :func:`~agentroute.pool.backends.counting.byte_bound` (an image part
        counted as the card's ``image_tokens``). A content part no bound is known for (an image on
        a card without ``image_tokens``, audio, a file) raises a
        :class:`~agentroute.errors.ConfigurationError`: the call is refused, never reserved below
        its bill.
        """
        return byte_bound(request.messages, card)

    async def aprompt_tokens(self, request: CompletionRequest, card: ModelCard) -> int:
        """:meth:`prompt_tokens`, possibly asking the endpoint (a vLLM server's ``POST /tokenize``).

        Same contract as :meth:`prompt_tokens` (never below the prompt's billed tokens); the
        default is the synchronous count. After it returns, :meth:`prompt_tokens` gives the same
        number for the same request and card (it is cached), so the dispatcher may call this once
        before planning and the synchronous method on its hot path.
        """
        return self.prompt_tokens(request, card)

    def worst_case_usd(
        self, request: CompletionRequest, card: ModelCard, prompt_tokens: int | None = None
    ) -> float:
        """Upper bound of the call's cost: prompt tokens × input price + max_tokens × output price.

        ``prompt_tokens`` is :meth:`prompt_tokens` when the caller has already counted them.
        """
        if prompt_tokens is None:
            prompt_tokens = self.prompt_tokens(request, card)
        return card.usd(prompt_tokens, request.max_tokens)

    def worst_case(self, request: CompletionRequest, card: ModelCard) -> tuple[int, float]:
        """``(prompt tokens, worst-case USD)`` of one call: :meth:`prompt_tokens`, then
        :meth:`worst_case_usd` of that count (what the dispatcher reserves). A backend that finds
        both in one look-up (replay) answers at once; it speaks for those two methods as its own
        class defines them (see :func:`worst_case_of`)."""
        tokens = self.prompt_tokens(request, card)
        return tokens, self.worst_case_usd(request, card, tokens)

    async def preload(self, card: ModelCard) -> object:  # noqa: B027 - optional hook
        """Load what the first call needs (a local model, a tokenizer) off the event loop."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections or models."""


def worst_case_of(backend: Backend) -> Callable[[CompletionRequest, ModelCard], tuple[int, float]]:
    """``backend.worst_case``, or :meth:`Backend.worst_case` where a subclass overrides
    ``prompt_tokens`` or ``worst_case_usd`` below the class whose one-look-up ``worst_case`` it
    inherits (a ``ReplayBackend`` that pads its counts): the reservation is then the backend's
    own count and price, never its parent's."""
    kind = type(backend)
    fused = _definer(kind, "worst_case")
    if all(issubclass(fused, _definer(kind, name)) for name in ("prompt_tokens", "worst_case_usd")):
        return backend.worst_case
    return functools.partial(Backend.worst_case, backend)


def _definer(kind: type, name: str) -> type:
    """The class of ``kind``'s MRO whose own body defines attribute ``name``."""
    return next(c for c in kind.__mro__ if name in vars(c))

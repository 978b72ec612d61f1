"""A reply as the OpenAI-protocol backends read it (``openai``, ``litellm``): streamed and cut, then counted.

A streamed reply is read delta by delta (:class:`StreamText`): its answer and any reasoning text a
reasoning model streams beside it (billed tokens too), handed to the token sink as it comes
(LangGraph's ``messages`` stream), and cut after more than ``max_tokens`` chunks that carry text —
each chunk is at least one token, so a server that ignores ``max_tokens`` stops when the client
leaves. Each chunk that carries text also moves the dispatcher's :data:`~.base.stream_pulse` on:
a card's ``timeout_s`` bounds a stream's silences (before its first chunk, between two), while
its length is bounded by ``max_tokens`` and the task's ``seconds`` deadline. :func:`counted_usage` then takes the provider's usage where it is valid and complete, and
counts with the tokenizer (or the byte bound) what it lacks or what a cut reply makes stale.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from agentroute.errors import ProtocolError
from agentroute.pool.backends.base import stream_pulse
from agentroute.pool.backends.usage import reply_usage
from agentroute.pool.card import ModelCard
from agentroute.types import CompletionRequest


@dataclass(slots=True)
class Reply:
    """One reply, plain or streamed."""

    id: str
    text: str  # the answer (at most max_tokens chunks)
    received: str  # everything read and billed: the answer and any streamed reasoning
    usage: Any
    finish_reason: Any
    chunks: int  # chunks read that carried text (each at least one token)
    cut: bool
    confidence: float | None = None

    def raw(self) -> dict[str, Any]:
        """The completion's ``raw`` record: id, finish reason, ``stream_cut``, ``confidence``."""
        raw: dict[str, Any] = {"id": self.id, "finish_reason": self.finish_reason}
        if self.cut:
            raw["stream_cut"] = True
        if self.confidence is not None:
            raw["confidence"] = self.confidence
        return raw


class StreamText:
    """The text of a streamed reply, read one delta at a time (module docstring)."""

    __slots__ = ("card_id", "chunks", "cut", "limit", "pieces", "pulse", "reasoning", "sink")

    def __init__(self, card_id: str, limit: int, sink: Callable[[str], Awaitable[None]] | None):
        self.card_id, self.limit, self.sink = card_id, limit, sink
        self.pulse = stream_pulse.get()  # the dispatcher's timeout watches it: each chunk shows life
        self.pieces: list[str] = []
        self.reasoning: list[str] = []
        self.chunks, self.cut = 0, False

    async def add(self, content: Any, thought: Any) -> bool:
        """Take one delta's answer and reasoning text; ``False`` once the reply passed ``limit``
        chunks (stop reading: the caller closes the stream)."""
        if not content and not thought:
            return True
        for part in (content, thought):
            if part is not None and not isinstance(part, str):
                raise ProtocolError(self.card_id, f"a stream chunk's text is not text (got {type(part).__name__})")
        if content:
            self.pieces.append(content)
        if thought:
            self.reasoning.append(thought)
        self.chunks += 1
        if self.pulse is not None:
            self.pulse.at = time.monotonic()
        if self.chunks > self.limit:  # the server ignores max_tokens: stop it here
            self.cut = True
            return False
        if content and self.sink is not None:
            await self.sink(content)
        return True

    def reply(self, *, id: str, usage: Any, finish_reason: Any, confidence: float | None = None) -> Reply:
        """What was read: a cut reply keeps its first ``limit`` chunks, ends for ``length`` and has
        no usage (the provider's, if any, did not see the cut)."""
        return Reply(
            id=id, text="".join(self.pieces[: self.limit] if self.cut else self.pieces),
            received="".join(self.pieces) + "".join(self.reasoning), usage=None if self.cut else usage,
            finish_reason="length" if self.cut else finish_reason, chunks=self.chunks, cut=self.cut,
            confidence=confidence,
        )  # fmt: skip


async def counted_usage(
    backend: Any, reply: Reply, request: CompletionRequest, card: ModelCard, raw: dict[str, Any]
) -> tuple[int, int]:
    """(prompt, completion) tokens of ``reply``: the provider's usage where it is valid, else
    counted by ``backend`` (``aprompt_tokens``, ``count_text``; ``raw["usage_counted"]`` says so).
    A cut reply's completion is what was received, never less than its chunks."""
    tokens_in, tokens_out = reply_usage(card, reply.usage, messages=request.messages, text=reply.received, chunks=reply.chunks)
    if tokens_in is None or tokens_out is None or reply.cut:
        raw["usage_counted"] = True
        if tokens_in is None:
            tokens_in = await backend.aprompt_tokens(request, card)
        if tokens_out is None or reply.cut:
            tokens_out = max(reply.chunks, await backend.count_text(reply.received, card))
    return tokens_in, tokens_out

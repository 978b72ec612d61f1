"""A reply as the OpenAI-protocol backends read it (``openai``, ``litellm``): streamed and cut, then counted.

A streamed reply is read delta by delta (:class:`StreamText`): its answer and any reasoning text a
reasoning model streams beside it (billed tokens too), handed to the token sink as it comes
(LangGraph's ``messages`` stream), and cut after more than ``max_tokens`` chunks that carry text —
each chunk is at least one token, so a server that ignores ``max_tokens`` stops when the client
leaves. Each chunk that carries text also moves the dispatcher's :data:`~.base.stream_pulse` on:
a card's ``timeout_s`` bounds a stream's silences (before its first chunk, between two), while
its length is bounded by ``max_tokens`` and the task's ``seconds`` deadline. :func:`counted_usage` then takes the provider's usage where it is valid and complete, and
counts with the tokenizer (or the byte bound) what it lacks or what a cut reply makes stale.

The reasoning text (``reasoning_content`` of vLLM's reasoning parsers and DeepSeek, ``reasoning``
elsewhere), streamed or not, is kept on the completion as ``raw["reasoning"]``, and counted as
completion tokens when the usage is counted (the provider bills it).

:class:`StreamingBackend` is the base of a backend of your own that produces its answer piece by
piece: its pieces go through :class:`StreamText` too, so that ``timeout_s`` bounds its silences.
"""

from __future__ import annotations

import abc
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from agentroute.errors import BackendError, ProtocolError
from agentroute.pool.backends.base import Backend, stream_pulse, token_sink
from agentroute.pool.backends.usage import field_of, reply_usage
from agentroute.pool.card import ModelCard
from agentroute.types import Completion, CompletionRequest, finite_number


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
    confidence: Any = None  # as served: the dispatcher reads it by one rule (types.finite_number)
    reasoning: str = ""  # the reasoning text a reasoning model sent beside its answer
    tool_calls: list[dict[str, Any]] | None = None  # the tool calls it made instead of (or beside) answering
    logprobs: list[Any] | None = None  # the answer's token log probabilities, when asked for

    def raw(self) -> dict[str, Any]:
        """The completion's ``raw`` record: id, finish reason, ``stream_cut``, ``confidence``,
        ``reasoning``."""
        raw: dict[str, Any] = {"id": self.id, "finish_reason": self.finish_reason}
        if self.cut:
            raw["stream_cut"] = True
        if self.confidence is not None:
            raw["confidence"] = self.confidence
        if self.reasoning:
            raw["reasoning"] = self.reasoning
        if self.tool_calls:
            raw["tool_calls"] = self.tool_calls
        if self.logprobs is not None:
            raw["logprobs"] = self.logprobs
        return raw

    def check(self, card_id: str) -> None:
        """Refuse a reply the provider's content filter emptied (``finish_reason:
        "content_filter"``, no text, no tool call): a non-retryable, billed
        :class:`~agentroute.errors.BackendError`, so that another model may take the step instead
        of the task going on with an empty answer. A reply the filter cut short keeps its text."""
        if self.finish_reason == "content_filter" and not self.text and not self.tool_calls:
            raise BackendError(
                card_id,
                "the provider's content filter blocked the reply (finish_reason 'content_filter', no text)",
                retryable=False,
                billed=True,
            )


#: A tool call's kinds (OpenAI's ``function`` and ``custom`` tools) and the fields of each, text that
#: streams in pieces: its ``name``, then what the model gives the tool (the rule of a call's shape:
#: :func:`~agentroute.dispatch.dispatcher.tool_calls_problem`).
TOOL_FIELDS: dict[str, tuple[str, str]] = {"function": ("name", "arguments"), "custom": ("name", "input")}


class ToolCalls:
    """The tool calls of a reply, put together from a stream's deltas (``index``, ``id``, pieces of
    ``function.name`` and ``function.arguments``, or of a custom tool's ``custom.name`` and
    ``custom.input``) or read whole from a plain reply; the parts are mappings or objects (the
    OpenAI SDK's, LiteLLM's). A part that names its tool under another ``id`` than the call at its
    ``index`` starts a new call: Ollama streams every call of a batch at ``index`` 0 (older builds
    send none)."""

    __slots__ = ("calls", "card_id", "latest")

    def __init__(self, card_id: str) -> None:
        self.card_id = card_id
        self.calls: dict[tuple[int, int], dict[str, Any]] = {}  # by (index, nth call at that index)
        self.latest: dict[int, int] = {}  # index -> the nth call at it, which its pieces go to

    def add(self, parts: Any) -> str:
        """Take one delta's (or one message's) tool calls; returns their billed text (names, arguments)."""
        if not parts:
            return ""
        if not isinstance(parts, list | tuple):
            raise ProtocolError(self.card_id, f"'tool_calls' is not a list (got {type(parts).__name__})")
        billed: list[str] = []
        for position, part in enumerate(parts):
            index = field_of(part, "index")
            index = index if isinstance(index, int) and not isinstance(index, bool) else position
            kind = _kind_of(part)
            name = field_of(field_of(part, kind or "function"), "name")
            call = self._call(index, field_of(part, "id"), kind, named=isinstance(name, str) and bool(name))
            kind = call["type"]
            for key in TOOL_FIELDS[kind]:
                piece = field_of(field_of(part, kind), key)
                if piece is not None and not isinstance(piece, str):
                    raise ProtocolError(
                        self.card_id, f"a tool call's {kind}.{key} is not text (got {type(piece).__name__})"
                    )
                if piece:
                    call[kind][key] += piece
                    billed.append(piece)
        return "".join(billed)

    def _call(self, index: int, call_id: Any, kind: str | None, *, named: bool) -> dict[str, Any]:
        """The call at ``index`` that a part with ``call_id`` adds to: a new one (of ``kind``, else a
        function call) when there is none yet, or when the part starts a call of another id (it
        names its tool: ``named``). A later piece under another id continues the call, which keeps
        its first id (Poolside sends each call's later pieces under a new one)."""
        nth = self.latest.get(index)
        call = None if nth is None else self.calls[(index, nth)]
        call_id = call_id if isinstance(call_id, str) and call_id else None
        if call is None or (
            named and call_id is not None and call["id"] is not None and call_id != call["id"]
        ):
            nth = 0 if nth is None else nth + 1
            self.latest[index] = nth
            kind = kind or "function"
            call = {"id": None, "type": kind, kind: dict.fromkeys(TOOL_FIELDS[kind], "")}
            self.calls[(index, nth)] = call
        if call["id"] is None:
            call["id"] = call_id
        return call

    def list(self) -> list[dict[str, Any]] | None:
        """The calls, in order; :class:`ProtocolError` for one that names no function or custom
        tool (a client could not run it)."""
        calls = [self.calls[key] for key in sorted(self.calls)]
        for call in calls:
            if not call[kind := call["type"]]["name"]:
                raise ProtocolError(self.card_id, f"a tool call names no {kind} (no {kind}.name)")
        return calls or None


def _kind_of(part: Any) -> str | None:
    """A tool call part's kind: ``custom`` or ``function`` where its ``type`` or its body says so,
    else ``None`` (a later piece of a call)."""
    kind = field_of(part, "type")
    if isinstance(kind, str) and kind in TOOL_FIELDS:
        return kind
    if field_of(part, "custom") is not None:
        return "custom"
    return "function" if field_of(part, "function") is not None else None


def text_parts(content: Any) -> Any:
    """A ``content`` sent as a list of text parts (``[{"type": "text", "text": "…"}]``, as some
    OpenAI-compatible servers send it) as its text; any other value as it is (the caller refuses
    what is not text)."""
    if (
        isinstance(content, list)
        and content
        and all(
            isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
            for p in content
        )
    ):
        return "".join(p["text"] for p in content)
    return content


def reasoning_of(part: Any) -> Any:
    """The reasoning text of a reply's message or a stream's delta (an object or a mapping):
    ``reasoning_content`` (vLLM's reasoning parsers, DeepSeek, LiteLLM), else ``reasoning``
    (newer vLLM, OpenRouter) when it is text; ``None`` when there is none."""
    for name in ("reasoning_content", "reasoning"):
        value = part.get(name) if isinstance(part, dict) else getattr(part, name, None)
        if value is not None and (name == "reasoning_content" or isinstance(value, str)):
            return value
    return None


def logprobs_of(choice: Any) -> list[Any] | None:
    """The token log probabilities of a reply's choice or a stream chunk's (``logprobs.content``,
    as mappings), or ``None`` when it has none or they are malformed (an entry without a text
    ``token`` and a finite ``logprob``, or such ``top_logprobs``): outside data that would make a
    served reply invalid JSON (NaN) is absent, the answer it came with kept."""
    found = choice.get("logprobs") if isinstance(choice, dict) else getattr(choice, "logprobs", None)
    content = found.get("content") if isinstance(found, dict) else getattr(found, "content", None)
    if not isinstance(content, list):
        return None
    items = [item.model_dump(warnings=False) if hasattr(item, "model_dump") else item for item in content]
    return items if all(_token_logprob(item, top=True) for item in items) else None


def _token_logprob(item: Any, *, top: bool) -> bool:
    """Whether ``item`` is one token's log probability as OpenAI sends it (and its alternatives)."""
    if (
        not isinstance(item, dict)
        or not isinstance(item.get("token"), str)
        or finite_number(item.get("logprob")) is None
    ):
        return False
    alternatives = item.get("top_logprobs")
    if not top or alternatives is None:
        return True
    return isinstance(alternatives, list) and all(_token_logprob(a, top=False) for a in alternatives)


#: Who watches a streamed reply's reasoning text as it comes (``agentroute serve`` streams it to
#: its client as ``reasoning_content`` deltas), beside :data:`~.base.token_sink`'s answer text.
reasoning_sink: ContextVar[Callable[[str], Awaitable[None]] | None] = ContextVar(
    "agentroute_reasoning_sink", default=None
)


class StreamText:
    """The text of a streamed reply, read one delta at a time (module docstring)."""

    __slots__ = (
        "called", "card_id", "chunks", "cut", "limit", "logprobs", "pieces", "pulse", "reasoning", "sink", "thinking", "tools",
    )  # fmt: skip

    def __init__(self, card_id: str, limit: int, sink: Callable[[str], Awaitable[None]] | None):
        self.card_id, self.limit, self.sink = card_id, limit, sink
        self.thinking = reasoning_sink.get() if sink is not None else None  # who watches the reasoning
        self.logprobs: list[Any] | None = None
        self.pulse = stream_pulse.get()  # the dispatcher's timeout watches it: each chunk shows life
        self.pieces: list[str] = []
        self.reasoning: list[str] = []
        self.tools = ToolCalls(card_id)
        self.called: list[str] = []  # the tool calls' billed text
        self.chunks, self.cut = 0, False

    async def add(self, content: Any, thought: Any, tool_calls: Any = None) -> bool:
        """Take one delta's answer, reasoning text and tool-call pieces; ``False`` once the reply
        passed ``limit`` chunks (stop reading: the caller closes the stream)."""
        if not content and not thought and not tool_calls:
            return True
        content = text_parts(content)
        for part in (content, thought):
            if part is not None and not isinstance(part, str):
                raise ProtocolError(
                    self.card_id, f"a stream chunk's text is not text (got {type(part).__name__})"
                )
        called = self.tools.add(tool_calls)
        if not content and not thought and not called:
            return True
        if content:
            self.pieces.append(content)
        if thought:
            self.reasoning.append(thought)
        if called:
            self.called.append(called)  # billed like the answer, kept apart from it
        self.chunks += 1
        if self.pulse is not None:
            self.pulse.at = time.monotonic()
        if self.chunks > self.limit:  # the server ignores max_tokens: stop it here
            self.cut = True
            return False
        if content and self.sink is not None:
            await self.sink(content)
        if thought and self.thinking is not None:
            await self.thinking(thought)
        return True

    def add_logprobs(self, content: list[Any] | None) -> None:
        """Take one chunk's token log probabilities."""
        if content is not None:
            if self.logprobs is None:
                self.logprobs = []
            self.logprobs.extend(content)

    def reply(self, *, id: str, usage: Any, finish_reason: Any, confidence: float | None = None) -> Reply:
        """What was read: a cut reply keeps its first ``limit`` chunks, ends for ``length`` and has
        no usage (the provider's, if any, did not see the cut)."""
        return Reply(
            id=id, text="".join(self.pieces[: self.limit] if self.cut else self.pieces),
            received="".join(self.pieces) + "".join(self.reasoning) + "".join(self.called), usage=None if self.cut else usage,
            finish_reason="length" if self.cut else finish_reason, chunks=self.chunks, cut=self.cut,
            confidence=confidence, reasoning="".join(self.reasoning), tool_calls=self.tools.list(),
            logprobs=self.logprobs,
        )  # fmt: skip


def closing_usage(usage: Any, choices: Any) -> bool:
    """Whether a stream chunk is OpenAI's closing usage chunk: a usage and no choices. A server
    that reports the usage so far on every chunk (vLLM's ``continuous_usage_stats``) sends it beside
    choices: that is no end."""
    return usage is not None and not choices


def stream_ended(*, done: bool, finish_reason: Any, closing: bool, cut: bool) -> bool:
    """Whether a stream ended as servers end one: ``[DONE]`` came (``done``), a ``finish_reason``
    (vLLM, llama.cpp, Ollama, LM Studio, TGI — the last without ``[DONE]`` before its 2.1.1), OpenAI's
    closing usage chunk (:func:`closing_usage`), or the client cut it (``cut``). A stream with none
    of them was cut when its connection dropped (:func:`dropped_stream`). The one rule of both
    OpenAI-protocol backends."""
    return done or bool(finish_reason) or closing or cut


def dropped_stream(card: ModelCard) -> BackendError:
    """The failure of a stream that did not end (:func:`stream_ended`): the connection dropped
    midway (a body framed by the connection's end reads as an ordinary end), so the text read is
    part of an answer. Retryable, and billed (the model ran)."""
    where = f" (endpoint {card.base_url})" if card.base_url else ""
    return BackendError(
        card.id,
        f"the stream ended before its end ([DONE]) and without a finish_reason: the connection dropped midway{where}",
        retryable=True,
        billed=True,
    )


async def counted_usage(
    backend: Any, reply: Reply, request: CompletionRequest, card: ModelCard, raw: dict[str, Any]
) -> tuple[int, int]:
    """(prompt, completion) tokens of ``reply``: the provider's usage where it is valid, else
    counted by ``backend`` (``aprompt_tokens``, ``count_text``; ``raw["usage_counted"]`` says so).
    A cut reply's completion is what was received, never less than its chunks. Where the model
    may think unseen (``backend.hides_reasoning(card)``: OpenAI's reasoning models bill reasoning
    tokens they never send), a completion the provider did not report is charged at the cap,
    ``max_tokens``: the text received may be a small part of the bill."""
    tokens_in, tokens_out = reply_usage(
        card, reply.usage, messages=request.messages, text=reply.received, chunks=reply.chunks
    )
    if tokens_in is not None:
        backend.check_prompt_usage(request, card, tokens_in)  # a /tokenize count below the bill
    if tokens_in is None or tokens_out is None or reply.cut:
        raw["usage_counted"] = True
        if tokens_in is None:
            tokens_in = await backend.aprompt_tokens(request, card)
        if tokens_out is None or reply.cut:
            unseen = tokens_out is None and not reply.cut and backend.hides_reasoning(card)
            tokens_out = max(
                reply.chunks,
                await backend.count_text(reply.received, card),
                request.max_tokens if unseen else 0,
            )
    return tokens_in, tokens_out


async def reply_completion(
    backend: Any,
    reply: Reply,
    request: CompletionRequest,
    card: ModelCard,
    started: float,
    usd: Callable[[int, int], float],
) -> Completion:
    """The :class:`Completion` of a provider's finished ``reply`` (sent at ``perf_counter()``
    ``started``): checked (:meth:`Reply.check`), its usage validated or counted
    (:func:`counted_usage`), priced by ``usd(tokens_in, tokens_out)``."""
    latency_ms = (time.perf_counter() - started) * 1000
    reply.check(card.id)
    raw = reply.raw()
    tokens_in, tokens_out = await counted_usage(backend, reply, request, card, raw)
    return Completion(
        model=card.id,
        text=reply.text,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        cost_usd=usd(tokens_in, tokens_out),
        latency_ms=latency_ms,
        raw=raw,
    )


class StreamingBackend(Backend):
    """A backend of your own that produces its answer piece by piece: implement :meth:`stream`.

    Each piece it yields shows the dispatcher that the call is alive, so a card's ``timeout_s``
    bounds the wait for the first piece and each gap between two (a slow but steady answer runs
    on to ``max_tokens`` or the task's ``seconds`` deadline), and is handed to whoever watches
    the step (LangGraph's ``messages`` stream). After more than ``max_tokens`` pieces the stream is
    closed (each piece is at least one token). A backend that only implements
    :meth:`~agentroute.pool.backends.base.Backend.complete` cannot show progress: its ``timeout_s``
    bounds the whole call (or it calls :func:`~agentroute.pool.backends.base.show_progress`).

    >>> class Echo(StreamingBackend):
    ...     async def stream(self, request, card):
    ...         for word in request.messages[-1]["content"].split():
    ...             yield word + " "
    """

    streams_tokens = True

    @abc.abstractmethod
    def stream(self, request: CompletionRequest, card: ModelCard) -> AsyncIterator[str | Completion]:
        """The answer's pieces as they are produced (an ``async def`` generator of ``str``). It may
        end with its :class:`~agentroute.types.Completion` (usage, cost, ``raw``): that is the
        call's result; otherwise the pieces make the answer and its usage is counted."""

    async def complete(self, request: CompletionRequest, card: ModelCard) -> Completion:
        read = StreamText(card.id, request.max_tokens, token_sink.get())
        started = time.perf_counter()
        async with contextlib.aclosing(self.stream(request, card)) as pieces:  # type: ignore[type-var]
            async for piece in pieces:
                if isinstance(piece, Completion):
                    return piece
                if not await read.add(piece, None):
                    break  # past max_tokens: closed
        reply = read.reply(id="", usage=None, finish_reason="stop")
        return Completion(
            model=card.id,
            text=reply.text,
            latency_ms=(time.perf_counter() - started) * 1000,
            raw=reply.raw(),
            # a cut answer is billed as produced (its text keeps max_tokens pieces); else counted
            tokens_out=max(reply.chunks, self.count_tokens(reply.received, card)) if reply.cut else None,
        )

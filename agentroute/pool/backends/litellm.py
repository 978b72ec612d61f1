"""LiteLLM backend: any provider LiteLLM knows (``openai/gpt-4o-mini``, ``anthropic/…``, ``hosted_vllm/…``).

Keys come from the environment (``api_key_env`` on the card, else the provider's usual variable).
Prices come from the card when it sets them, else from LiteLLM's bundled cost table (read locally:
``LITELLM_LOCAL_MODEL_COST_MAP=True``, no network). A self-hosted card (``base_url``) without
prices, or a model the cost table does not know, is refused with :class:`ConfigurationError` —
never priced $0. ``worst_case_usd`` and the settled cost use the same price source. LiteLLM is
imported on first use (it takes seconds) and makes no retries (the dispatcher retries). Replies
of a self-hosted endpoint (``base_url``) or an OpenAI-protocol provider are streamed and cut after
``max_tokens`` + 1 text chunks, as the openai backend's are: a server that ignores ``max_tokens``
cannot run away; their whole JSON bodies are read no further than
:func:`~agentroute.pool.backends.wire.body_limit`. Other hosted providers (``anthropic/…``) are called plainly. A self-hosted
OpenAI-protocol endpoint (``openai/…``, ``hosted_vllm/…`` with ``base_url``) is called through
clients of this backend's, one set per event loop and closed with it, whose hook reads the usage
as the server sent it (:class:`_LoopClients`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import os
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar
from types import ModuleType
from typing import Any, ClassVar

import httpx
import openai

from agentroute._optional import require
from agentroute.errors import BackendError, ConfigurationError, ProtocolError
from agentroute.pool.backends.base import Backend, token_sink
from agentroute.pool.backends.counting import (
    EndpointCounting,
    is_openai_endpoint,
    openai_encoding,
)
from agentroute.pool.backends.loops import PerLoop
from agentroute.pool.backends.openai import (
    PROVIDER_FIELDS,
    TRANSPORT_ERRORS,
    FieldRefusals,
    _read_plain,
    api_key_for,
    backend_error,
    error_reply,
    never_sent,
    plain_reply,
    provider_fields,
)
from agentroute.pool.backends.streaming import (
    Reply,
    StreamText,
    closing_usage,
    dropped_stream,
    logprobs_of,
    reasoning_of,
    reply_completion,
    stream_ended,
)
from agentroute.pool.backends.usage import checked_usage
from agentroute.pool.backends.wire import (
    BodyTooLong,
    begins_events,
    body_limit,
    bound_error_body,
    codings,
    encoding_problem,
)
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
    #: The :class:`~agentroute.types.CompletionRequest` fields passed to ``litellm.acompletion`` when
    #: set (LiteLLM maps them to the provider's own, or refuses them for a provider without them).
    request_fields: ClassVar[frozenset[str]] = PROVIDER_FIELDS

    def __init__(self, *, stream: bool = True) -> None:
        self.stream = self.streams_tokens = stream
        self._init_counting()
        self.refusals = FieldRefusals()  # the fields each model refused (o-series temperatures)
        # each event loop's clients of self-hosted OpenAI-protocol endpoints (see own_client)
        self._clients = PerLoop[_LoopClients](_LoopClients, _LoopClients.aclose)
        # each event loop's keys in LiteLLM's client cache, whose clients close when that loop
        # shuts down: never at aclose(), the user's own LiteLLM calls on a running loop share them
        self._cached = PerLoop[tuple[str, ...]](_loop_key_ends, _close_cached)

    async def preload(self, card: ModelCard) -> None:
        """Import LiteLLM now, off the event loop: seconds (8 s on a busy machine) that the first
        call would otherwise spend inside its card's ``timeout_s``, blocking the event loop (every
        other request of ``agentroute serve`` waiting)."""
        await asyncio.to_thread(litellm_module)

    def encoding(self, card: ModelCard) -> Any | None:
        """tiktoken's encoding when ``card`` is an OpenAI model on OpenAI's endpoint, else ``None``."""
        return openai_encoding(card.backend_model) if self.on_openai(card) else None

    def on_openai(self, card: ModelCard) -> bool:
        """Whether ``card`` is an OpenAI model (``gpt-4o-mini``, ``openai/…``, ``azure/…``) on OpenAI's endpoint."""
        return provider_of(card.backend_model) in OPENAI_PROVIDERS and is_openai_endpoint(card.base_url)

    def hides_reasoning(self, card: ModelCard) -> bool:
        """Whether ``card``'s model may bill reasoning it never sends: an OpenAI model on OpenAI's
        endpoint (a reply without usage is charged at its cap)."""
        return self.on_openai(card)

    def served_name(self, card: ModelCard) -> str:
        """The model name a self-hosted server knows (LiteLLM's ``hosted_vllm/`` or ``openai/`` prefix dropped)."""
        model = card.backend_model
        return (
            model.split("/", 1)[1]
            if "/" in model and model.split("/", 1)[0] in {"hosted_vllm", "openai"}
            else model
        )

    def worst_case_usd(
        self, request: CompletionRequest, card: ModelCard, prompt_tokens: int | None = None
    ) -> float:
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
        kwargs.update(provider_fields(request))
        if card.base_url:
            kwargs["api_base"] = card.base_url
        key = api_key_for(card)
        if key is not None:
            kwargs["api_key"] = key
        clients = self._clients.get()  # this loop's, closed with it
        self._cached.get()  # LiteLLM's clients of this loop close when it shuts down
        if card.base_url and provider_of(card.backend_model) in STREAMED_PROVIDERS:
            kwargs["client"] = clients.client(card, key)
        started = time.perf_counter()

        async def send(kwargs: dict[str, Any]) -> Reply:
            if self.stream and streamed_provider(card):
                return await self._streamed(litellm, kwargs, request, card)
            return await self._plain(litellm, kwargs, request, card)

        reply = await self.refusals.call(card, kwargs, send)
        return await reply_completion(
            self, reply, request, card, started, functools.partial(litellm_usd, card)
        )

    async def _plain(
        self, litellm: ModuleType, kwargs: dict[str, Any], request: CompletionRequest, card: ModelCard
    ) -> Reply:
        sent = _Sent(request)
        token = _SENT.set(sent)
        try:
            response = await litellm.acompletion(**kwargs)
        except Exception as exc:
            if sent.refused is not None:  # the cause, not how LiteLLM then failed on it
                raise ProtocolError(card.id, sent.refused) from exc
            # a usage LiteLLM could not read (NaN): named as the openai backend names it
            checked_usage(card, sent.usage)
            raise litellm_error(exc, card.id, card.base_url) from exc
        finally:
            _SENT.reset(token)
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise ProtocolError(card.id, "the reply has no choices")
        if sent.unreadable is not None:  # a stream for a plain request (read as LiteLLM could)
            raise ProtocolError(card.id, f"unreadable reply: {sent.unreadable}")
        reply = plain_reply(card, response, choices[0])
        if sent.read:  # the usage as the server sent it (LiteLLM's objects turn "7" or true into counts)
            reply.usage = sent.usage
        return reply

    async def _streamed(
        self, litellm: ModuleType, kwargs: dict[str, Any], request: CompletionRequest, card: ModelCard
    ) -> Reply:
        """Stream the reply, as the openai backend does: after more than ``max_tokens`` chunks that
        carry text (each at least one token) the stream is closed — a server that ignores
        ``max_tokens`` stops when the client leaves — and the reply counts what was received.

        Usage is read as LiteLLM documents it: the ``usage`` of the stream's last chunk
        (``stream_options={"include_usage": True}``). When the provider sent none, LiteLLM makes it
        up from its own token estimate (below the bill for a chat template it does not know), so
        the usage taken is the last one among the chunks LiteLLM kept as the provider sent them
        (none: the reply is counted here). A LiteLLM that keeps no chunks gets the last chunk's
        usage unless its prompt count is LiteLLM's own estimate (:func:`_litellm_estimate`, off the
        event loop: its tokenizer may be fetched from the Hugging Face Hub)."""
        sent = _Sent(request, streamed=True)
        token = _SENT.set(sent)
        try:
            response = await litellm.acompletion(
                **kwargs, stream=True, stream_options={"include_usage": True}
            )
        except Exception as exc:
            _SENT.reset(token)
            if sent.refused is not None:  # the cause, not how LiteLLM then failed on it
                raise ProtocolError(card.id, sent.refused) from exc
            raise litellm_error(exc, card.id, card.base_url) from exc
        _SENT.reset(token)  # the stream's hook holds it: the chunks are read later, in this task
        read = StreamText(card.id, request.max_tokens, token_sink.get())
        events, said = 0, False  # said: a chunk carried something from the provider (a role, text, a call)
        reply_id, finish_reason, usage, closing = "", None, None, False
        try:
            async for chunk in response:
                events += 1
                reply_id = reply_id or str(getattr(chunk, "id", "") or "")
                choices = getattr(chunk, "choices", None)
                if getattr(chunk, "usage", None) is not None:  # the last chunk's (LiteLLM's public API)
                    usage = chunk.usage
                    closing = closing or closing_usage(usage, choices)
                if not choices:
                    continue
                choice = choices[0]
                finish_reason = getattr(choice, "finish_reason", None) or finish_reason
                delta = getattr(choice, "delta", None)
                if getattr(choice, "logprobs", None):
                    read.add_logprobs(logprobs_of(choice))
                said = said or any(
                    getattr(delta, name, None) is not None for name in ("role", "content", "tool_calls")
                )
                # reasoning models stream their billed reasoning beside the answer
                if not await read.add(
                    getattr(delta, "content", None), reasoning_of(delta), getattr(delta, "tool_calls", None)
                ):
                    break
        except ProtocolError:
            raise
        except Exception as exc:
            if sent.refused is not None:  # the cause, not how httpx or LiteLLM then failed on it
                raise ProtocolError(card.id, sent.refused) from exc
            if sent.unreadable is not None:
                raise ProtocolError(card.id, f"unreadable stream: {sent.unreadable}") from exc
            # a usage LiteLLM could not read (NaN): named as the openai backend names it
            checked_usage(card, sent.usage)
            if not (events and _clean_end_without_finish(exc)):
                raise _mid_stream_error(exc, card, ran=said or read.chunks > 0) from exc
            # the stream ended without a finish_reason: LiteLLM calls that a truncated stream and
            # cannot say whether [DONE] came. OpenAI's closing usage chunk (asked for: it comes
            # last, just before [DONE]) says the server ended it, and the reply is taken as the
            # plain reply of the same server is; without it the connection dropped midway (the
            # usage so far on every chunk says nothing of the end). LiteLLM raised before
            # yielding its usage chunk: it is looked for among the chunks LiteLLM kept
            closing = closing or _kept_closing(response)
            if not stream_ended(done=False, finish_reason=None, closing=closing, cut=read.cut):
                raise dropped_stream(card) from exc
            usage = usage if usage is not None else _kept_usage(response)
        finally:
            with contextlib.suppress(Exception):
                await response.aclose()  # closes the connection when cut: the server stops generating
        if sent.unreadable is not None:  # its usage cannot be checked
            raise ProtocolError(card.id, f"unreadable stream: {sent.unreadable}")
        if sent.whole is not None and not said:  # the whole reply, not a stream: the paid answer kept
            return _read_plain(card, sent.whole)
        if events == 0:
            raise ProtocolError(card.id, "the reply is not an event stream (no chunks)")
        if sent.read:
            usage = sent.usage  # as the server sent it, read off the wire: surely no estimate of LiteLLM's
        elif isinstance(getattr(response, "chunks", None), list):
            # the provider's own report, if it sent one: LiteLLM keeps every chunk
            usage = _kept_usage(response)
        elif usage is not None and await asyncio.to_thread(_litellm_estimate, litellm, usage, kwargs):
            usage = None  # LiteLLM's own estimate, not the provider's report: counted
        # LiteLLM made up a whole reply: the body was no stream (an error object?)
        if not said and usage is None:
            raise ProtocolError(
                card.id, "the reply is not an event stream (nothing from the provider: no text, no usage)"
            )
        return read.reply(id=reply_id, usage=usage, finish_reason=finish_reason)

    async def aclose(self) -> None:
        """Close every event loop's clients (see :meth:`PerLoop.aclose`) and the token counter's.
        The clients LiteLLM cached for a loop are shared with the user's own LiteLLM calls on it:
        they are closed when that loop shuts down, not here (a call in flight would hang)."""
        await self._clients.aclose()
        await self.tokenize.aclose()


#: LiteLLM providers whose streamed usage is read as they send it (OpenAI's protocol).
STREAMED_PROVIDERS = frozenset({"openai", "hosted_vllm"})


def streamed_provider(card: ModelCard) -> bool:
    """Whether ``card``'s replies are streamed: a self-hosted endpoint (``base_url``: the server
    that may ignore ``max_tokens``) or an OpenAI-protocol provider. Other hosted providers keep
    ``max_tokens`` and are called plainly, with the usage they report."""
    return bool(card.base_url) or provider_of(card.backend_model) in STREAMED_PROVIDERS


class _Sent:
    """The usage a reply carried as the server sent it (JSON, unconverted): ``read`` once the body
    or stream went through :func:`_keep_usage`'s hook (``usage`` stays ``None`` when it had none);
    ``streamed``: the request asked for a stream; ``unreadable``: why a stream's bytes could not be
    read (the reply is then a :class:`ProtocolError`); ``refused``: why a whole body was not read
    (longer than ``limit``, :func:`~agentroute.pool.backends.wire.body_limit`; an encoding not
    asked for): the :class:`ProtocolError`'s message; ``whole``: the JSON body a server that
    ignores ``stream`` sent instead (LiteLLM reads no answer from it)."""

    __slots__ = (
        "read",
        "usage",
        "streamed",
        "unreadable",
        "refused",
        "whole",
        "limit",
        "max_tokens",
        "_rest",
        "_size",
    )

    def __init__(self, request: CompletionRequest, *, streamed: bool = False) -> None:
        self.read, self.usage, self.streamed = False, None, streamed
        self._rest: list[bytes] = []
        self._size = 0
        self.unreadable: str | None = None
        self.refused: str | None = None
        self.whole: Any = None
        self.limit, self.max_tokens = body_limit(request), request.max_tokens

    def take(self, body: Any) -> None:
        """Keep ``body``'s usage (a plain reply's body or a stream's event) when it has one."""
        usage = body.get("usage") if isinstance(body, dict) else None
        if usage is not None:
            self.usage = usage

    def feed(self, data: bytes) -> None:
        """Read the events of a stream's next bytes that mention ``"usage"`` (the others are not
        parsed); :class:`BodyTooLong` for a line that has not ended past ``limit`` bytes (one
        event is bounded as a whole body is)."""
        if b"\n" not in data:  # the line goes on: its pieces are joined once, when it ends
            self._rest.append(data)
            self._size += len(data)
            if self._size > self.limit:
                raise BodyTooLong(self.limit, self.max_tokens, "a line of the stream")
            return
        lines = (b"".join(self._rest) + data).split(b"\n")
        last = lines.pop()
        self._rest, self._size = [last], len(last)
        if self._size > self.limit:
            raise BodyTooLong(self.limit, self.max_tokens, "a line of the stream")
        for line in lines:
            if line.startswith(b"data:") and b'"usage"' in line:
                with contextlib.suppress(ValueError):
                    self.take(json.loads(line[5:]))


#: The reply being read in this task (set around each ``litellm.acompletion``).
_SENT: ContextVar[_Sent | None] = ContextVar("agentroute_litellm_sent", default=None)

#: The encodings :class:`_LoopClients` accepts (``Accept-Encoding``): those :class:`_Inflate` reads.
ACCEPTED_ENCODINGS = "gzip, deflate"


#: The most bytes one step of inflating a compressed body yields: a chunk of a gzip bomb (a 64 KiB
#: read inflates to 64 MiB of spaces) is inflated no further than the body's bound needs.
INFLATE_PIECE = 64 << 10


class _Inflate:
    """A ``gzip`` or ``deflate`` body, decoded chunk by chunk as httpx decodes it (``deflate``:
    zlib-wrapped, or raw as some servers send it), in pieces of at most :data:`INFLATE_PIECE`
    bytes; :class:`zlib.error` for data that does not decode."""

    def __init__(self, encoding: str) -> None:
        self._raw_next = encoding == "deflate"  # a first chunk that is no zlib stream: raw deflate
        self._zlib = zlib.decompressobj(zlib.MAX_WBITS | (16 if encoding != "deflate" else 0))

    def pieces(self, data: bytes) -> Iterator[bytes]:
        try:
            out = self._zlib.decompress(data, INFLATE_PIECE)
        except zlib.error:
            if not self._raw_next:
                raise
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            out = self._zlib.decompress(data, INFLATE_PIECE)
        self._raw_next = False
        while True:
            if out:
                yield out
            if not self._zlib.unconsumed_tail:
                return
            out = self._zlib.decompress(self._zlib.unconsumed_tail, INFLATE_PIECE)

    def end(self) -> bytes:
        return self._zlib.flush()


def _decoder(encoding: str) -> _Inflate | None:
    """How a body sent with ``Content-Encoding: encoding`` is read: as it is (``None``), or
    inflated; :class:`ValueError` for an encoding that was not accepted (:data:`ACCEPTED_ENCODINGS`,
    one of them at most)."""
    used = codings(encoding)
    if not used:
        return None
    problem = encoding_problem(encoding, ACCEPTED_ENCODINGS)
    if problem is None and len(used) == 1:
        return _Inflate(used[0])
    raise ValueError(
        f"{problem or f'sent in Content-Encoding {encoding!r}, more than one coding'}: its usage cannot be checked"
    )


class _Inflated(httpx.AsyncByteStream):
    """A compressed body's bytes, inflated once, here (the response's ``Content-Encoding`` is then
    dropped: httpx passes them on as they are): what :class:`_UsageTee` and :class:`_Bounded` read
    is what LiteLLM reads, and a bomb is inflated no further than they read."""

    def __init__(self, stream: httpx.AsyncByteStream, decode: _Inflate) -> None:
        self._stream, self._decode = stream, decode

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for data in self._stream:
            for piece in self._decode.pieces(data):
                yield piece
        if last := self._decode.end():
            yield last

    async def aclose(self) -> None:
        await self._stream.aclose()


class _Prefixed(httpx.AsyncByteStream):
    """``head`` (read off ``rest`` already), then the rest of ``rest``."""

    def __init__(self, head: bytes, rest: AsyncIterator[bytes], stream: httpx.AsyncByteStream) -> None:
        self._head, self._rest, self._stream = head, rest, stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._head:
            yield self._head
        async for data in self._rest:
            yield data

    async def aclose(self) -> None:
        await self._stream.aclose()


#: The most bytes of a reply labelled JSON read to tell a whole body from an event stream.
HEAD_BYTES = 64 << 10


async def _head(stream: httpx.AsyncByteStream) -> tuple[bytes, _Prefixed]:
    """The bytes that begin ``stream`` (up to its first byte that is no space, at most
    :data:`HEAD_BYTES`), and ``stream`` with them put back in front."""
    chunks = aiter(stream)
    head = b""
    while not head.strip() and len(head) <= HEAD_BYTES:
        try:
            head += await anext(chunks)
        except StopAsyncIteration:
            break
    return head, _Prefixed(head, chunks, stream)


class _UsageTee(httpx.AsyncByteStream):
    """A stream's bytes (decoded: :class:`_Inflated`), passed on unchanged, each read by
    :meth:`_Sent.feed` on the way."""

    def __init__(self, stream: httpx.AsyncByteStream, sent: _Sent) -> None:
        self._stream, self._sent = stream, sent

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent = self._sent
        try:
            async for data in self._stream:
                try:
                    sent.feed(data)
                except BodyTooLong as exc:  # read no further
                    sent.refused = str(exc)
                    raise
                yield data
        except zlib.error as exc:  # as httpx's own decoder fails on it
            sent.unreadable = f"compressed data that does not decode ({exc}): its usage cannot be checked"
            raise httpx.DecodingError(str(exc)) from exc
        sent.feed(b"\n")  # a last event without its closing line break
        sent.read = True

    async def aclose(self) -> None:
        await self._stream.aclose()


class _Bounded(httpx.AsyncByteStream):
    """A whole body's bytes (decoded: :class:`_Inflated`), passed on unchanged until they pass
    ``sent.limit``: then :class:`BodyTooLong`, and the server's body is left unread."""

    def __init__(self, stream: httpx.AsyncByteStream, sent: _Sent) -> None:
        self._stream, self._sent = stream, sent

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size, limit = 0, self._sent.limit
        try:
            async for data in self._stream:
                size += len(data)
                if size > limit:
                    raise BodyTooLong(limit, self._sent.max_tokens)
                yield data
        except zlib.error as exc:
            raise ValueError(f"compressed data that does not decode ({exc})") from exc

    async def aclose(self) -> None:
        await self._stream.aclose()


async def _keep_usage(response: httpx.Response) -> None:
    """httpx's response hook of :class:`_LoopClients`: keeps the usage of a reply as the server sent
    it, for :func:`~agentroute.pool.backends.usage.checked_count` to judge (LiteLLM's ``Usage`` and
    the OpenAI SDK's models turn ``"7"`` or ``true`` into counts before the backend sees them),
    whatever its ``Content-Type`` or ``Content-Encoding`` says: a reply to a stream request is read
    as a stream unless it says it is JSON and does not begin as an event stream does
    (:func:`~agentroute.pool.backends.wire.begins_events`), any other reply as a whole body. A
    compressed body is inflated once (:class:`_Inflated`)."""
    await bound_error_body(response)
    sent = _SENT.get()
    if sent is None or response.status_code != 200:
        return
    kind = response.headers.get("content-type", "")
    events = "event-stream" in kind or (sent.streamed and "json" not in kind)
    try:
        decode = _decoder(response.headers.get("content-encoding", ""))
    except ValueError as exc:  # an encoding not asked for
        if events:
            sent.unreadable = str(exc)
            return
        sent.refused = f"unreadable reply: {exc}"
        raise
    stream = response.stream if isinstance(response.stream, httpx.AsyncByteStream) else None
    if decode is not None and stream is not None:
        stream = response.stream = _Inflated(stream, decode)
        del response.headers["content-encoding"]  # inflated: httpx passes the bytes on as they are
    if not events and sent.streamed and stream is not None:  # a stream labelled JSON (Foundry Local's)
        try:
            head, stream = await _head(stream)
        except zlib.error as exc:
            sent.refused = f"unreadable reply: compressed data that does not decode ({exc})"
            raise ValueError(sent.refused) from exc
        response.stream = stream
        events = begins_events(head)
    if events:
        if stream is not None:
            response.stream = _UsageTee(stream, sent)
        return
    # a whole body, read no further than sent.limit
    try:
        if stream is not None:
            response.stream = _Bounded(stream, sent)
        await response.aread()
    except ValueError as exc:  # too long (BodyTooLong), or compressed data that does not decode
        sent.refused = str(exc) if isinstance(exc, BodyTooLong) else f"unreadable reply: {exc}"
        raise
    try:
        body = json.loads(response.content)
    except ValueError:
        if sent.streamed:  # a stream labelled JSON that began as none does: its events' usage
            sent.feed(response.content + b"\n")
    else:
        sent.take(body)
        if sent.streamed:
            sent.whole = body
    sent.read = True


class _LoopClients:
    """One event loop's clients of self-hosted OpenAI-protocol endpoints, given to LiteLLM as its
    ``client``: one httpx client (LiteLLM's own transport, :func:`_keep_usage` hooked) shared by an
    ``openai.AsyncOpenAI`` per endpoint and key (``openai/``) and one ``AsyncHTTPHandler``
    (``hosted_vllm/``). Closed with their loop or at :meth:`LiteLLMBackend.aclose`."""

    def __init__(self) -> None:
        self.handler: Any | None = None  # made on the first call of a self-hosted endpoint
        self.openai: dict[tuple[str, str | None], openai.AsyncOpenAI] = {}

    def client(self, card: ModelCard, key: str | None) -> Any:
        """The client LiteLLM calls ``card`` (``openai/…`` or ``hosted_vllm/…`` at its ``base_url``) with."""
        if self.handler is None:
            self.handler = _http_handler(card.id)(event_hooks={"response": [_keep_usage]})
            self.handler.client.headers["Accept-Encoding"] = ACCEPTED_ENCODINGS  # what _UsageTee reads
        if provider_of(card.backend_model) != "openai":
            return self.handler
        base_url = str(card.base_url)
        client = self.openai.get((base_url, key))
        if client is None:
            client = self.openai[(base_url, key)] = openai.AsyncOpenAI(
                base_url=base_url,
                api_key=key or "none",
                max_retries=0,
                http_client=self.handler.client,  # the SDK takes httpx's clients too (as LiteLLM gives them)
            )
        return client

    async def aclose(self) -> None:
        if self.handler is not None:
            await self.handler.close()  # the one httpx client every AsyncOpenAI here shares


#: Where LiteLLM keeps the HTTP client class :class:`_LoopClients` builds on (no documented API).
_HANDLER_HOME = "litellm.llms.custom_httpx.http_handler"


def _http_handler(model: str) -> Any:
    """LiteLLM's ``AsyncHTTPHandler`` class; a LiteLLM that moved it is one line naming the fix, a
    :class:`BackendError` of ``model`` (never sent: not billed, not retried; other models go on)."""
    try:
        from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler
    except ImportError as exc:
        from importlib.metadata import PackageNotFoundError, version

        release = None
        for dist in ("litellm", "litellm-core"):  # none: a vendored copy, without package metadata
            with contextlib.suppress(PackageNotFoundError):
                release = version(dist)
                break
        earlier = f"pip install 'litellm<{release}'" if release else "pip install an earlier litellm"
        raise BackendError(
            model,
            f"LiteLLM {release or '(version unknown)'} has no AsyncHTTPHandler in {_HANDLER_HOME} "
            f"({type(exc).__name__}), which the litellm backend calls self-hosted openai/ and hosted_vllm/ "
            f"endpoints through: install an earlier LiteLLM ({earlier}) or use backend: openai for this card",
            retryable=False,
            billed=False,
        ) from exc
    return AsyncHTTPHandler


def _loop_key_ends() -> tuple[str, ...]:
    """How the keys of the running loop's clients in LiteLLM's client cache end: ``-<its loop
    token>`` (``-<id(loop)>`` in LiteLLM before 1.7x)."""
    ends = [f"-{id(asyncio.get_running_loop())}"]
    with contextlib.suppress(ImportError):
        from litellm.caching.evicted_client_closer import running_loop_token

        token = running_loop_token()
        if token is not None:
            ends.append(f"-{token}")
    return tuple(ends)


async def _close_cached(key_ends: tuple[str, ...]) -> None:
    """At an event loop's shutdown (LiteLLM's cache would keep them open once the loop is gone): drop from LiteLLM's client cache (``litellm.in_memory_llm_clients_cache``) the clients of
    one event loop — those whose keys end in ``key_ends`` — and close them; a client around the
    user's ``litellm.aclient_session`` is dropped, not closed. Best effort: the cache is no
    documented API (a LiteLLM without it is left as it is)."""
    litellm = litellm_module()
    cache = getattr(litellm, "in_memory_llm_clients_cache", None)
    kept = getattr(cache, "cache_dict", None)
    drop = getattr(cache, "delete_cache", None)
    if not isinstance(kept, dict) or drop is None:
        return
    for key in [k for k in list(kept) if isinstance(k, str) and k.endswith(key_ends)]:
        client = kept.get(key)
        drop(key)
        shared = getattr(litellm, "aclient_session", None)
        if client is None or (shared is not None and getattr(client, "_client", None) is shared):
            continue
        for name in ("close", "aclose"):  # an SDK client or LiteLLM's handler; an httpx client
            close = getattr(client, name, None)
            if close is not None and inspect.iscoroutinefunction(close):
                with contextlib.suppress(Exception):
                    await close()
                break


def provider_of(model: str) -> str:
    """LiteLLM's provider of ``model``: its prefix (``anthropic/…``), ``openai`` without one."""
    return model.split("/", 1)[0] if "/" in model else "openai"


def _mid_stream_error(exc: BaseException, card: ModelCard, *, ran: bool = True) -> BackendError:
    """A failure while reading a stream (LiteLLM wraps it in ``MidStreamFallbackError``, status
    500): an error object the server sent as an event is read as its code or type says (billed
    once the stream had begun — a role, text or a call came: ``ran``); a dropped connection or a timeout is retried and may have been billed;
    anything else is a reply LiteLLM could not read (NaN usage, a chunk that is not JSON): a
    protocol error."""
    if isinstance(exc, BackendError):
        return exc
    sent = _streamed_error(exc)
    if sent is not None:
        failed = error_reply(card.id, sent)
        failed.billed = ran
        return failed
    detail = " ".join(str(exc).split())[:300]
    if (
        isinstance(exc, TimeoutError | ConnectionError)
        or _transport_failure(exc)
        or "Connection error" in detail
    ):
        where = f" (endpoint {card.base_url})" if card.base_url else ""
        return BackendError(
            card.id, f"connection failed mid-stream: {detail}{where}", retryable=True, billed=True
        )
    return ProtocolError(card.id, f"unreadable stream: {detail}")


_CLEAN_EOF = "Stream ended before a finish_reason was received"


def _clean_end_without_finish(exc: BaseException) -> bool:
    """Whether LiteLLM raised ``exc`` because the stream ended cleanly without a finish_reason."""
    seen: BaseException | None = exc
    for _ in range(12):
        if seen is None:
            return False
        if _CLEAN_EOF in str(seen) and "Connection error" not in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__ or getattr(seen, "original_exception", None)
    return False


def _kept_usage(response: Any) -> Any | None:
    """The last usage the provider streamed, from the chunks LiteLLM keeps (``chunks``, not part of
    its documented API, each as the provider sent it): the one usage that is surely no estimate of
    LiteLLM's; ``None`` when there is none (the reply is counted)."""
    kept = getattr(response, "chunks", None)
    for chunk in reversed(kept if isinstance(kept, list) else []):
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            return usage
    return None


def _kept_closing(response: Any) -> bool:
    """Whether the chunks LiteLLM kept (as the provider sent them) hold OpenAI's closing usage chunk."""
    kept = getattr(response, "chunks", None)
    return any(
        closing_usage(getattr(c, "usage", None), getattr(c, "choices", None))
        for c in (kept if isinstance(kept, list) else [])
    )


def _litellm_estimate(litellm: ModuleType, usage: Any, kwargs: dict[str, Any]) -> bool:
    """Whether a streamed reply's ``usage`` may be LiteLLM's own estimate rather than the
    provider's report: its ``prompt_tokens`` is what :func:`litellm.token_counter` counts for the
    messages (LiteLLM's estimate when the provider sent no usage). A provider whose real count
    happens to be the same is counted by the backend instead (never below the bill)."""
    reported = getattr(usage, "prompt_tokens", None)
    if not isinstance(reported, int) or isinstance(reported, bool):
        return False  # not a count: reply_usage refuses it
    model = kwargs["model"]
    for name in dict.fromkeys((model, model.split("/", 1)[-1])):
        try:
            if litellm.token_counter(model=name, messages=kwargs["messages"]) == reported:
                return True
        except Exception:  # noqa: BLE001 (LiteLLM cannot count these messages: it could not have estimated them)
            continue
    return False


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
    sent = _error_object(exc)
    if sent is not None:  # HTTP 200 with an error object for body (LiteLLM raises it with its code as status)
        return error_reply(model, sent)
    cause = exc.__cause__ or exc.__context__
    detail = " ".join(str(cause or exc).split())[:300]
    if "Connection error" in detail or _transport_failure(exc):
        where = f" (endpoint {base_url})" if base_url else ""
        return BackendError(
            model, f"connection failed: {detail}{where}", retryable=True, billed=not never_sent(exc)
        )
    return ProtocolError(model, f"unreadable reply: {detail}")


def _error_object(exc: BaseException) -> dict[str, Any] | None:
    """The error object a provider sent with HTTP 200, as LiteLLM raises it: a plain ``Exception``
    with the object's ``code`` as ``status_code`` and its ``message`` as text, in ``exc``'s chain."""
    seen: BaseException | None = exc
    for _ in range(12):
        if seen is None:
            return None
        if type(seen) is Exception and hasattr(seen, "status_code"):
            return {"message": getattr(seen, "message", None) or str(seen), "code": seen.status_code}
        seen = seen.__cause__ or seen.__context__
    return None


def _streamed_error(exc: BaseException) -> dict[str, Any] | None:
    """The error object a server sent as an event of its stream, as LiteLLM raises it: an
    ``openai.APIError`` without status whose ``body`` is that object, in ``exc``'s chain."""
    seen: BaseException | None = exc
    for _ in range(12):
        if seen is None:
            return None
        body = getattr(seen, "body", None)
        if (
            isinstance(seen, openai.APIError)
            and not isinstance(seen, openai.APIStatusError)
            and isinstance(body, dict)
            and (body.get("message") or body.get("code") is not None)
        ):
            return body
        seen = seen.__cause__ or seen.__context__ or getattr(seen, "original_exception", None)
    return None


def _transport_failure(exc: BaseException) -> bool:
    """Whether a failed connection or transfer caused ``exc`` (LiteLLM's aiohttp transport, used for
    ``hosted_vllm/``, wraps it in a status-500 error: it is no unreadable reply)."""
    seen: BaseException | None = exc.__cause__ or exc.__context__
    for _ in range(12):
        if seen is None:
            return False
        if isinstance(seen, (ConnectionError, TimeoutError, OSError, *TRANSPORT_ERRORS)):
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


__all__ = [
    "OPENAI_PROVIDERS",
    "STREAMED_PROVIDERS",
    "LiteLLMBackend",
    "litellm_error",
    "litellm_module",
    "litellm_usd",
    "provider_of",
    "streamed_provider",
]

"""OpenAI backend: any OpenAI-compatible chat-completions server (vLLM, llama.cpp, agentroute serve, OpenAI).

The card names the endpoint (``base_url``), the served model (``model``) and, optionally, the
environment variable holding its key (``api_key_env``; a self-hosted server gets ``"none"``).
Prices must be on the card: a self-hosted model is never priced $0 by accident. The backend makes
no retries of its own (the dispatcher retries retryable errors within the budget).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.utils
import functools
import json
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, ClassVar, TypeVar

import anyio
import httpx
import openai

from agentroute.errors import BackendError, ConfigurationError, ContextLengthError, ProtocolError
from agentroute.pool.backends.base import Backend, token_sink
from agentroute.pool.backends.counting import (
    EndpointCounting,
    is_openai_endpoint,
    openai_encoding,
)
from agentroute.pool.backends.loops import PerLoop
from agentroute.pool.backends.streaming import (
    Reply,
    StreamText,
    ToolCalls,
    closing_usage,
    dropped_stream,
    logprobs_of,
    reasoning_of,
    reply_completion,
    stream_ended,
    text_parts,
)
from agentroute.pool.backends.usage import field_of
from agentroute.pool.backends.wire import (
    BodyTooLong,
    begins_events,
    body_limit,
    bound_error_body,
    encoding_problem,
    lines_within,
    read_within,
)
from agentroute.pool.card import ModelCard
from agentroute.types import Completion, CompletionRequest, Message

T = TypeVar("T")


def _transport_errors() -> tuple[type[BaseException], ...]:
    """httpx's transport errors, and those of ``httpx2`` (which ``openai`` ≥ 3 raises mid-stream)."""
    try:
        import httpx2
    except ImportError:
        return (httpx.TransportError,)
    return (httpx.TransportError, httpx2.TransportError)


#: A connection that failed or dropped (mid-stream too): retryable, whichever httpx raised it.
TRANSPORT_ERRORS = _transport_errors()

#: HTTP statuses worth retrying: timeout, conflict, too early, rate limit (and every 5xx).
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})


def backend_error(exc: BaseException, model: str, base_url: str | None = None) -> BackendError:
    """Map an OpenAI-SDK (or LiteLLM, whose errors subclass them) exception to :class:`BackendError`.

    Connection failures, timeouts, 408/409/425/429 and 5xx are retryable; authentication, bad
    requests and everything else are not. An HTTP error status is not billed (the provider refused
    the request), nor is a connection never made; a timeout or a dropped connection may have been
    (the model may have run). With the card's ``base_url``, a failed connection names it and a 404
    names the URL posted to (with a hint when ``base_url`` lacks the usual ``/v1``).
    """
    if isinstance(exc, BackendError):
        return exc
    message = " ".join(str(exc).split())[:500] or type(exc).__name__
    if isinstance(exc, (openai.APIConnectionError, TimeoutError, ConnectionError, *TRANSPORT_ERRORS)):
        # a connection that was never made carried no request: nothing to bill
        where = f" (endpoint {base_url})" if base_url else ""
        return BackendError(
            model, f"{type(exc).__name__}: {message}{where}", retryable=True, billed=not never_sent(exc)
        )
    status = getattr(exc, "status_code", None)
    if status == 400 and too_long(exc, message):  # refused before the model ran: another model may take it
        return ContextLengthError(model, f"HTTP 400 ({type(exc).__name__}): {message}")
    if isinstance(status, int):
        retryable = (status in RETRYABLE_STATUS or status >= 500) and not out_of_quota(exc, message)
        wait = retry_after(exc) if retryable else None
        # an error status means the provider refused the request before running the model
        return BackendError(
            model,
            f"HTTP {status} ({type(exc).__name__}): {message}{_not_found_hint(status, base_url)}{_shown_wait(exc)}",
            retryable=retryable,
            billed=False,
            retry_after_s=wait,
        )
    return BackendError(model, f"{type(exc).__name__}: {message}", retryable=False)


def too_long(exc: BaseException, message: str) -> bool:
    """Whether a 400 says the prompt and ``max_tokens`` exceed the context window (OpenAI's
    ``context_length_exceeded``; vLLM's "maximum context length")."""
    body = getattr(exc, "body", None)
    return (
        getattr(exc, "code", None) == "context_length_exceeded"
        or (isinstance(body, dict) and body.get("code") == "context_length_exceeded")
        or "context_length_exceeded" in message
        or "maximum context length" in message
    )


def out_of_quota(exc: BaseException, message: str) -> bool:
    """Whether a 429 says the account is out of credit (OpenAI's ``insufficient_quota``): no wait
    makes it pass, so it is not retried (another model may take the step)."""
    body = getattr(exc, "body", None)  # LiteLLM keeps the provider's error object here
    return (
        getattr(exc, "code", None) == "insufficient_quota"
        or (isinstance(body, dict) and "insufficient_quota" in (body.get("code"), body.get("type")))
        or "insufficient_quota" in message
    )


def retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked to wait before retrying, from the error's response headers:
    ``retry-after-ms`` (OpenAI, Azure), else ``Retry-After`` in seconds or as an HTTP date
    (RFC 9110); ``None`` when there is none or it cannot be read."""
    for headers in (
        getattr(getattr(exc, "response", None), "headers", None),
        getattr(exc, "litellm_response_headers", None),
    ):
        try:
            wait = _header_wait(headers)
        except Exception:  # noqa: BLE001 (headers of an unknown kind: no wait)
            wait = None
        if wait is not None:
            return wait
    return None


def _shown_wait(exc: BaseException) -> str:
    """The server's ``Retry-After`` (or ``retry-after-ms``) header as sent, for the error message."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    for name in ("retry-after", "retry-after-ms"):
        try:
            value = headers.get(name) if headers is not None else None  # case-insensitive headers
        except Exception:  # noqa: BLE001 (headers of an unknown kind: show nothing)
            value = None
        if isinstance(value, str) and value:
            return f" ({'Retry-After' if name == 'retry-after' else name}: {value[:40]})"
    return ""


def _header_wait(headers: Any) -> float | None:
    if headers is None:
        return None
    milliseconds = headers.get("retry-after-ms")  # case-insensitive headers (httpx)
    if isinstance(milliseconds, str):
        with contextlib.suppress(ValueError):
            wait = float(milliseconds) / 1000
            if math.isfinite(wait) and wait >= 0:
                return wait
    value = headers.get("retry-after")
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        wait = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        wait = max((when - datetime.datetime.now(datetime.UTC)).total_seconds(), 0.0)
    return wait if math.isfinite(wait) and wait >= 0 else None


def _not_found_hint(status: int, base_url: str | None) -> str:
    """For a 404 from a self-hosted endpoint: the URL posted to, and the usual cause."""
    if status != 404 or not base_url:
        return ""
    root = base_url.rstrip("/")
    hint = (
        ""
        if root.endswith("/v1")
        else "; OpenAI-compatible servers (vLLM, llama.cpp) serve under /v1: base_url usually ends in /v1"
    )
    return f" (POST {root}/chat/completions{hint})"


_CONNECT_ERRORS = frozenset({"ConnectError", "ConnectTimeout"})


def never_sent(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a failure to connect: the request never left."""
    seen: BaseException | None = exc
    for _ in range(12):
        if seen is None:
            return False
        if isinstance(seen, ConnectionRefusedError) or type(seen).__name__ in _CONNECT_ERRORS:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def api_key_for(card: ModelCard) -> str | None:
    """The card's key: ``$api_key_env`` when named (must be set), ``"none"`` for a self-hosted
    ``base_url``, else ``None`` (the client library reads its provider's usual variable)."""
    if card.api_key_env:
        key = os.environ.get(card.api_key_env)
        if not key:
            state = "is not set" if key is None else "is empty"
            raise ConfigurationError(
                f"model {card.id!r} reads its API key from ${card.api_key_env}, which {state}"
            )
        return key
    return "none" if card.base_url else None


#: Request fields an OpenAI-protocol provider takes as they are (``reasoning_effort`` for reasoning
#: models, ``verbosity`` for the length of GPT-5's answers, ``seed`` for reproducible sampling,
#: ``response_format`` for JSON output, ``logprobs``/``top_logprobs``: returned in
#: ``raw["logprobs"]``): the backends that send them name them (:mod:`agentroute.dispatch.options`).
PROVIDER_FIELDS = frozenset(
    {"reasoning_effort", "seed", "verbosity", "response_format", "logprobs", "top_logprobs"}
)


def provider_fields(request: CompletionRequest) -> dict[str, Any]:
    """The :data:`PROVIDER_FIELDS` that ``request`` sets, as the request body's fields."""
    return {name: value for name in sorted(PROVIDER_FIELDS) if (value := getattr(request, name)) is not None}


#: Sampling fields a model may refuse: OpenAI's reasoning models (o1, o3, o4-mini, gpt-5) take
#: only their default temperature (o3-mini none at all), while routed steps are sampled at 0.
#: A refused one is left out.
SAMPLING_FIELDS = frozenset({"temperature"})

#: Fields a model may refuse under one name and take under another: OpenAI's reasoning models
#: refuse ``max_tokens`` ("Use 'max_completion_tokens' instead"), also behind a proxy or an Azure
#: gateway whose host :func:`answer_cap` cannot tell from OpenAI's.
RENAMED_FIELDS = {"max_tokens": "max_completion_tokens"}

#: OpenAI's error codes for a field this model does not take (its value, or the field at all).
_UNSUPPORTED = frozenset({"unsupported_value", "unsupported_parameter"})


def refused_field(exc: BaseException) -> str | None:
    """The field of :data:`SAMPLING_FIELDS` or :data:`RENAMED_FIELDS` that ``exc`` (or what caused
    it) says the model refuses: OpenAI's HTTP 400 with that ``param`` and code ``unsupported_value``
    or ``unsupported_parameter`` (OpenAI, Azure OpenAI and OpenRouter send it so; or its message,
    "Unsupported value: 'temperature' …", where the error object reached us as text), or LiteLLM's
    ``UnsupportedParamsError`` naming it (LiteLLM refuses o-series and gpt-5 temperatures before
    calling); else ``None``."""
    names = sorted(SAMPLING_FIELDS | RENAMED_FIELDS.keys())
    seen: BaseException | None = exc
    for _ in range(12):
        if seen is None:
            return None
        if getattr(seen, "status_code", None) == 400:
            body = getattr(seen, "body", None)
            body = body if isinstance(body, dict) else {}
            param, code = (
                getattr(seen, "param", None) or body.get("param"),
                getattr(seen, "code", None) or body.get("code"),
            )
            if param in names and code in _UNSUPPORTED:
                return str(param)
            text = str(seen)
            for name in names:  # the error object as text (LiteLLM's hosted_vllm/)
                if f"Unsupported value: '{name}'" in text or f"Unsupported parameter: '{name}'" in text:
                    return name
            if type(seen).__name__ == "UnsupportedParamsError":
                return next((name for name in sorted(SAMPLING_FIELDS) if name in text), None)
        seen = seen.__cause__ or seen.__context__
    return None


class FieldRefusals:
    """The request fields each endpoint's model refused (:func:`refused_field`), left out of its
    later calls (a sampling field) or sent under the name it takes (``max_completion_tokens``). A
    refusal is an HTTP 400 before the model ran (not billed): the call is sent again at once, so a
    card of a reasoning model answers routed steps (sampled at temperature 0) at its default
    temperature, capped as before, instead of failing every call."""

    def __init__(self) -> None:
        self._refused: dict[tuple[str | None, str], set[str]] = {}

    async def call(
        self, card: ModelCard, kwargs: dict[str, Any], send: Callable[[dict[str, Any]], Awaitable[T]]
    ) -> T:
        """``send(kwargs)`` without the fields ``card``'s model refused, learning those it refuses now."""
        key = (card.base_url, card.backend_model)
        for name in self._refused.get(key, ()):
            _mend(kwargs, name)
        while True:  # each refusal takes a field out of kwargs: a bounded number of sends
            try:
                return await send(kwargs)
            except BackendError as exc:
                refused = refused_field(exc)
                if refused is None or refused not in kwargs:
                    raise
                self._refused.setdefault(key, set()).add(refused)
                _mend(kwargs, refused)


def _mend(kwargs: dict[str, Any], name: str) -> None:
    """Take the refused field ``name`` out of ``kwargs``, under its other name if it has one."""
    if name in kwargs:
        value = kwargs.pop(name)
        if name in RENAMED_FIELDS:
            kwargs[RENAMED_FIELDS[name]] = value


def answer_cap(card: ModelCard) -> str:
    """The request field that caps the answer: OpenAI's endpoint takes ``max_completion_tokens``
    (its reasoning models refuse the deprecated ``max_tokens``); other servers, some of which know
    only ``max_tokens`` (older vLLM, llama.cpp), get ``max_tokens``."""
    return "max_completion_tokens" if is_openai_endpoint(card.base_url) else "max_tokens"


def prompt_overhead(messages: Sequence[Message]) -> int:
    """Tokens OpenAI's chat format adds around the messages' text: 3 a message + 3 to open the reply."""
    return 3 * len(messages) + 3


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


class OpenAIBackend(EndpointCounting, Backend):
    """Call cards with ``backend: openai`` through ``openai.AsyncOpenAI`` (one client per endpoint and key).

    Replies are streamed (``stream_options={"include_usage": True}``) so that a server which ignores
    ``max_tokens`` cannot run away: after more than ``max_tokens`` content chunks (every chunk
    carries at least one token) the stream is closed, which makes vLLM abort the request, and the
    completion counts what was received (``raw["stream_cut"]``). Usage is validated
    (:mod:`~agentroute.pool.backends.usage`); missing usage is counted from the text
    (``raw["usage_counted"]``). Prompt tokens: OpenAI's endpoint through tiktoken (offline), a
    server's ``POST /tokenize`` (:meth:`aprompt_tokens`), else the byte bound. A whole JSON body
    (plain, or sent for a stream request) is read no further than
    :func:`~agentroute.pool.backends.wire.body_limit`.

    Args:
        stream: stream replies (default); ``False`` makes one plain request per call, which cannot
            stop a server that ignores ``max_tokens``. An endpoint that refuses to stream (HTTP 400
            naming ``stream``) is remembered and called plainly.
    """

    name = "openai"
    #: The :class:`~agentroute.types.CompletionRequest` fields sent to the provider when set.
    request_fields: ClassVar[frozenset[str]] = PROVIDER_FIELDS

    def __init__(self, *, stream: bool = True) -> None:
        self.stream = self.streams_tokens = stream
        # each event loop's clients, by (base_url, key): connections cannot cross event loops
        self._clients = PerLoop[dict[tuple[str | None, str | None], openai.AsyncOpenAI]](dict, _close_clients)
        self._init_counting()
        self._plain_only: set[str | None] = set()  # endpoints that refused to stream
        self.refusals = FieldRefusals()  # the fields each endpoint's model refused

    def client(self, card: ModelCard) -> openai.AsyncOpenAI:
        """The client for ``card``'s endpoint, bound to the running event loop (and closed when
        that loop shuts down, see :class:`~agentroute.pool.backends.loops.PerLoop`)."""
        key = (card.base_url, api_key_for(card))
        clients = self._clients.get()
        client = clients.get(key)
        if client is None:
            try:
                client = openai.AsyncOpenAI(
                    base_url=card.base_url,
                    api_key=key[1],
                    max_retries=0,
                    timeout=card.timeout_s,
                    http_client=openai.DefaultAsyncHttpxClient(event_hooks={"response": [bound_error_body]}),
                )
            except openai.OpenAIError as exc:
                raise ConfigurationError(f"model {card.id!r}: {exc}") from exc
            clients[key] = client
        return client

    async def preload(self, card: ModelCard) -> None:
        """Do the first call's one-off work now: build the endpoint's client (its TLS context) and
        its chat resources (the SDK imports them on first use), let the SDK build its reply models,
        load anyio's asyncio backend (httpx's first connection imports it), load tiktoken's
        encoding, probe ``POST /tokenize``. Together ~50-100 ms the first request no longer waits."""
        self.client(card).chat.completions  # noqa: B018 - the attribute's first read imports the resources
        _warm_sdk()
        await anyio.sleep(0)  # anyio imports the running loop's backend on its first call
        if card.base_url and not is_openai_endpoint(card.base_url):
            await self.tokenize.count(
                card.base_url, card.backend_model, messages=[{"role": "user", "content": "hi"}]
            )
        else:
            self.encoding(card)

    # -- token counts --------------------------------------------------------------------------
    def encoding(self, card: ModelCard) -> Any | None:
        """tiktoken's encoding when ``card`` is an OpenAI model on OpenAI's endpoint, else ``None``."""
        return openai_encoding(card.backend_model) if is_openai_endpoint(card.base_url) else None

    def hides_reasoning(self, card: ModelCard) -> bool:
        """Whether ``card``'s model may bill reasoning it never sends: any model on OpenAI's
        endpoint (its reasoning models do; a reply without usage is charged at its cap)."""
        return is_openai_endpoint(card.base_url)

    def worst_case_usd(
        self, request: CompletionRequest, card: ModelCard, prompt_tokens: int | None = None
    ) -> float:
        require_token_prices(card, self.name)
        return super().worst_case_usd(request, card, prompt_tokens)

    # -- calls -----------------------------------------------------------------------------------
    async def complete(self, request: CompletionRequest, card: ModelCard) -> Completion:
        require_token_prices(card, self.name)
        client = self.client(card)
        kwargs: dict[str, Any] = {
            "model": card.backend_model,
            # the messages travel as extra body: the SDK's typed transform of `messages` costs ~0.4 ms
            # a call (a quarter of our client CPU) and changes nothing in plain text messages
            "messages": [],
            "extra_body": {"messages": request.messages},
            answer_cap(card): request.max_tokens,
            "temperature": request.temperature,
            "timeout": card.timeout_s,
        }
        if request.stop:
            kwargs["stop"] = request.stop
        kwargs["extra_body"].update(provider_fields(request))
        started = time.perf_counter()

        async def send(kwargs: dict[str, Any]) -> Reply:
            if self.stream and card.base_url not in self._plain_only:
                try:
                    return await self._streamed(client, kwargs, request, card)
                except _StreamRefused:  # refused before the model ran (HTTP 400): not billed
                    self._plain_only.add(card.base_url)
            return await self._plain(client, kwargs, request, card)

        reply = await self.refusals.call(card, kwargs, send)
        return await reply_completion(self, reply, request, card, started, card.usd)

    async def _plain(
        self, client: openai.AsyncOpenAI, kwargs: dict[str, Any], request: CompletionRequest, card: ModelCard
    ) -> Reply:
        """One plain request, its reply read from the JSON sent (:func:`_read_plain`), at most
        :func:`~agentroute.pool.backends.wire.body_limit` bytes of it."""
        call = client.chat.completions.with_streaming_response.create(**kwargs)
        try:
            response = await call.__aenter__()
        except Exception as exc:
            raise _error(exc, card.id, card.base_url) from exc
        try:
            data = await _body(card, response.http_response, request)
        finally:
            await call.__aexit__(None, None, None)
        try:
            whole = json.loads(data)
        except ValueError as exc:  # not JSON, not UTF-8
            raise ProtocolError(card.id, f"unreadable reply: {' '.join(str(exc).split())[:200]}") from exc
        return _read_plain(card, whole)

    async def _streamed(
        self, client: openai.AsyncOpenAI, kwargs: dict[str, Any], request: CompletionRequest, card: ModelCard
    ) -> Reply:
        """Stream the reply and read its server-sent events as plain JSON (the SDK's typed chunk
        objects cost about 40% of a call's client CPU); the SDK still builds, sends and maps errors."""
        call = client.chat.completions.with_streaming_response.create(
            **kwargs, stream=True, stream_options={"include_usage": True}
        )
        try:
            response = await call.__aenter__()
        except openai.BadRequestError as exc:
            if "stream" in str(exc).lower():
                raise _StreamRefused from exc
            raise _error(exc, card.id, card.base_url) from exc
        except Exception as exc:
            raise _error(exc, card.id, card.base_url) from exc
        http = response.http_response
        texts: AsyncIterator[str] = http.aiter_text()
        if "json" in http.headers.get("content-type", ""):  # a JSON body, bounded (_body); or a stream
            try:
                head, whole = await _json_head(card, http, texts)  # a stream labelled JSON (Foundry Local)
            except BaseException:
                await call.__aexit__(None, None, None)
                raise
            texts = _prefixed(head, texts)
            if whole:
                try:
                    data = await _body(card, http, request, (text.encode() async for text in texts))
                finally:
                    await call.__aexit__(None, None, None)
                return _not_a_stream(card, data)
        problem = _encoding_problem(http)
        if problem is not None:
            await call.__aexit__(None, None, None)
            raise ProtocolError(card.id, f"unreadable stream: {problem}")
        # the sink: someone shows the answer as it comes (LangGraph's messages stream)
        read = StreamText(card.id, request.max_tokens, token_sink.get())
        events, chose = 0, False
        usage: Any = None
        reply_id, finish_reason, confidence = "", None, None
        body: list[str] = []  # what was not an event: an error object sent as a plain JSON body
        done: list[bool] = []  # [True] once the stream's [DONE] came
        closing = False  # OpenAI's closing usage chunk came
        try:
            async for chunk in _events(texts, body, done, request):
                events += 1
                if not isinstance(chunk, dict):
                    raise ProtocolError(card.id, f"a stream chunk is not an object (got {chunk!r:.80})")
                if chunk.get("error"):  # an error reported inside the stream: read as its code or type says
                    failed = error_reply(card.id, chunk["error"])
                    # once the stream had begun (any event before this one), the provider ran the
                    # prompt: the attempt may have been billed; an error as the first event was not
                    failed.billed = events > 1
                    raise failed
                reply_id = reply_id or str(chunk.get("id") or "")
                if chunk.get("usage") is not None:
                    usage = chunk["usage"]
                    closing = closing or closing_usage(usage, chunk.get("choices"))
                confidence = _confidence(chunk) if confidence is None else confidence
                choice = _first_choice(card, chunk.get("choices"))
                if choice is None:
                    continue
                if not isinstance(choice, dict):
                    raise ProtocolError(card.id, f"a stream choice is not an object (got {choice!r:.80})")
                chose = True
                finish_reason = choice.get("finish_reason") or finish_reason
                delta = choice.get("delta") or {}
                if not isinstance(delta, dict):
                    raise ProtocolError(card.id, f"a stream delta is not an object (got {delta!r:.80})")
                if choice.get("logprobs"):
                    read.add_logprobs(logprobs_of(choice))
                # reasoning models (vLLM, DeepSeek) stream their billed reasoning beside the answer
                if not await read.add(delta.get("content"), reasoning_of(delta), delta.get("tool_calls")):
                    break
        except ProtocolError:
            raise
        except BodyTooLong as exc:  # an event that never ends
            raise ProtocolError(card.id, str(exc)) from exc
        except (ValueError, TypeError, AttributeError) as exc:  # undecodable event, bad schema
            raise ProtocolError(
                card.id, f"unreadable stream: {type(exc).__name__}: {str(exc)[:200]}"
            ) from exc
        except TRANSPORT_ERRORS as exc:
            # a connection that failed after the stream's end (a chunked body closed before its last,
            # empty chunk) lost nothing: the answer is kept, as when the connection's end frames the body
            if not stream_ended(done=bool(done), finish_reason=finish_reason, closing=closing, cut=False):
                raise _error(exc, card.id, card.base_url) from exc
        except Exception as exc:
            raise _error(exc, card.id, card.base_url) from exc
        finally:
            await call.__aexit__(None, None, None)  # closes the connection when cut: vLLM aborts the request
        if events == 0:  # a body that is no stream, labelled as one
            return _not_a_stream(card, "\n".join(body))
        if not chose:  # as a plain reply with "choices": [] (only a usage chunk, say)
            raise ProtocolError(card.id, "the reply has no choices")
        if not stream_ended(done=bool(done), finish_reason=finish_reason, closing=closing, cut=read.cut):
            raise dropped_stream(card)
        return read.reply(id=reply_id, usage=usage, finish_reason=finish_reason, confidence=confidence)

    async def aclose(self) -> None:
        """Close every event loop's clients (see :meth:`PerLoop.aclose`)."""
        await self._clients.aclose()
        await self.tokenize.aclose()


async def _close_clients(clients: dict[Any, openai.AsyncOpenAI]) -> None:
    """Close every client, also after one fails to close (the first failure is raised at the end)."""
    failed = [
        r for r in await asyncio.gather(*(c.close() for c in clients.values()), return_exceptions=True) if r
    ]
    if failed:
        raise failed[0]


class _StreamRefused(Exception):
    """The server answered a streamed request with HTTP 400 about streaming (it cannot stream)."""


async def _body(
    card: ModelCard, response: Any, request: CompletionRequest, chunks: AsyncIterator[bytes] | None = None
) -> bytes:
    """A whole reply's body (decoded; ``chunks`` when some of it was read already), read no further
    than :func:`body_limit`: a longer one, or one in an encoding the client did not ask for, is a
    :class:`ProtocolError`."""
    problem = _encoding_problem(response)
    if problem is not None:
        raise ProtocolError(card.id, f"unreadable reply: {problem}")
    try:
        return await read_within(chunks or response.aiter_bytes(), body_limit(request), request.max_tokens)
    except BodyTooLong as exc:
        raise ProtocolError(card.id, str(exc)) from exc
    except Exception as exc:
        raise _error(exc, card.id, card.base_url) from exc


async def _json_head(card: ModelCard, response: Any, texts: AsyncIterator[str]) -> tuple[str, bool]:
    """The text that begins a reply labelled JSON (up to its first character that is no space),
    and whether it is a whole JSON body: one that begins as an event stream does is read as a
    stream (and one in an encoding not asked for is left to :func:`_body` to name)."""
    if _encoding_problem(response) is not None:
        return "", True
    head = ""
    try:
        async for text in texts:
            head += text
            if head.strip() or len(head) > 65536:
                break
    except Exception as exc:
        raise _error(exc, card.id, card.base_url) from exc
    return head, not begins_events(head)


async def _prefixed(first: str, texts: AsyncIterator[str]) -> AsyncIterator[str]:
    """``first``, then the rest of ``texts``."""
    yield first
    async for text in texts:
        yield text


def _encoding_problem(response: Any) -> str | None:
    """:func:`~agentroute.pool.backends.wire.encoding_problem` of an httpx ``response`` to the request it answers."""
    sent = response.headers.get("content-encoding")
    if not sent:  # the common case, without a look at the request
        return None
    return encoding_problem(sent, response.request.headers.get("accept-encoding", ""))


def _not_a_stream(card: ModelCard, body: str | bytes) -> Reply:
    """The reply to a stream request that answered with a JSON body: the whole reply (the server
    ignores ``stream``), read as a plain one, the paid answer kept; or an error object."""
    try:
        whole = json.loads(body)
    except ValueError:
        whole = None
    if isinstance(whole, dict) and "choices" in whole:
        return _read_plain(card, whole)
    error = error_in(whole, None)
    if error is not None:
        raise error_reply(card.id, error)
    raise ProtocolError(card.id, "the reply is not an event stream (no chunks)")


def _error(exc: BaseException, model: str, base_url: str | None = None) -> BackendError:
    """:func:`backend_error`, with a reply the SDK could not decode as a protocol error."""
    if isinstance(exc, openai.APIResponseValidationError | json.JSONDecodeError):
        return ProtocolError(model, f"unreadable reply: {' '.join(str(exc).split())[:200]}")
    return backend_error(exc, model, base_url)


@functools.cache
def _warm_sdk() -> None:
    """Build the SDK's reply models and read its request types' hints once (it does both lazily,
    on the first call: ~0.1-0.3 s, and ~20 ms to transform the first request's parameters)."""
    from openai._models import construct_type
    from openai._utils import maybe_transform
    from openai.types.chat import ChatCompletion, ChatCompletionChunk, completion_create_params

    asked = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "stream_options": {"include_usage": True},
    }
    for params in (
        completion_create_params.CompletionCreateParamsStreaming,
        completion_create_params.CompletionCreateParamsNonStreaming,
    ):
        maybe_transform(asked, params)

    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    choice = {"index": 0, "finish_reason": "stop"}
    common = {"id": "warm", "created": 0, "model": "m", "usage": usage}
    construct_type(
        type_=ChatCompletionChunk,
        value={
            **common,
            "object": "chat.completion.chunk",
            "choices": [{**choice, "delta": {"content": "x"}}],
        },
    )
    construct_type(
        type_=ChatCompletion,
        value={
            **common,
            "object": "chat.completion",
            "choices": [{**choice, "message": {"role": "assistant", "content": "x"}}],
        },
    )


def error_in(body: Any, choices: Any) -> Any | None:
    """The error object of a reply sent with HTTP 200 (some proxies and OpenAI-compatible servers
    report their failures so): ``body["error"]`` when it says something (a message or a code; some
    servers send an empty one on success) and the reply has no choices; else ``None``."""
    if not isinstance(body, dict) or choices:
        return None
    if isinstance(body.get("choices"), list) and body["choices"]:
        return None
    error = body.get("error")
    if isinstance(error, dict):
        return error if error.get("message") or error.get("code") is not None else None
    return error or None


def error_reply(model: str, error: Any) -> BackendError:
    """A :class:`BackendError` for an error sent with HTTP 200 (as the reply's body, or as an event
    of its stream), read as an error status is (:func:`backend_error`): retryable when its ``code``
    is a retryable status (429, 5xx …) or, without one, when its ``type`` says the server failed or
    is overloaded; not billed."""
    message, code, kind = (
        (error.get("message"), error.get("code"), error.get("type"))
        if isinstance(error, dict)
        else (error, None, None)
    )
    status = None
    with contextlib.suppress(TypeError, ValueError):
        status = (
            int(code) if code is not None and not isinstance(code, bool) and 100 <= int(code) <= 599 else None
        )
    if status is not None:
        retryable = status in RETRYABLE_STATUS or status >= 500
    else:
        retryable = str(kind).lower() in {
            "server_error",
            "internal_error",
            "rate_limit_error",
            "overloaded_error",
            "timeout",
            "service_unavailable",
        }
    text = " ".join(str(message if message is not None else kind or "an error").split())[:500]
    shown = f", code {code}" if code is not None else ""
    return BackendError(model, f"error reply (HTTP 200{shown}): {text}", retryable=retryable, billed=False)


def _read_plain(card: ModelCard, body: Any) -> Reply:
    """A plain reply, ``body`` its JSON as sent: an error object sent with HTTP 200 raised as its
    error, no choice a :class:`ProtocolError`, else its first choice. The choices are read through
    the SDK's objects, the usage as sent: the SDK's models turn ``"7"``, ``" 7 "`` or ``true`` into
    counts, which :func:`~agentroute.pool.backends.usage.checked_count` refuses (as in a stream)."""
    from openai._models import construct_type
    from openai.types.chat import ChatCompletion

    if not isinstance(body, dict):
        raise ProtocolError(card.id, f"the reply is not a JSON object (got {type(body).__name__})")
    response = construct_type(type_=ChatCompletion, value=body)
    choices = getattr(response, "choices", None)
    error = error_in(body, choices)
    if error is not None:  # HTTP 200 with an error object for body
        raise error_reply(card.id, error)
    choice = _first_choice(card, choices)
    if choice is None:
        raise ProtocolError(card.id, "the reply has no choices")
    reply = plain_reply(card, response, choice, confidence=_confidence(body))
    reply.usage = body.get("usage")
    return reply


def plain_reply(card: ModelCard, response: Any, choice: Any, *, confidence: float | None = None) -> Reply:
    """A plain reply's first choice as a :class:`Reply`: its answer, reasoning and tool calls (all
    billed text), usage and finish reason. A choice without a message object (``null``, text) is
    a :class:`ProtocolError`: not an empty answer."""
    message = getattr(choice, "message", None)
    if not hasattr(message, "content"):
        # a choice that is text or a number has no message at all: name the choice, else its message
        choice_is_no_object = not hasattr(choice, "message") and not isinstance(choice, dict | None)
        shown = f"a choice of {type(choice).__name__}" if choice_is_no_object else type(message).__name__
        raise ProtocolError(card.id, f"the reply's message is not an object (got {shown})")
    text, reasoning = message_text(card, message)
    tools = ToolCalls(card.id)
    called = tools.add(getattr(message, "tool_calls", None))
    return Reply(
        id=str(getattr(response, "id", "") or ""),
        text=text,
        received=text + reasoning + called,
        usage=getattr(response, "usage", None),
        finish_reason=getattr(choice, "finish_reason", None),
        chunks=0,
        cut=False,
        confidence=confidence,
        reasoning=reasoning,
        tool_calls=tools.list(),
        logprobs=logprobs_of(choice),
    )


def message_text(card: ModelCard, message: Any) -> tuple[str, str]:
    """A plain reply's ``(answer, reasoning)`` text: its ``content`` (or its text parts) and the reasoning a reasoning
    model sends beside it (``reasoning_content``, or ``reasoning``), each ``""`` when absent."""
    text = text_parts(getattr(message, "content", None)) or ""
    reasoning = (reasoning_of(message) if message is not None else None) or ""
    for what, part in (("content", text), ("reasoning", reasoning)):
        if not isinstance(part, str):
            raise ProtocolError(card.id, f"the reply's {what} is not text (got {type(part).__name__})")
    return text, reasoning


def _first_choice(card: ModelCard, choices: Any) -> Any | None:
    """The choice asked for (``index`` 0, or the first that has no whole-number ``index``):
    a server that answers more choices than asked, or interleaves their deltas, never mixes
    another choice's text into the answer. ``None`` when there is none."""
    if choices is None:
        return None
    if not isinstance(choices, list):
        raise ProtocolError(card.id, f"'choices' is not a list (got {type(choices).__name__})")
    for choice in choices:
        index = field_of(choice, "index")
        if not isinstance(index, int) or isinstance(index, bool) or index == 0:
            return choice
    return None


async def _events(
    texts: AsyncIterator[str], other: list[str], ended: list[bool], request: CompletionRequest
) -> AsyncIterator[Any]:
    """The JSON payloads of a server-sent event stream (its decoded ``texts``), up to ``[DONE]``
    (SSE: ``data:`` lines, joined by newlines, make one event; a blank line ends it; other fields
    are ignored). Lines
    that are no SSE field, before any event, go to ``other`` (up to 64 KiB): a body that is not a
    stream at all (an error object). ``ended`` gets ``True`` when ``[DONE]`` comes. A line is no
    longer than a whole body may be (:func:`~agentroute.pool.backends.wire.lines_within`)."""
    data: list[str] = []
    lines = lines_within(texts, body_limit(request), request.max_tokens)
    kept = 0
    async for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].lstrip(" ") if len(line) > 5 else "")
            continue
        if kept < 65536 and line and ":" not in line[:1] and not line.startswith(("event:", "id:", "retry:")):
            other.append(line)
            kept += len(line)
        if line or not data:
            continue
        payload, data = "\n".join(data), []
        if payload.startswith("[DONE]"):
            ended.append(True)
            async for _ in lines:  # read to the end, so that the connection is reused
                pass
            return
        yield json.loads(payload)
    if data and data[0].startswith("[DONE]"):
        ended.append(True)
    elif data:
        yield json.loads("\n".join(data))


def _confidence(response: Any) -> Any:
    """The ``agentroute.confidence`` an agentroute server sends, as sent (``None`` when absent): the
    dispatcher reads it as any backend's ``raw["confidence"]``, one rule for what is not a number."""
    if isinstance(response, dict):
        extra = response.get("agentroute")
    else:
        extra = (getattr(response, "model_extra", None) or {}).get("agentroute")
    return extra.get("confidence") if isinstance(extra, dict) else None


__all__ = [
    "RETRYABLE_STATUS",
    "RENAMED_FIELDS",
    "SAMPLING_FIELDS",
    "TRANSPORT_ERRORS",
    "PROVIDER_FIELDS",
    "FieldRefusals",
    "OpenAIBackend",
    "api_key_for",
    "backend_error",
    "dropped_stream",
    "error_in",
    "error_reply",
    "message_text",
    "plain_reply",
    "never_sent",
    "prompt_overhead",
    "provider_fields",
    "refused_field",
    "require_token_prices",
    "retry_after",
]

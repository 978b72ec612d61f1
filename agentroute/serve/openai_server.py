"""An OpenAI-compatible HTTP server in front of a :class:`~agentroute.pool.ModelPool`.

``POST /v1/chat/completions`` (``n`` ≥ 1, ``stream`` as server-sent events), ``GET /v1/models``,
``GET /v1/models/{id}`` and ``GET /health``. The request's ``model`` names a pool card by id; the call
goes to that card's backend, so a local SmolLM2 (or any card) becomes reachable from any OpenAI
client, LiteLLM or another agentroute ``openai`` card. Errors use OpenAI's ``{"error": {...}}``
shape; a retryable backend failure is a 503, so clients retry it; a field the server cannot honour
and whose loss would change the answer (:data:`UNSUPPORTED`: tools, JSON modes, logprobs, images)
is a 400, never dropped. Responses carry an ``agentroute`` extension with the cost and confidence.
A client that disconnects cancels its backend calls.

With a ``router`` (:mod:`agentroute.serve.routed`), the model ``"router"`` (also ``"router:<name>"``)
routes each request as one agentroute task under a hard per-request budget.

>>> server = ServerThread(pool).start()      # doctest: +SKIP
>>> server.url                               # doctest: +SKIP
'http://127.0.0.1:54321/v1'
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from agentroute._optional import require
from agentroute.dispatch.dispatcher import call_within, check_tool_calls
from agentroute.dispatch.options import SEED_MAX, RequestOptions, nth_seed, refused_option
from agentroute.errors import (
    BackendError,
    ConfigurationError,
    ContextLengthError,
    ProtocolError,
    UnknownNameError,
)
from agentroute.pool.backends.base import Backend, token_sink
from agentroute.pool.backends.streaming import reasoning_sink
from agentroute.pool.backends.usage import with_usage
from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool
from agentroute.types import Completion, CompletionRequest, finite_number

if TYPE_CHECKING:
    from agentroute.budget import Budget
    from agentroute.memory.base import MemoryStore
    from agentroute.routers.base import Router
    from agentroute.serve.routed import Routing

require("fastapi")
require("uvicorn")

import uvicorn  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse, Response, StreamingResponse  # noqa: E402
from starlette.exceptions import HTTPException  # noqa: E402

T = TypeVar("T")
#: What a client can reach (a 404 names them: there is no /v1/completions or /v1/embeddings).
ENDPOINTS = ("POST /v1/chat/completions", "GET /v1/models", "GET /v1/models/{id}", "GET /health")


_NO_TOOLS = "tool calls are not supported (the models answer in text)"


def _kind(part: Mapping[str, Any]) -> str:
    """A content part's type (a part without one is text)."""
    return str(part.get("type", "text"))


class ChatMessage(BaseModel):
    """One message; ``content`` may be a string or a list of parts (text parts are kept)."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _parts(cls, content: Any) -> Any:
        """One clear error for content of the wrong shape (not one per member of the union)."""
        if content is None or isinstance(content, str):
            return content
        if not isinstance(content, list) or not all(isinstance(part, dict) for part in content):
            raise ValueError('expected a string or a list of parts such as {"type": "text", "text": "..."}')
        for index, part in enumerate(content):
            if _kind(part) == "text" and not isinstance(part.get("text"), str):
                raise ValueError(f'part {index}: a text part needs "text", a string')
        return content

    def sent(self) -> dict[str, str]:
        """The message a card's backend gets, in roles every chat template and OpenAI-compatible
        provider knows: ``developer`` (OpenAI's new name for ``system``) as ``system``; a ``tool`` or
        ``function`` result as a user message ``"tool: text"``, as the router sends it (the
        assistant's call it answers is refused, and a provider refuses a tool message without one)."""
        if self.role in ("tool", "function"):
            return {"role": "user", "content": f"{self.role}: {self.text()}"}
        return {"role": "system" if self.role == "developer" else self.role, "content": self.text()}

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "".join(part["text"] for part in self.content if _kind(part) == "text")

    def unsupported(self) -> tuple[str, str] | None:
        """``(field, why)`` of what this message holds that no model would see: an image, audio or
        file part, or an assistant's tool calls."""
        for name in ("tool_calls", "function_call"):
            if (self.model_extra or {}).get(name):
                return name, _NO_TOOLS
        for index, part in enumerate(self.content if isinstance(self.content, list) else []):
            if (kind := _kind(part)) != "text":
                return f"content.{index}", f"{kind!r} parts are not supported: only text parts are read"
        return None


class StreamOptions(BaseModel):
    """``stream_options``: ``include_usage`` adds a last chunk with the usage and no choices."""

    model_config = ConfigDict(extra="allow")

    include_usage: bool | None = False


class ChatCompletionBody(BaseModel):
    """The fields of OpenAI's chat-completions request that the server honours; those of
    :data:`UNSUPPORTED` are refused when they ask for something, other fields are ignored.

    As in OpenAI's API, the optional fields may be ``null``: their defaults then apply.
    """

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    n: int | None = Field(default=None, ge=1, le=16)
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    reasoning_effort: str | None = Field(default=None, min_length=1)
    verbosity: str | None = Field(default=None, min_length=1)
    seed: int | None = Field(default=None, ge=-SEED_MAX - 1, le=SEED_MAX)
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    @field_validator("top_logprobs")
    @classmethod
    def _asks_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        """Alternatives come with the log probabilities asked for: OpenAI refuses them alone."""
        if value and not info.data.get("logprobs"):
            raise ValueError("needs logprobs: true (the alternatives of each token's log probability)")
        return value

    def options(self) -> RequestOptions:
        """The provider fields this request sets (:class:`RequestOptions`); ``{"type": "text"}``,
        ``logprobs: false`` and ``top_logprobs: 0`` ask for nothing."""
        response_format = self.response_format if _not_text(self.response_format) else None
        return RequestOptions(
            reasoning_effort=self.reasoning_effort, verbosity=self.verbosity, seed=self.seed,
            response_format=response_format, logprobs=self.logprobs or None, top_logprobs=self.top_logprobs or None,
        )  # fmt: skip


#: The largest request body read (32 MiB: text far beyond any model's context window); a larger one is a 413.
MAX_BODY_BYTES = 32 * 2**20


class BodyLimit:
    """ASGI middleware: a request body past :data:`MAX_BODY_BYTES` is refused (413) instead of
    being read whole into memory: before any of it is read when its declared length is over, else
    once that much has come (a chunked body)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = int(
            dict(scope["headers"]).get(b"content-length", b"0") or 0
        )  # uvicorn refuses a malformed one
        read = 0

        async def limited() -> Any:
            nonlocal read
            if declared > MAX_BODY_BYTES:
                raise _too_large()
            message = await receive()
            read += len(message.get("body", b""))
            if read > MAX_BODY_BYTES:
                raise _too_large()
            return message

        await self.app(scope, limited, send)


def _too_large() -> HTTPException:
    return HTTPException(413, f"the body is over {MAX_BODY_BYTES // 2**20} MiB")


def _forces_a_call(value: Any) -> bool:
    return value not in (None, "none", "auto")


def _not_text(value: Any) -> bool:
    return value is not None and not (isinstance(value, Mapping) and value.get("type") == "text")


def _not_text_only(value: Any) -> bool:
    return value not in (None, ["text"])


def _given(value: Any) -> bool:
    return value is not None


#: Request fields the server cannot honour and whose loss would change the answer: when they ask for
#: something they are refused (400), never dropped. Sampling hints (``top_p``, penalties,
#: ``user``…) are ignored; :meth:`ChatCompletionBody.options` reach the providers that take them.
UNSUPPORTED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "tools": (bool, _NO_TOOLS),
    "tool_choice": (_forces_a_call, _NO_TOOLS),
    "functions": (bool, _NO_TOOLS),
    "function_call": (_forces_a_call, _NO_TOOLS),
    "logit_bias": (bool, "token biases are not applied"),
    "modalities": (_not_text_only, 'only ["text"]'),
    "audio": (_given, "audio output is not supported"),
    "web_search_options": (_given, "web search is not supported"),
}


#: A tool list that its choice switches off (``"none"``: answer in text, call nothing) asks for
#: nothing the models cannot give: agents send their tools with ``tool_choice="none"`` for a final answer.
_SWITCHED_OFF_BY = {"tools": "tool_choice", "functions": "function_call"}


def refusal(body: ChatCompletionBody) -> JSONResponse | None:
    """The 400 of a request asking for what the server cannot give (:data:`UNSUPPORTED`, or a
    message's image or tool calls), or ``None``."""
    extra = body.model_extra or {}
    for name, (asks, why) in UNSUPPORTED.items():
        switch = _SWITCHED_OFF_BY.get(name)
        if asks(extra.get(name)) and not (switch is not None and extra.get(switch) == "none"):
            return _unsupported(name, why)
    for index, message in enumerate(body.messages):
        if (found := message.unsupported()) is not None:
            return _unsupported(f"messages.{index}.{found[0]}", found[1])
    return None


def refused_options(
    options: RequestOptions, takers: Iterable[frozenset[str]], where: str
) -> JSONResponse | None:
    """The 400 of an option in ``options`` that one of ``takers`` (the ``request_fields`` of the
    backends that may answer: on the router, of every card it may pick) cannot honour, or ``None``;
    ``where`` names the model in it. A card's provider gets the fields its backend names
    (``openai``, ``litellm``: :data:`~agentroute.pool.backends.openai.PROVIDER_FIELDS`); ``seed``,
    a mere hint, is never refused."""
    name = refused_option(options, takers)
    if name is None:
        return None
    return _unsupported(
        name,
        f"{where} cannot honour it: only cards of the openai and litellm backends pass it to their "
        "provider; name such a card as the model",
    )


def takers_of(backend: Backend) -> frozenset[str]:
    """The request fields ``backend`` passes on (its ``request_fields``)."""
    return getattr(backend, "request_fields", frozenset())


def _unsupported(param: str, why: str) -> JSONResponse:
    return _error(400, f"{param}: {why}", "invalid_request_error", code="unsupported_parameter", param=param)


def _error(
    status: int, message: str, kind: str, code: str | None = None, param: str | None = None
) -> JSONResponse:
    return JSONResponse(_error_body(message, kind, code, param), status_code=status)


def _error_body(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _failure(exc: Exception, card: ModelCard) -> JSONResponse:
    """The error response of a failed backend call."""
    if isinstance(exc, TimeoutError):
        return _error(503, f"{card.id}: timed out after {card.timeout_s:g}s", "server_error", code="timeout")
    if isinstance(exc, ContextLengthError):  # OpenAI's code: clients (LangChain, LiteLLM) recognise it
        return _error(
            400, str(exc), "invalid_request_error", code="context_length_exceeded", param="messages"
        )
    if isinstance(exc, ProtocolError):
        return bad_upstream_reply(exc)
    if isinstance(exc, BackendError):
        status, kind = (503, "server_error") if exc.retryable else (400, "invalid_request_error")
        return _error(status, str(exc), kind)
    if isinstance(exc, ConfigurationError):
        return _error(500, str(exc), "server_error", code="misconfigured_model")
    return _error(500, f"internal error: {type(exc).__name__}: {exc}", "server_error")


def bad_upstream_reply(exc: ProtocolError) -> JSONResponse:
    """The 502 ``bad_upstream_reply`` of an upstream reply that broke the protocol; not to be retried
    (``x-should-retry: false``, which OpenAI's clients honour): each try would be paid again."""
    response = _error(502, f"upstream reply: {exc}", "server_error", code="bad_upstream_reply")
    response.headers["x-should-retry"] = "false"
    return response


def _unknown_model(model: str, exc: UnknownNameError) -> JSONResponse:
    return _error(404, str(exc), "invalid_request_error", code="model_not_found", param="model")


def create_app(
    pool: ModelPool,
    *,
    preload: bool = True,
    router: Router | str | Path | None = None,
    memory: MemoryStore | str | None = None,
    budget: Budget | Mapping[str, Any] | None = None,
    allow_new_agents: bool = False,
    memory_wait_s: float | None = None,
) -> FastAPI:
    """The FastAPI app serving ``pool``. With ``preload``, local models load at startup.

    With ``router`` (a :class:`~agentroute.routers.Router`, a registered name or a directory saved
    by ``agentroute train``), the model ``"router"`` routes each request over the pool's agents as
    one task under ``budget`` (the default per-request :class:`~agentroute.budget.Budget`, or a
    mapping of its limits), recorded in ``memory`` (a store or a database URL) when given. A bad
    router, one that does not fit the pool (pool agents it never saw, unless ``allow_new_agents``)
    or a bad budget is a ``ConfigurationError`` here. A routed request whose write-ahead record the
    memory has not stored within ``memory_wait_s`` (default 5 s) gets a retryable 503, its call not
    made; ``GET /health`` answers 503 while the memory refuses writes.
    """
    routing = _routing(pool, router, memory, budget, allow_new_agents, memory_wait_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            if preload:
                for card in pool:
                    backend = pool.backend(card.id)
                    warm = getattr(backend, "preload", None)
                    if warm is not None:
                        await warm(card)
            yield
        finally:
            if routing is not None:
                await routing.stop_in_flight()  # the requests the stop cancelled: stored before the close
                routing.close()

    app = FastAPI(
        title="agentroute", summary="OpenAI-compatible API over an agentroute model pool", lifespan=lifespan
    )
    app.state.pool = pool
    app.state.routing = routing

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":
            return _error(400, "invalid request: the body is not valid JSON", "invalid_request_error")
        loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        if not loc:  # the body as a whole: a JSON list, a form, text
            sent_json = "json" in request.headers.get("content-type", "")
            hint = "" if sent_json else " sent with 'Content-Type: application/json'"
            return _error(
                400, f"invalid request: the body must be a JSON object{hint}", "invalid_request_error"
            )
        return _error(
            400,
            f"invalid request: {loc}: {str(first.get('msg', exc)).removeprefix('Value error, ')}",
            "invalid_request_error",
            param=loc,
        )

    app.add_middleware(BodyLimit)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        hint = f"; this server has {', '.join(ENDPOINTS)}" if exc.status_code == 404 else ""
        return _error(
            exc.status_code,
            f"{request.method} {request.url.path}: {exc.detail}{hint}",
            "invalid_request_error",
        )

    @app.exception_handler(Exception)
    async def _crashed(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal error: {type(exc).__name__}: {exc}", "server_error")

    routed = routing.names if routing is not None else []

    @app.get("/health")
    async def health() -> Any:
        body: dict[str, Any] = {"status": "ok", "models": routed + pool.ids}
        if routing is not None and (memory := await routing.probed_memory_health()) is not None:
            body["memory"] = memory
            if memory["state"] != "ok":  # routed requests get a retryable 503 meanwhile
                return JSONResponse({**body, "status": "unavailable"}, status_code=503)
        return body

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [_router_entry(n) for n in routed] + [_model_entry(c) for c in pool],
        }

    @app.get("/v1/models/{model:path}")
    async def model(model: str) -> Any:
        if model in routed:
            return _router_entry(model)
        try:
            return _model_entry(pool.card(model))
        except UnknownNameError as exc:
            return _unknown_model(model, exc)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionBody, http: Request) -> Response:
        if (refused := refusal(body)) is not None:
            return refused
        if routing is not None and body.model in routed:
            from agentroute.serve.routed import routed_completion

            return await routed_completion(routing, body, http)
        try:
            card = pool.card(body.model)
        except UnknownNameError as exc:
            if body.model.split(":", 1)[0] == "router":
                hint = (
                    f"routes as {', '.join(routed)}" if routed else "has no router (serve it with a router)"
                )
                return _error(
                    404,
                    f"{exc}; this server {hint}",
                    "invalid_request_error",
                    code="model_not_found",
                    param="model",
                )
            return _unknown_model(body.model, exc)
        backend, n, options = pool.backend(card.id), body.n or 1, body.options()
        if (
            refused := refused_options(
                options, [takers_of(backend)], f"model {card.id!r} (backend {card.backend})"
            )
        ) is not None:
            return refused
        stop = [body.stop] if isinstance(body.stop, str) else body.stop
        request = CompletionRequest(
            model=card.backend_model,
            messages=[m.sent() for m in body.messages],
            max_tokens=body.max_completion_tokens or body.max_tokens or card.max_tokens,
            temperature=1.0 if body.temperature is None else body.temperature,
            stop=stop or None,
        )
        options.apply(request)
        if body.stream:
            usage = bool(body.stream_options and body.stream_options.include_usage)
            return await _stream(http, body.model, card, backend, request, n, usage)
        try:
            completions = await _unless_disconnected(
                # timeout_s bounds a plain call, and a streamed one's silences (as for routed steps)
                http,
                call_within(_complete_all(backend, request, card, n), card.timeout_s),
            )
        except (TimeoutError, BackendError, ConfigurationError) as exc:
            return _failure(exc, card)
        if completions is None:  # nobody is listening any more
            return Response(status_code=499)
        return JSONResponse(_response(body.model, list(completions)))

    return app


def _model_entry(card: ModelCard) -> dict[str, Any]:
    return {"id": card.id, "object": "model", "created": 0, "owned_by": f"agentroute:{card.backend}"}


def _router_entry(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "agentroute:router"}


def _routing(
    pool: ModelPool,
    router: Any,
    memory: Any,
    budget: Any,
    allow_new_agents: bool,
    memory_wait_s: float | None = None,
) -> Routing | None:
    if router is None:
        if memory is not None or budget is not None or memory_wait_s is not None:
            raise ConfigurationError(
                "memory=, memory_wait_s= and budget= apply to routed requests: give a router= too"
            )
        return None
    from agentroute.serve.routed import MEMORY_WAIT_S, Routing

    return Routing(
        pool,
        router,
        memory=memory,
        budget=budget,
        allow_new_agents=allow_new_agents,
        memory_wait_s=MEMORY_WAIT_S if memory_wait_s is None else memory_wait_s,
    )


async def _disconnected(request: Request) -> None:
    """Return when the client has gone (the request body has already been read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T | None:
    """``work``'s result, or ``None`` with ``work`` cancelled when the client disconnects first."""
    task, watcher = asyncio.ensure_future(work), asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return None if task.cancelled() else task.result()


def choice_request(request: CompletionRequest, index: int) -> CompletionRequest:
    """The provider call of choice ``index`` of ``n``: ``request``, with ``seed + index`` when it
    has a seed (:func:`~agentroute.dispatch.options.nth_seed`: wrapped within the signed 64-bit range
    servers take), so that the choices are reproducible and still differ (one seed would make the
    provider draw the same answer ``n`` times)."""
    if request.seed is None or index == 0:
        return request
    return dataclasses.replace(request, seed=nth_seed(request.seed, index))


async def _complete_all(
    backend: Backend, request: CompletionRequest, card: ModelCard, n: int
) -> list[Completion]:
    """``n`` completions at once; when one fails or the caller is cancelled, the others are cancelled."""
    calls = [asyncio.ensure_future(backend.complete(choice_request(request, i), card)) for i in range(n)]
    try:
        return [received(c, backend, request, card) for c in await asyncio.gather(*calls)]
    finally:
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)


def received(
    completion: Completion, backend: Backend, request: CompletionRequest, card: ModelCard
) -> Completion:
    """A backend's ``completion`` as the server answers it: its tool calls checked
    (:func:`check_tool_calls`), its usage counted (:func:`with_usage`)."""
    check_tool_calls(completion, card.id)
    return with_usage(completion, backend, request, card)


class Reasoning(str):
    """A delta of the reasoning text a reasoning model sends beside its answer (``reasoning_content``)."""

    __slots__ = ()


async def _deltas(
    backend: Backend, request: CompletionRequest, card: ModelCard
) -> AsyncIterator[str | Completion]:
    """Text deltas (:class:`Reasoning` ones for the reasoning text), then the :class:`Completion`:
    the backend's own ``stream`` method where it has one (``local``), else the pieces a backend
    that ``streams_tokens`` sends to :data:`token_sink` and :data:`reasoning_sink` (``openai``,
    ``litellm``: their ``stream`` is a flag), else its whole answer as one delta."""
    stream = getattr(backend, "stream", None)
    if callable(stream):
        async for item in stream(request, card):
            yield received(item, backend, request, card) if isinstance(item, Completion) else item
        return
    if getattr(backend, "streams_tokens", False):
        pieces: asyncio.Queue[str | None] = asyncio.Queue()

        async def sink(text: str) -> None:
            pieces.put_nowait(text)

        async def thought(text: str) -> None:
            pieces.put_nowait(Reasoning(text))

        async def call() -> Completion:
            token_sink.set(sink)  # this task's own context: the backend reads them
            reasoning_sink.set(thought)
            return await backend.complete(request, card)

        task = asyncio.ensure_future(call())
        task.add_done_callback(lambda _: pieces.put_nowait(None))
        streamed = False
        try:
            while (piece := await pieces.get()) is not None:
                streamed = True
                yield piece
            completion = task.result()
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        completion = received(completion, backend, request, card)
        if not streamed:  # the reply came whole (the server does not stream): its text is one delta
            async for item in _whole(completion):
                yield item
        else:
            yield completion
        return
    async for item in _whole(received(await backend.complete(request, card), backend, request, card)):
        yield item


async def _whole(completion: Completion) -> AsyncIterator[str | Completion]:
    """A whole reply as deltas: its reasoning text, its answer, then the completion."""
    if completion.raw.get("reasoning"):
        yield Reasoning(completion.raw["reasoning"])
    if completion.text:
        yield completion.text
    yield completion


async def _stream(
    http: Request,
    model: str,
    card: ModelCard,
    backend: Backend,
    request: CompletionRequest,
    n: int,
    usage: bool,
) -> Response:
    """Server-sent ``chat.completion.chunk`` events for ``n`` choices, then ``data: [DONE]``.

    A failure before the first delta is an ordinary error response; a later one is an
    ``{"error": ...}`` event that ends the stream. A disconnect cancels the backend calls.
    """
    events: asyncio.Queue[tuple[int, str | Completion | Exception]] = asyncio.Queue()

    async def run(index: int) -> None:
        try:
            async for item in _deltas(backend, choice_request(request, index), card):
                events.put_nowait((index, item))
        except Exception as exc:
            events.put_nowait((index, exc))

    tasks = [asyncio.create_task(run(i)) for i in range(n)]

    def cancel() -> None:
        for task in tasks:
            task.cancel()

    async def next_event() -> tuple[int, str | Completion | Exception]:
        # timeout_s bounds a silence (the wait for the first delta, then each gap): a stream whose
        # deltas keep coming runs on to max_tokens, where the backend cuts it
        async with asyncio.timeout(card.timeout_s):
            return await events.get()

    try:
        first = await _unless_disconnected(http, next_event())
    except TimeoutError as exc:
        first = (0, exc)
    if first is None:
        cancel()
        return Response(status_code=499)
    if isinstance(failed := first[1], Exception):
        cancel()
        return _failure(failed, card)
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model}  # fmt: skip

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
        return f"data: {json.dumps({**head, 'choices': choices, **extra})}\n\n"

    no_usage = {"usage": None} if usage else {}  # with include_usage, every chunk has the field

    def choice(index: int, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> str:
        return chunk(
            [{"index": index, "delta": delta, "finish_reason": finish, "logprobs": logprobs}], **no_usage
        )

    async def body() -> AsyncIterator[str]:
        done: dict[int, Completion] = {}
        started: set[int] = set()
        event: tuple[int, str | Completion | Exception] | None = first
        try:
            while True:
                if event is None:
                    try:
                        event = await next_event()
                    except TimeoutError as exc:
                        event = (0, exc)
                index, item = event
                event = None
                if isinstance(item, Exception):
                    yield f"data: {bytes(_failure(item, card).body).decode()}\n\n"
                    return
                if index not in started:
                    started.add(index)
                    yield choice(index, {"role": "assistant", "content": ""})
                if isinstance(item, Reasoning):
                    yield choice(index, {"reasoning_content": str(item)})
                    continue
                if isinstance(item, str):
                    yield choice(index, {"content": item})
                    continue
                done[index] = item  # its log probabilities and tool calls come whole, with its end
                if calls := tool_call_deltas(item.raw.get("tool_calls")):
                    yield choice(index, {"tool_calls": calls})
                yield choice(index, {}, _finish_reason(item), choice_logprobs(item))
                if len(done) == n:
                    break
            if usage:
                completions = [done[i] for i in range(n)]
                yield chunk([], usage=_usage(completions), agentroute=_extension(completions))
            yield "data: [DONE]\n\n"
        finally:
            cancel()

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _response(model: str, completions: list[Completion]) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": i,
                "message": message(c),
                "finish_reason": _finish_reason(c),
                "logprobs": choice_logprobs(c),
            }
            for i, c in enumerate(completions)
        ],
        "usage": _usage(completions),
        "agentroute": _extension(completions),
    }


def message(completion: Completion) -> dict[str, Any]:
    """The assistant message of ``completion``: its answer, the reasoning text a reasoning model
    sent beside it as ``reasoning_content`` (vLLM's and DeepSeek's field), and the ``tool_calls``
    the model made (an upstream that calls tools of its own: serve sends none)."""
    answer: dict[str, Any] = {"role": "assistant", "content": completion.text}
    if completion.raw.get("reasoning"):
        answer["reasoning_content"] = completion.raw["reasoning"]
    if completion.raw.get("tool_calls"):
        answer["tool_calls"] = completion.raw["tool_calls"]
    return answer


def tool_call_deltas(calls: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """A message's ``tool_calls`` as a stream's one delta carries them, each whole with its place
    as its ``index`` (an ``index`` a backend left on a call is not its place: clients merge the
    calls that share one)."""
    return [{**call, "index": i} for i, call in enumerate(calls or [])]


def choice_logprobs(completion: Completion) -> dict[str, Any] | None:
    """A choice's ``logprobs``: the token log probabilities the provider returned, when asked."""
    found = completion.raw.get("logprobs")
    return {"content": found} if found is not None else None


def _usage(completions: list[Completion]) -> dict[str, int]:
    """The usage billed: with ``n`` > 1 each choice is its own provider call, billed its prompt."""
    tokens_in = sum(c.tokens_in or 0 for c in completions)  # every completion has passed with_usage
    tokens_out = sum(c.tokens_out or 0 for c in completions)
    return {
        "prompt_tokens": tokens_in,
        "completion_tokens": tokens_out,
        "total_tokens": tokens_in + tokens_out,
    }


def _extension(completions: list[Completion]) -> dict[str, Any]:
    read = (finite_number(c.raw.get("confidence")) for c in completions)  # NaN, text, True: absent
    confidences = [number for number in read if number is not None]
    return {
        "cost_usd": sum(c.cost_usd or 0.0 for c in completions),
        "latency_ms": max(c.latency_ms for c in completions),
        "confidence": sum(confidences) / len(confidences) if confidences else None,
    }


#: OpenAI's finish reasons, passed on as the backend said them.
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]
_FINISH_REASONS: frozenset[str] = frozenset(get_args(FinishReason))
#: The reasons that tell a client to run the message's tool calls.
_CALLS = frozenset({"tool_calls", "function_call"})


def finish_reason(backend_reason: object, tool_calls: object = None) -> FinishReason:
    """The OpenAI ``finish_reason`` of an answer whose backend ended it with ``backend_reason``:
    one of OpenAI's reasons as it was (``length``: cut at ``max_tokens``; ``content_filter``: the
    provider's filter stopped it; ``tool_calls``: the model called tools), anything else ``stop``.
    ``tool_calls`` and ``function_call`` stand only with the ``tool_calls`` they announce (a
    client's agent loop runs ``message.tool_calls`` on them): without any, ``stop``."""
    if backend_reason not in _FINISH_REASONS or (backend_reason in _CALLS and not tool_calls):
        return "stop"
    return backend_reason  # type: ignore[return-value]


def _finish_reason(completion: Completion) -> FinishReason:
    return finish_reason(completion.raw.get("finish_reason"), completion.raw.get("tool_calls"))


class ServerThread:
    """Run the server in a background thread on a free loopback port (tests, notebooks).

    >>> with ServerThread(pool) as server:      # doctest: +SKIP
    ...     OpenAI(base_url=server.url, api_key="none")

    ``router``, ``memory`` and ``budget`` serve the routed model ``"router"`` (:func:`create_app`).
    """

    def __init__(
        self,
        pool: ModelPool,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        preload: bool = True,
        log_level: str = "warning",
        router: Router | str | Path | None = None,
        memory: MemoryStore | str | None = None,
        budget: Budget | Mapping[str, Any] | None = None,
        allow_new_agents: bool = False,
        memory_wait_s: float | None = None,
    ):
        self.pool, self.host = pool, host
        app = create_app(
            pool,
            preload=preload,
            router=router,
            memory=memory,
            budget=budget,
            allow_new_agents=allow_new_agents,
            memory_wait_s=memory_wait_s,
        )
        self.routing: Routing | None = app.state.routing
        try:
            self._socket = listen_socket(host, port)
        except ConfigurationError:
            if self.routing is not None:
                self.routing.close()
            raise
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(app, log_level=log_level, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="agentroute-serve", daemon=True
        )

    @property
    def url(self) -> str:
        """The OpenAI base URL (``http://HOST:PORT/v1``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def start(self, timeout: float = 300.0) -> ServerThread:
        """Start serving; returns once the server accepts requests (after preloading models)."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the agentroute server on {self.url} failed to start (see the log above)")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the agentroute server on {self.url} did not start within {timeout:g}s")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the server to exit and wait for its thread."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._socket.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def listen_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (0: a free port); :class:`ConfigurationError` when it is taken."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


async def _say_where(server: uvicorn.Server, host: str, port: int) -> None:
    """Log the base URL once ``server`` is up (uvicorn names its address only for a socket it binds
    itself: ``--port 0`` left the user no way to know the port)."""
    while not server.started:
        await asyncio.sleep(0.05)
    shown = f"[{host}]" if ":" in host else host
    logging.getLogger("uvicorn.error").info(
        "Serving the OpenAI API on http://%s:%d/v1 (Ctrl-C to stop)", shown, port
    )


def serve(
    pool: ModelPool,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    drain_s: float = 10.0,
    log_level: str = "info",
    router: Router | str | Path | None = None,
    memory: MemoryStore | str | None = None,
    budget: Budget | Mapping[str, Any] | None = None,
    allow_new_agents: bool = False,
    memory_wait_s: float | None = None,
) -> None:
    """Serve ``pool`` until interrupted (what ``agentroute serve`` runs); closes the pool's backends at exit.

    The address is bound before any model loads, so a taken port fails at once. On Ctrl-C or
    SIGTERM, requests in flight get ``drain_s`` seconds to finish, then are cancelled. With
    ``router`` the model ``"router"`` routes each request (:func:`create_app`); a memory given by
    URL is closed at exit, a store given as an object is flushed; ``memory_wait_s``: see :func:`create_app`.
    """
    if not drain_s >= 0:
        raise ConfigurationError(f"'drain_s' (got {drain_s}) must be ≥ 0")
    # a bad router fails before binding
    app = create_app(
        pool,
        router=router,
        memory=memory,
        budget=budget,
        allow_new_agents=allow_new_agents,
        memory_wait_s=memory_wait_s,
    )
    try:
        sock = listen_socket(host, port)
    except ConfigurationError:
        if app.state.routing is not None:
            app.state.routing.close()
        raise
    config = uvicorn.Config(
        app,
        host=host,
        port=sock.getsockname()[1],
        log_level=log_level,
        timeout_graceful_shutdown=drain_s,  # type: ignore[arg-type]  # a float: uvicorn waits with asyncio
    )
    server = uvicorn.Server(config)

    async def main() -> None:
        said = asyncio.create_task(_say_where(server, host, config.port))
        try:
            await server.serve(sockets=[sock])
        finally:
            said.cancel()
            sock.close()
            await pool.aclose()

    asyncio.run(main())


__all__ = ["ChatCompletionBody", "ServerThread", "create_app", "serve"]

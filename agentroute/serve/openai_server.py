"""An OpenAI-compatible HTTP server in front of a :class:`~agentroute.pool.ModelPool`.

``POST /v1/chat/completions`` (non-streaming, ``n`` ≥ 1), ``GET /v1/models`` and ``GET /health``.
The request's ``model`` names a pool card by id; the call goes to that card's backend, so a local
SmolLM2 (or any card) becomes reachable from any OpenAI client, LiteLLM or another agentroute
``openai`` card. Errors use OpenAI's ``{"error": {...}}`` shape; a retryable backend failure is a
503, so clients retry it. Responses carry an ``agentroute`` extension with the cost and confidence.

>>> server = ServerThread(pool).start()      # doctest: +SKIP
>>> server.url                               # doctest: +SKIP
'http://127.0.0.1:54321/v1'
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentroute._optional import require
from agentroute.errors import BackendError, ConfigurationError, UnknownNameError
from agentroute.pool.pool import ModelPool
from agentroute.types import Completion, CompletionRequest

require("fastapi")
require("uvicorn")

import uvicorn  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402


class ChatMessage(BaseModel):
    """One message; ``content`` may be a string or a list of text parts."""

    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "".join(str(p.get("text", "")) for p in self.content if p.get("type", "text") == "text")


class ChatCompletionBody(BaseModel):
    """The fields of OpenAI's chat-completions request that the server honours (others are ignored)."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    n: int = Field(default=1, ge=1, le=16)
    stop: str | list[str] | None = None
    stream: bool = False


def _error(
    status: int, message: str, kind: str, code: str | None = None, param: str | None = None
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


def create_app(pool: ModelPool, *, preload: bool = True) -> FastAPI:
    """The FastAPI app serving ``pool``. With ``preload``, local models load at startup."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if preload:
            for card in pool:
                backend = pool.backend(card.id)
                warm = getattr(backend, "preload", None)
                if warm is not None:
                    await warm(card)
        yield

    app = FastAPI(
        title="agentroute", summary="OpenAI-compatible API over an agentroute model pool", lifespan=lifespan
    )
    app.state.pool = pool

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(
            400,
            f"invalid request: {loc or 'body'}: {first.get('msg', exc)}",
            "invalid_request_error",
            param=loc,
        )

    @app.exception_handler(Exception)
    async def _crashed(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal error: {type(exc).__name__}: {exc}", "server_error")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "models": pool.ids}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        data = [
            {"id": c.id, "object": "model", "created": 0, "owned_by": f"agentroute:{c.backend}"} for c in pool
        ]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionBody) -> JSONResponse:
        if body.stream:
            return _error(
                400, "streaming is not supported; send stream=false", "invalid_request_error", param="stream"
            )
        try:
            card = pool.card(body.model)
        except UnknownNameError as exc:
            return _error(404, str(exc), "invalid_request_error", code="model_not_found", param="model")
        stop = [body.stop] if isinstance(body.stop, str) else body.stop
        request = CompletionRequest(
            model=card.backend_model,
            messages=[{"role": m.role, "content": m.text()} for m in body.messages],
            max_tokens=body.max_completion_tokens or body.max_tokens or card.max_tokens,
            temperature=body.temperature,
            stop=stop or None,
        )
        backend = pool.backend(card.id)
        calls = asyncio.gather(*(backend.complete(request, card) for _ in range(body.n)))
        try:
            completions = await asyncio.wait_for(calls, card.timeout_s)
        except TimeoutError:
            return _error(
                503, f"{card.id}: timed out after {card.timeout_s:g}s", "server_error", code="timeout"
            )
        except BackendError as exc:
            status, kind = (503, "server_error") if exc.retryable else (400, "invalid_request_error")
            return _error(status, str(exc), kind)
        except ConfigurationError as exc:
            return _error(500, str(exc), "server_error", code="misconfigured_model")
        return JSONResponse(_response(body.model, list(completions)))

    return app


def _response(model: str, completions: list[Completion]) -> dict[str, Any]:
    tokens_in = completions[0].tokens_in
    tokens_out = sum(c.tokens_out for c in completions)
    confidences = [
        c.raw["confidence"] for c in completions if isinstance(c.raw.get("confidence"), int | float)
    ]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": c.text},
                "finish_reason": _finish_reason(c),
                "logprobs": None,
            }
            for i, c in enumerate(completions)
        ],
        "usage": {
            "prompt_tokens": tokens_in,
            "completion_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        },
        "agentroute": {
            "cost_usd": sum(c.cost_usd for c in completions),
            "latency_ms": max(c.latency_ms for c in completions),
            "confidence": sum(confidences) / len(confidences) if confidences else None,
        },
    }


def _finish_reason(completion: Completion) -> Literal["stop", "length"]:
    return "length" if completion.raw.get("finish_reason") == "length" else "stop"


class ServerThread:
    """Run the server in a background thread on a free loopback port (tests, notebooks).

    >>> with ServerThread(pool) as server:      # doctest: +SKIP
    ...     OpenAI(base_url=server.url, api_key="none")
    """

    def __init__(
        self,
        pool: ModelPool,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        preload: bool = True,
        log_level: str = "warning",
    ):
        self.pool, self.host = pool, host
        self._socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(create_app(pool, preload=preload), log_level=log_level, lifespan="on")
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


def serve(pool: ModelPool, host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "info") -> None:
    """Serve ``pool`` until interrupted (what ``agentroute serve`` runs); closes the pool's backends at exit."""
    server = uvicorn.Server(uvicorn.Config(create_app(pool), host=host, port=port, log_level=log_level))

    async def main() -> None:
        try:
            await server.serve()
        finally:
            await pool.aclose()

    asyncio.run(main())


__all__ = ["ChatCompletionBody", "ServerThread", "create_app", "serve"]

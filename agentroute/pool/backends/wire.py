"""What the OpenAI-protocol backends (``openai``, ``litellm``) read off the wire: a reply body of
bounded size, in an encoding the client asked for.

A streamed reply is bounded by its chunks (cut after ``max_tokens`` + 1 that carry text, see
:mod:`~agentroute.pool.backends.streaming`); a whole JSON body — a plain reply, or the reply of a
server that ignores ``stream: true`` — is bounded in bytes by :func:`body_limit`: a server that
ignores ``max_tokens`` and sends a huge or endless body is a :class:`~agentroute.errors.ProtocolError`
once it passes the bound (charged its worst case), not read into memory until the card's
``timeout_s``. A body is compressed only in an encoding the request's ``Accept-Encoding`` named
(:func:`encoding_problem`): anything else cannot be read, and its usage cannot be checked.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from agentroute.types import CompletionRequest

#: Bytes of a whole reply's body beside its tokens: ids, usage, tool names, an error object.
BODY_BASE_BYTES = 1 << 20
#: Bytes a generated token may take in a JSON body, escapes included (a run of spaces or tabs is
#: one token to many tokenizers; an emoji escaped as ``\\ud83d\\ude00`` is 12 bytes).
TOKEN_BYTES = 512


def body_limit(request: CompletionRequest) -> int:
    """The most bytes (decoded) a whole JSON reply to ``request`` may take: :data:`BODY_BASE_BYTES`
    and :data:`TOKEN_BYTES` per token of ``max_tokens`` (answer, reasoning and tool calls share it),
    once more per token for its log probability and each of its ``top_logprobs`` when asked for.

    >>> body_limit(CompletionRequest(model="m", messages=[], max_tokens=256))
    1179648
    """
    per_token = 1 + (1 + (request.top_logprobs or 0) if request.logprobs else 0)
    return BODY_BASE_BYTES + request.max_tokens * TOKEN_BYTES * per_token


class BodyTooLong(ValueError):
    """A reply's body, or one line of its stream, passed :func:`body_limit`."""

    def __init__(self, limit: int, max_tokens: int, what: str = "the reply's JSON body") -> None:
        super().__init__(
            f"{what} is longer than {limit} bytes, more than max_tokens "
            f"({max_tokens}) can take: the server ignores max_tokens (read no further)"
        )


#: How an event stream's first line begins (a field of server-sent events, or a comment).
EVENT_STREAM_STARTS = ("data:", "event:", "id:", ":")


def begins_events(head: str | bytes) -> bool:
    """Whether a body that begins with ``head`` (up to its first character that is no space) is
    an event stream, whatever its ``Content-Type`` says (Foundry Local labels its streams JSON)."""
    text = head.decode("latin-1") if isinstance(head, bytes) else head
    return text.lstrip().startswith(EVENT_STREAM_STARTS)


#: What ends a line to :meth:`str.splitlines` (and to httpx's ``aiter_lines``, which splits as it does).
_NEWLINES = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


async def lines_within(texts: AsyncIterable[str], limit: int, max_tokens: int) -> AsyncIterator[str]:
    """The lines of a stream's text, split as httpx's ``aiter_lines`` splits them (a ``\\r\\n``
    split between two chunks is one line end); :class:`BodyTooLong` as soon as a line that has not
    ended passes ``limit`` characters: one event of a stream is bounded as a whole body is. Linear
    in a line's length however finely it is chunked (its pieces are joined once, when it ends)."""
    pending: list[str] = []  # the pieces of a line that has not ended, joined once when it does
    size, cr = 0, False
    async for text in texts:
        if cr:
            text, cr = "\r" + text, False
        if text.endswith("\r"):
            text, cr = text[:-1], True
        if not text:
            continue
        lines = text.splitlines()
        ended = text[-1] in _NEWLINES
        if pending and len(lines) == 1 and not ended:  # the line goes on
            pending.append(text)
            size += len(text)
            lines = []
        else:
            if pending:
                lines[0] = "".join(pending) + lines[0]
            pending, size = [], 0
            if not ended:
                pending.append(lines.pop())
                size = len(pending[0])
        if size > limit:
            raise BodyTooLong(limit, max_tokens, "a line of the stream")
        for line in lines:
            yield line
    if pending or cr:
        yield "".join(pending)


async def read_within(chunks: AsyncIterable[bytes], limit: int, max_tokens: int) -> bytes:
    """The decoded ``chunks`` of a body joined; :class:`BodyTooLong` as soon as they pass ``limit``
    bytes (the caller closes the response)."""
    parts: list[bytes] = []
    size = 0
    async for data in chunks:
        size += len(data)
        if size > limit:
            raise BodyTooLong(limit, max_tokens)
        parts.append(data)
    return b"".join(parts)


#: Bytes of an error status's body read (the SDKs read it whole before they raise; LiteLLM's error
#: mapping took 4 s over a 1 MiB one): an error object, a validation error's message.
ERROR_BODY_BYTES = 64 << 10


@functools.cache
def _head_type(base: type) -> type:
    """A byte stream of ``base``'s kind (``httpx``'s, or ``httpx2``'s: ``openai`` ≥ 3 uses it)
    that passes on the first ``limit`` bytes of another (the rest is left unread: the connection
    closes)."""

    class Head(base):  # type: ignore[valid-type,misc]
        def __init__(self, stream: Any, limit: int) -> None:
            self._stream, self._left = stream, limit

        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for data in self._stream:
                yield data[: self._left]
                self._left -= len(data)
                if self._left <= 0:
                    return

        async def aclose(self) -> None:
            await self._stream.aclose()

    return Head


async def bound_error_body(response: Any) -> None:
    """httpx (or httpx2) response hook: an error status's body is read no further than
    :data:`ERROR_BODY_BYTES` (the SDKs read it whole before they raise the status's error), not
    until the card's ``timeout_s``."""
    if response.status_code < 400:
        return
    base = getattr(sys.modules.get(type(response).__module__.split(".", 1)[0]), "AsyncByteStream", None)
    if base is not None and isinstance(response.stream, base):
        response.stream = _head_type(base)(response.stream, ERROR_BODY_BYTES)


def codings(encoding: str) -> list[str]:
    """The content codings a ``Content-Encoding`` (or ``Accept-Encoding``) header names, lower case,
    without ``identity`` and without ``;q=`` weights."""
    found = (c.split(";", 1)[0].strip().lower() for c in encoding.split(","))
    return [c for c in found if c not in ("", "identity")]


def encoding_problem(sent: str, accepted: str) -> str | None:
    """Why a body sent in ``Content-Encoding: sent`` cannot be read by a client that sent
    ``Accept-Encoding: accepted``, or ``None`` when it can (no encoding, or one that was asked for;
    ``x-gzip`` is ``gzip``)."""
    asked = {"gzip" if c == "x-gzip" else c for c in codings(accepted)}
    used = ["gzip" if c == "x-gzip" else c for c in codings(sent)]
    if all(c in asked for c in used):
        return None
    return (
        f"sent in Content-Encoding {sent!r}, which was not asked for (Accept-Encoding: {accepted or 'none'})"
    )


__all__ = [
    "BODY_BASE_BYTES",
    "ERROR_BODY_BYTES",
    "EVENT_STREAM_STARTS",
    "TOKEN_BYTES",
    "BodyTooLong",
    "begins_events",
    "body_limit",
    "bound_error_body",
    "codings",
    "encoding_problem",
    "lines_within",
    "read_within",
]

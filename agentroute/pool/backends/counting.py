"""Prompt-token counts the ledger can reserve: a real tokenizer where one is knowable, else a bound.

Three sources, best first:

- **the model's own tokenizer**: the local backend's; OpenAI models through tiktoken, read from
  the BPE files LiteLLM bundles (no network: :func:`openai_encoding`); an OpenAI-compatible
  server's ``POST /tokenize`` (vLLM serves it; :class:`TokenizeEndpoint`).
- **a bound never below the truth** (:func:`byte_bound`) for byte-level BPE tokenizers (GPT-2,
  Llama 3, Qwen, SmolLM2) and WordPiece/SentencePiece-with-byte-fallback alike: every token of
  such a tokenizer covers at least one UTF-8 byte of the text, so the text's tokens ≤ its bytes;
  the chat template adds at most :data:`MESSAGE_OVERHEAD` tokens around each message (plus the
  role's bytes), :data:`REPLY_OVERHEAD` to open the reply, and :data:`PREAMBLE` for the default
  system prompt or date line some templates inject (SmolLM2: 20 tokens, Llama 3.1: 26). A
  message's fields besides role and content (``name``, ``tool_calls``, ``tool_call_id``: templates
  render them, OpenAI bills them) add their bytes (:func:`fields_bound`), and key a cached count
  (:func:`messages_key`).

A message's content may be OpenAI's content parts (:func:`parts_bound`): a text or refusal part
counts as its text, an image (``image_url``) as the card's ``image_tokens`` (the most one image
bills on that model); a card without one, or a part of any other type (``input_audio``, ``file``,
a type agentroute does not know), is refused at the reservation with a one-line
:class:`~agentroute.errors.ConfigurationError`: nothing bounds what a provider bills for it.

The bound overestimates English prose about 4× and CJK about 1.5–3×: it is for endpoints whose
tokenizer is unknown, where the alternative is a guess that can be below the bill.

A server renders some request fields into the prompt it bills (:func:`template_kwargs`,
:data:`RENDERED_FIELDS`): ``/tokenize`` is sent those it takes, and a chat that sets one it cannot
take is counted with the bound, that field included (:func:`request_bound`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import importlib.util
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agentroute.errors import ConfigurationError
from agentroute.pool.backends.wire import BODY_BASE_BYTES, BodyTooLong, read_within
from agentroute.types import Message, content_text, part_text

log = logging.getLogger(__name__)

#: Tokens a chat template adds around one message besides the role's own text (start/end markers,
#: separators, newlines).
MESSAGE_OVERHEAD = 8
#: Tokens that open the assistant's reply (``<|im_start|>assistant\n`` and the like).
REPLY_OVERHEAD = 8
#: Tokens a template may inject on its own: a default system prompt, a knowledge-cutoff line.
PREAMBLE = 48

Messages = Sequence[Message]


def utf8_len(text: str) -> int:
    """UTF-8 bytes of ``text`` (a lone surrogate counts as its 3-byte encoding)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def text_bound(text: str) -> int:
    """Tokens ``text`` can take in any byte-level tokenizer: at most one per UTF-8 byte (≥ 1)."""
    return max(1, utf8_len(text))


def byte_bound(messages: Messages, card: Any = None) -> int:
    """Tokens the chat-templated ``messages`` can take: never below a byte-level tokenizer's count.
    A message's other fields (``name``, ``tool_calls``, ``tool_call_id``) are bounded by
    :func:`fields_bound`, its content parts by :func:`parts_bound` (an image needs ``card``'s
    ``image_tokens``).

    >>> byte_bound([{"role": "user", "content": "héllo"}])  # 6 bytes + 4 (role) + 8 + 8 + 48
    74
    """
    total = REPLY_OVERHEAD + PREAMBLE + MESSAGE_OVERHEAD * len(messages)
    for message in messages:
        content, role = message.get("content"), message.get("role")
        # utf8_len, inlined (this runs on every step's count)
        if type(content) is str:
            text = content
        elif type(content) is list:  # content parts
            total += _parts_bound(messages, message, content, card)
            text = ""
        else:
            text = str(content or "")
        total += len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        text = str(role or "")
        total += len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        if len(message) > 2 or content is None or role is None:  # maybe more than role and content
            total += fields_bound(message)
    return total


#: Tokens a template adds around one content part besides what the part is counted as: a
#: separator, an image's start and end markers.
PART_OVERHEAD = 8
#: The content part types that are images, each counted as its card's ``image_tokens``.
IMAGE_PARTS = frozenset({"image_url"})


def parts_bound(parts: list[Any], card: Any = None) -> int:
    """Prompt tokens OpenAI content ``parts`` can take in a byte-level tokenizer: each text or
    refusal part its text's bytes, each image (:data:`IMAGE_PARTS`) ``card.image_tokens``, and
    :data:`PART_OVERHEAD` a part. Raises a one-line :class:`~agentroute.errors.ConfigurationError`
    for an image on a card without ``image_tokens`` and for a part of any other type (audio, a file,
    a type agentroute does not know): no bound of its bill is known, and none is guessed."""
    total = PART_OVERHEAD * len(parts)
    for index, part in enumerate(parts):
        text = part_text(part)
        if text is not None:
            total += utf8_len(text)
            continue
        kind = str(part.get("type", "text")) if isinstance(part, dict) else None
        bound = getattr(card, "image_tokens", None) if kind in IMAGE_PARTS else None
        if bound is None:
            raise ConfigurationError(f"content part {index}: {_unbounded(part, kind, card)}")
        total += bound
    return total


def _unbounded(part: Any, kind: str | None, card: Any) -> str:
    """Why a content part cannot be reserved, and what to do (the one-line error's end)."""
    if kind in IMAGE_PARTS:
        model = f"model {card.id!r}" if getattr(card, "id", None) else "the model"
        return (
            f"an image ({kind!r}) bills tokens {model} does not bound; set the card's image_tokens to "
            "the most one image bills on it (OpenAI gpt-4o: 1445), or send text only"
        )
    if kind is None:
        return f"expected a dict such as {{'type': 'text', 'text': '...'}} (got {type(part).__name__}); send text only"
    if kind in ("text", "refusal"):
        return f"a {kind!r} part needs its text as a string in {kind!r}; send text only"
    return (
        f"type {kind[:40]!r} bills tokens agentroute cannot bound before the call; send text only "
        "(its transcript or text as a 'text' part)"
    )


def _parts_bound(messages: Messages, message: Message, parts: list[Any], card: Any) -> int:
    """:func:`parts_bound` of one message of ``messages``, its errors naming the message."""
    try:
        return parts_bound(parts, card)
    except ConfigurationError as exc:
        index = next(i for i, m in enumerate(messages) if m is message)
        raise ConfigurationError(f"message {index} {exc}") from None


def has_parts_beyond_text(messages: Messages) -> bool:
    """Whether a message of ``messages`` has a content part that is not text (an image)."""
    for message in messages:
        content = message.get("content")
        if type(content) is list:
            for part in content:
                if part_text(part) is None:
                    return True
    return False


def text_only(messages: Messages, model: str) -> Messages:
    """``messages`` for a model that reads text only: a content given as parts becomes its text
    (:func:`~agentroute.types.content_text`, as vLLM gives a text model's template); a part that is
    not text raises a one-line :class:`~agentroute.errors.ConfigurationError` naming it. A chat of
    plain strings is returned as it is."""
    if all(type(m.get("content")) is not list for m in messages):
        return messages
    for index, message in enumerate(messages):
        for number, part in enumerate(message["content"] if type(message.get("content")) is list else ()):
            if part_text(part) is None:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ConfigurationError(
                    f"message {index} content part {number}: model {model!r} reads text only, not a "
                    f"{str(kind)[:40]!r} part; send text only"
                )
    return [
        {**m, "content": content_text(m["content"])} if type(m.get("content")) is list else m
        for m in messages
    ]


#: The fields of a chat message every template renders; a template may render any other
#: (:func:`more_fields`).
CHAT_FIELDS = frozenset({"role", "content"})
#: Tokens a template adds around one more field of a message besides its name's and its value's
#: bytes: a label, tags such as ``<tool_call>`` … ``</tool_call>``.
FIELD_OVERHEAD = 8


def more_fields(message: dict[str, Any], counted: frozenset[str] = CHAT_FIELDS) -> dict[str, Any]:
    """The fields of ``message`` besides ``counted`` that are set (not ``None``), by name: what a
    template may render beside the role and content (OpenAI bills a ``name``; chat templates render
    an assistant's ``tool_calls``, a tool's ``tool_call_id``)."""
    return {k: message[k] for k in sorted(message, key=str) if k not in counted and message[k] is not None}


def fields_bound(message: dict[str, Any], counted: frozenset[str] = CHAT_FIELDS) -> int:
    """Tokens :func:`more_fields` of ``message`` can take in a byte-level tokenizer: each field's
    name and :data:`FIELD_OVERHEAD`, and its value's bytes (a string) or :func:`json_bound`."""
    total = 0
    for name, value in more_fields(message, counted).items():
        total += text_bound(str(name)) + FIELD_OVERHEAD
        total += utf8_len(value) if isinstance(value, str) else json_bound(value)
    return total


#: Tokens a template adds for a reasoning effort: a thinking block it opens or closes, a
#: "Reasoning: high" line (besides the effort's own bytes).
THINKING_OVERHEAD = 16

#: Request fields vLLM's chat completion hands its renderer (``ChatParams.response_format``) that its
#: ``/tokenize`` (``TokenizeChatRequest``) cannot take: a chat that sets one is counted with
#: :func:`request_bound`.
RENDERED_FIELDS = ("response_format",)


def template_kwargs(request: Any) -> dict[str, Any] | None:
    """The ``chat_template_kwargs`` vLLM's chat completion renders ``request`` with
    (``ChatCompletionRequest.build_chat_params``): its ``reasoning_effort``, and ``enable_thinking``
    off for ``"none"``, on for any other; ``None`` when it sets no effort. ``/tokenize`` takes them."""
    effort = getattr(request, "reasoning_effort", None)
    if effort is None:
        return None
    return {"reasoning_effort": effort, "enable_thinking": effort != "none"}


def unrendered(request: Any) -> bool:
    """Whether ``request`` sets a field ``/tokenize`` cannot render (:data:`RENDERED_FIELDS`)."""
    for name in RENDERED_FIELDS:  # a loop, not any(): this runs on every step's count
        if getattr(request, name, None) is not None:
            return True
    return False


def json_bound(value: Any) -> int:
    """Tokens a template's JSON of ``value`` can take in a byte-level tokenizer, with the words it
    puts around it: the bytes of its widest usual rendering (4-space indents, non-ASCII escaped:
    never fewer bytes than compact or UTF-8 JSON) plus :data:`PREAMBLE`."""
    return len(json.dumps(value, indent=4, ensure_ascii=True, default=str)) + PREAMBLE


def request_bound(request: Any, card: Any = None) -> int:
    """:func:`byte_bound` of ``request``'s chat (for ``card``), plus what a template renders of its
    reasoning effort and of its :data:`RENDERED_FIELDS` (:func:`json_bound`)."""
    total = byte_bound(request.messages, card)
    effort = getattr(request, "reasoning_effort", None)
    if effort is not None:
        total += text_bound(str(effort)) + THINKING_OVERHEAD
    for name in RENDERED_FIELDS:
        value = getattr(request, name, None)
        total += 0 if value is None else json_bound(value)
    return total


def messages_key(messages: Messages) -> tuple[tuple[str, ...], ...]:
    """A hashable key of a chat (strings cache their hash, so building it again is cheap): each
    message's role and content, and its :func:`more_fields` as JSON when it has some."""
    key: list[tuple[str, ...]] = []
    for m in messages:  # a loop, not a generator: this runs on every step's count
        role, content = m.get("role"), m.get("content")
        if len(m) > 2 or role is None or content is None:  # maybe more than role and content
            key.append(_fields_key(m))
        else:
            key.append((str(role or ""), str(content or "")))
    return tuple(key)


def _fields_key(message: dict[str, Any]) -> tuple[str, ...]:
    role, content = str(message.get("role") or ""), str(message.get("content") or "")
    more = more_fields(message)
    if not more:
        return role, content
    return role, content, json.dumps(more, sort_keys=True, ensure_ascii=False, default=repr)


# -- OpenAI models: tiktoken, offline ---------------------------------------------------------
_ENCODING_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"
_OPENAI_HOSTS = ("api.openai.com", ".openai.azure.com")


def bundled_tiktoken_dir() -> Path | None:
    """LiteLLM's bundled tiktoken cache (found without importing LiteLLM, which takes seconds)."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "litellm_core_utils" / "tokenizers"
    return folder if folder.is_dir() else None


def encoding_name(model: str) -> str | None:
    """tiktoken's encoding for an OpenAI model name (``openai/`` or ``azure/`` prefixes allowed)."""
    name = model.split("/")[-1]
    try:
        import tiktoken
    except ImportError:
        return None
    try:
        return tiktoken.encoding_name_for_model(name)
    except KeyError:
        pass
    if name.startswith(("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")):
        return "o200k_base"
    if name.startswith(("gpt-4", "gpt-3.5")):
        return "cl100k_base"
    return None


_PATCH_LOCK = threading.Lock()


@functools.lru_cache(maxsize=8)
def _encoding(name: str) -> Any:
    """A tiktoken encoding from a local file only (``$TIKTOKEN_CACHE_DIR``, else LiteLLM's copy)."""
    import tiktoken

    key = hashlib.sha1(_ENCODING_URL.format(name).encode()).hexdigest()
    folders = [Path(os.environ["TIKTOKEN_CACHE_DIR"])] if os.environ.get("TIKTOKEN_CACHE_DIR") else []
    bundled = bundled_tiktoken_dir()
    if bundled is not None:
        folders.append(bundled)
    for folder in folders:
        file = folder / key
        if not file.is_file():
            continue
        # the encoding's own constructor gives the split pattern and special tokens; its ranks
        # are read from the local file (tiktoken would download them)
        from tiktoken_ext import openai_public

        constructor = getattr(openai_public, name)
        original = openai_public.load_tiktoken_bpe
        ranks = _read_bpe(file)
        with _PATCH_LOCK:
            openai_public.load_tiktoken_bpe = lambda *a, _ranks=ranks, **k: _ranks  # type: ignore[assignment]
            try:
                params = constructor()
            finally:
                openai_public.load_tiktoken_bpe = original  # type: ignore[assignment]
        return tiktoken.Encoding(**params)
    log.info("no local copy of tiktoken's %s: counting OpenAI prompts with the byte bound", name)
    return None


def _read_bpe(file: Path) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for line in file.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def openai_encoding(model: str) -> Any | None:
    """The tiktoken encoding of an OpenAI model, loaded offline; ``None`` if unknown or not on disk."""
    name = encoding_name(model)
    return _encoding(name) if name else None


def is_openai_endpoint(base_url: str | None) -> bool:
    """Whether ``base_url`` is OpenAI's (or Azure OpenAI's) API.

    ``None`` means where the OpenAI SDK would send the call: ``$OPENAI_BASE_URL`` when set (a
    vLLM or Ollama server a user points the SDK at), else OpenAI itself.
    """
    base_url = base_url or os.environ.get("OPENAI_BASE_URL")
    if not base_url:
        return True
    host = (urlsplit(base_url).hostname or "").lower()
    return host == _OPENAI_HOSTS[0] or host.endswith(_OPENAI_HOSTS[1])


def openai_chat_tokens(encoding: Any, messages: Messages, card: Any = None) -> int:
    """Prompt tokens of a chat for OpenAI's chat models: 3 per message + its role, content and
    name + 3; a message's other fields (an assistant's ``tool_calls``, a tool's ``tool_call_id``:
    OpenAI bills them in a rendering it does not publish) add their :func:`fields_bound`, content
    parts their :func:`parts_bound` (an image: ``card``'s ``image_tokens``).

    The formula of OpenAI's cookbook ("How to count tokens with tiktoken"), which matches the
    API's ``usage.prompt_tokens`` for the gpt-3.5/4/4o families.
    """
    total = 3
    for message in messages:
        total += 3
        for field in ("role", "content", "name"):
            value = message.get(field)
            if type(value) is list and field == "content":
                total += _parts_bound(messages, message, value, card)
            elif value:
                total += len(encoding.encode(str(value), disallowed_special=()))
                if field == "name":
                    total += 1
        if len(message) > ("content" in message) + ("role" in message) + ("name" in message):
            total += fields_bound(message, _OPENAI_COUNTED)
    return total


#: The message fields :func:`openai_chat_tokens` counts with tiktoken (the others are bounded).
_OPENAI_COUNTED = CHAT_FIELDS | {"name"}


# -- vLLM-style /tokenize ----------------------------------------------------------------------
def tokenize_url(base_url: str) -> str:
    """``POST /tokenize`` lives at the server root, beside ``/v1``."""
    root = base_url.rstrip("/")
    if root.endswith("/v1"):
        root = root[: -len("/v1")]
    return root + "/tokenize"


#: Bytes one token takes in a ``/tokenize`` reply's ``tokens`` list: an id of up to 10 digits and
#: its separator (token strings are not asked for).
TOKEN_ID_BYTES = 16


def tokenize_reply_limit(tokens: int) -> int:
    """The most bytes (decoded) a ``/tokenize`` reply for a prompt of at most ``tokens`` tokens may
    take: the reply body's base (:data:`~agentroute.pool.backends.wire.BODY_BASE_BYTES`) and
    :data:`TOKEN_ID_BYTES` per token. A longer reply is no answer (the caller's bound stays).

    >>> tokenize_reply_limit(100)
    1050176
    """
    return BODY_BASE_BYTES + tokens * TOKEN_ID_BYTES


class TokenizeEndpoint:
    """Counts through an OpenAI-compatible server's ``POST /tokenize`` (vLLM's API).

    Chat: ``{"model", "messages", "add_generation_prompt": true}`` (and the request's
    ``chat_template_kwargs`` when it has some: :func:`template_kwargs`) → ``{"count": N, ...}``;
    text: ``{"model", "prompt", "add_special_tokens": false}``. Whether a server has the endpoint is
    probed once per ``base_url`` and remembered; a 404/405, a connection failure, a reply that is
    not a non-negative integer count or one longer than :func:`tokenize_reply_limit` (read no
    further) mark it unsupported, and callers fall back to their bound.
    Counts are cached per (endpoint, model, chat).
    """

    def __init__(self, *, timeout_s: float = 5.0, cache_size: int = 4096):
        self.timeout_s, self.cache_size = timeout_s, cache_size
        self.supported: dict[str, bool] = {}
        self._counts: dict[tuple[str, str, Any], int] = {}
        self._clients: dict[asyncio.AbstractEventLoop, list[Any]] = {}  # loop → [session, counts in flight]

    def cached(
        self, base_url: str | None, model: str, messages: Messages, kwargs: dict[str, Any] | None = None
    ) -> int | None:
        if not base_url:
            return None
        return self._counts.get((base_url, model, _chat_key(messages, kwargs)))

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[Any]:
        """The aiohttp session of this event loop, shared by the counts in flight and closed when
        the last one ends (so none is left unclosed when the loop goes). aiohttp's connection pool
        stays cheap under hundreds of concurrent requests; httpx's scans every connection for every
        queued request."""
        import aiohttp

        loop = asyncio.get_running_loop()
        entry = self._clients.get(loop)
        if entry is None:
            for old in [lp for lp in self._clients if lp.is_closed()]:
                del self._clients[old]
            session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                connector=aiohttp.TCPConnector(limit=256, limit_per_host=0),
            )
            entry = self._clients[loop] = [session, 0]
        entry[1] += 1
        try:
            yield entry[0]
        finally:
            entry[1] -= 1
            if entry[1] == 0 and self._clients.get(loop) is entry:
                del self._clients[loop]
                await entry[0].close()

    async def count(
        self,
        base_url: str | None,
        model: str,
        *,
        messages: Messages | None = None,
        text: str | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> int | None:
        """The server's count of a chat (template included, rendered with ``kwargs`` as its
        ``chat_template_kwargs``) or of a text; ``None`` when unavailable."""
        if not base_url or self.supported.get(base_url) is False:
            return None
        key = (base_url, model, _chat_key(messages, kwargs) if messages is not None else text)
        hit = self._counts.get(key)
        if hit is not None:
            return hit
        body: dict[str, Any] = {"model": model}
        if messages is not None:
            body.update(messages=list(messages), add_generation_prompt=True)
            if kwargs:
                body["chat_template_kwargs"] = kwargs
        else:
            body.update(prompt=text or "", add_special_tokens=False)
        tokens = (
            byte_bound(messages) + (THINKING_OVERHEAD + text_bound(str(kwargs)) if kwargs else 0)
            if messages is not None
            else text_bound(text or "")
        )
        limit = tokenize_reply_limit(tokens)
        try:
            async with (
                self._session() as session,
                session.post(tokenize_url(base_url), json=body) as response,
            ):
                status = response.status
                reply = (
                    await read_within(response.content.iter_any(), limit, tokens) if status == 200 else b""
                )
        except BodyTooLong:
            why = f"a reply longer than {limit} bytes, more than {tokens} tokens' ids take"
            self._mark(base_url, False, why)
            return None
        except Exception as exc:  # connection refused, timeout: no endpoint to rely on
            self._mark(base_url, False, f"{type(exc).__name__}: {exc}")
            return None
        if status in (404, 405, 501):
            self._mark(base_url, False, f"HTTP {status}")
            return None
        if status != 200:
            return None  # a transient error: fall back this time, ask again next time
        try:
            value = json.loads(reply).get("count")
        except Exception:
            value = None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self._mark(base_url, False, f"reply without a valid count: {reply[:120]!r}")
            return None
        if self.supported.get(base_url) is False:
            return None  # distrusted while this count was in flight
        self._mark(base_url, True, "")
        if len(self._counts) >= self.cache_size:
            self._counts.clear()
        self._counts[key] = value
        return value

    def distrust(self, base_url: str, why: str) -> None:
        """Ask ``base_url`` no more and forget its counts (it billed a prompt above its count)."""
        self._counts = {k: v for k, v in self._counts.items() if k[0] != base_url}
        self._mark(base_url, False, why)

    def _mark(self, base_url: str, ok: bool, why: str) -> None:
        if self.supported.get(base_url) is not ok:
            self.supported[base_url] = ok
            if not ok:
                log.info("%s has no usable /tokenize (%s): prompt tokens use the byte bound", base_url, why)

    async def aclose(self) -> None:
        """Nothing to release: a session lives only while counts are in flight."""


def _chat_key(messages: Messages, kwargs: dict[str, Any] | None) -> Any:
    """A chat's cache key: its messages, and the template's arguments when there are some."""
    key = messages_key(messages)
    return (key, tuple(sorted(kwargs.items()))) if kwargs else key


__all__ = [
    "CHAT_FIELDS",
    "FIELD_OVERHEAD",
    "IMAGE_PARTS",
    "MESSAGE_OVERHEAD",
    "PART_OVERHEAD",
    "PREAMBLE",
    "RENDERED_FIELDS",
    "REPLY_OVERHEAD",
    "THINKING_OVERHEAD",
    "TokenizeEndpoint",
    "TOKEN_ID_BYTES",
    "byte_bound",
    "encoding_name",
    "fields_bound",
    "has_parts_beyond_text",
    "is_openai_endpoint",
    "json_bound",
    "messages_key",
    "more_fields",
    "openai_chat_tokens",
    "openai_encoding",
    "parts_bound",
    "request_bound",
    "template_kwargs",
    "text_bound",
    "text_only",
    "tokenize_reply_limit",
    "tokenize_url",
    "unrendered",
    "utf8_len",
]


class EndpointCounting:
    """Prompt and reply token counts for backends that talk to OpenAI or to OpenAI-compatible
    servers (the ``openai`` and ``litellm`` backends): a self-hosted server's ``/tokenize`` count
    once :meth:`aprompt_tokens` fetched it, tiktoken's for OpenAI models on OpenAI's endpoint, else
    the byte bound. Subclasses say which encoding a card uses (:meth:`encoding`) and which model
    name its server knows (:meth:`served_name`).
    """

    def _init_counting(self) -> None:
        self.tokenize = TokenizeEndpoint()
        self._counts: dict[tuple[str, int | None, Any], int] = {}

    def encoding(self, card: Any) -> Any | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def served_name(self, card: Any) -> str:
        return card.backend_model

    def count_tokens(self, text: str, card: Any) -> int:
        encoding = self.encoding(card)
        if encoding is None:
            return text_bound(text)
        return max(1, len(encoding.encode(text, disallowed_special=())))

    def prompt_tokens(self, request: Any, card: Any) -> int:
        """The server's ``/tokenize`` count when :meth:`aprompt_tokens` fetched it, tiktoken's for
        OpenAI models, else the byte bound of what the template renders (:func:`request_bound`;
        cached per chat)."""
        served = self._served(request, card)
        if served is not None:
            return served
        encoding = self.encoding(card)
        if encoding is None:
            return request_bound(request, card)
        key = (encoding.name, getattr(card, "image_tokens", None), messages_key(request.messages))
        count = self._counts.get(key)
        if count is None:
            if len(self._counts) >= 4096:
                self._counts.clear()
            count = self._counts[key] = openai_chat_tokens(encoding, request.messages, card)
        return count

    async def aprompt_tokens(self, request: Any, card: Any) -> int:
        """Ask a self-hosted server's ``POST /tokenize`` (probed once per ``base_url``), with the
        request's :func:`template_kwargs`, else :meth:`prompt_tokens`. A request that sets a field
        ``/tokenize`` cannot render (:func:`unrendered`) or has an image (vLLM's ``/tokenize`` counts
        its placeholder, not the tokens the model bills for it: :func:`has_parts_beyond_text`) is
        not asked: it would count below the bill."""
        if (
            card.base_url
            and not is_openai_endpoint(card.base_url)
            and not unrendered(request)
            and not has_parts_beyond_text(request.messages)
        ):
            served = await self.tokenize.count(
                card.base_url,
                self.served_name(card),
                messages=request.messages,
                kwargs=template_kwargs(request),
            )
            if served is not None:
                return served
        return self.prompt_tokens(request, card)

    def _served(self, request: Any, card: Any) -> int | None:
        """The server's cached count of ``request``'s prompt as it renders it, if it has one."""
        if unrendered(request):
            return None
        return self.tokenize.cached(
            card.base_url, self.served_name(card), request.messages, template_kwargs(request)
        )

    def check_prompt_usage(self, request: Any, card: Any, billed: int) -> None:
        """A server whose ``/tokenize`` counted this prompt below the ``billed`` prompt tokens (a
        lying or partial count: the reservation was below the bill, and the overrun is audited) is
        asked no more: the byte bound reserves its later prompts."""
        if not card.base_url:
            return
        counted = self._served(request, card)
        if counted is not None and billed > counted:
            self.tokenize.distrust(card.base_url, f"it counted {counted} prompt tokens and billed {billed}")

    async def count_text(self, text: str, card: Any) -> int:
        """Tokens of a reply's text: the server's ``/tokenize``, tiktoken, else the byte bound."""
        if not text:
            return 0
        if card.base_url and not is_openai_endpoint(card.base_url):
            served = await self.tokenize.count(card.base_url, self.served_name(card), text=text)
            if served is not None:
                return served
        return self.count_tokens(text, card)

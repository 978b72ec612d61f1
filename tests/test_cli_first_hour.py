"""What a new user meets in the first hour with the ``agentroute`` command.

Most commands run in this process (typer's runner: the same app, arguments and terminal width a user
gives); a subprocess only where the process is what is tested (the console script, what it imports).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from agentroute.cli.app import app
from agentroute.cli.memory_cmd import memory_app
from agentroute.memory import SQLMemory
from agentroute.types import Task

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner(env={"COLUMNS": "200"})


def agentroute(*args: str, cwd: Path, columns: int = 200, python: tuple[str, ...] | list[str] = ()) -> subprocess.CompletedProcess[str]:
    """The ``agentroute`` command in a process of its own, as a user runs it (``python``: interpreter options)."""
    env = {**os.environ, "COLUMNS": str(columns), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, *python, "-c", "from agentroute.cli import main; main()", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _commands_panel(stdout: str) -> tuple[list[str], list[str]]:
    """(command names, panel rows) of a ``--help``'s Commands panel."""
    panel = stdout.split("Commands", 1)[1].splitlines()[1:]
    rows = [line for line in panel if line.startswith("│")]
    return [row.strip("│ ").split(None, 1)[0] for row in rows if row.strip("│ ")[:1].isalpha()], rows


def test_every_command_is_summarised_on_one_line_of_the_top_help(tmp_path: Path) -> None:
    done = agentroute("--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    names, rows = _commands_panel(done.stdout)
    assert names == ["ask", "serve", "eval", "train", "run", "feedback", "pool", "memory", "routers"], rows
    assert len(rows) == len(names), "a command's summary wraps onto a second line:\n" + "\n".join(rows)


@pytest.mark.parametrize("group", ["pool", "memory", "routers"])
def test_every_subcommand_is_summarised_on_one_line(group: str) -> None:
    """`routers --help` showed `list`'s whole docstring over five lines, naming a --router-param that
    no command has."""
    done = runner.invoke(app, [group, "--help"])
    assert done.exit_code == 0, done.output
    names, rows = _commands_panel(done.stdout)
    assert names and len(rows) == len(names), "a summary wraps onto a second line:\n" + "\n".join(rows)
    assert "--router-param" not in done.stdout


@pytest.fixture
def memory_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'memory.db'}"
    with SQLMemory(url) as memory:
        for task_id, query in [("01aa11", "Who wrote Hamlet?"), ("01aa22", "Capital of France?"), ("02bb33", "2+2?")]:
            task = Task(id=task_id, query=query, graph="qa")
            memory.start_task(task)
            task.status, task.answer = "done", "x"
            memory.finish_task(task)
    return url


def test_memory_show_takes_the_start_of_a_task_id_and_names_the_latest_when_none_matches(
    tmp_path: Path, memory_url: str
) -> None:
    shown = runner.invoke(memory_app, ["show", "02b", "--memory", memory_url, "--json"])
    assert shown.exit_code == 0, shown.output
    assert '"id": "02bb33"' in shown.output

    ambiguous = runner.invoke(memory_app, ["show", "01aa", "--memory", memory_url])
    assert ambiguous.exit_code == 2  # bad input: more tasks never make it one
    assert ambiguous.output.strip() == "error: task id '01aa' is ambiguous: 01aa11, 01aa22; give more of it"

    missing = runner.invoke(memory_app, ["show", "zz", "--memory", memory_url])
    assert missing.exit_code == 1
    assert re.fullmatch(r"error: no task 'zz' in the memory; the latest: .*02bb33 \(2\+2\?\).*\n", missing.stderr)


def test_feedback_takes_the_start_of_a_task_id_as_memory_show_does(memory_url: str) -> None:
    """`memory show 02b` worked; `feedback 02b` said there was no such task."""
    from agentroute.cli.feedback_cmd import feedback_command

    feedback = typer.Typer()
    feedback.command()(feedback_command)
    scored = runner.invoke(feedback, ["02b", "--score", "1", "--memory", memory_url])
    assert scored.exit_code == 0, scored.output
    assert "task 02bb33: score 1 (user) stored" in scored.stdout
    with SQLMemory(memory_url) as memory:
        assert memory.get_task("02bb33").task.score == 1.0
    ambiguous = runner.invoke(feedback, ["01aa", "--score", "1", "--memory", memory_url])
    assert ambiguous.exit_code == 2 and "task id '01aa' is ambiguous: 01aa11, 01aa22" in ambiguous.stderr


def test_an_empty_task_id_names_no_task(tmp_path: Path) -> None:
    """`feedback "$TASK" --score 1` with TASK unset scored the memory's only task (every id begins with "")."""
    from agentroute.cli.feedback_cmd import feedback_command

    url = f"sqlite:///{tmp_path / 'memory.db'}"
    with SQLMemory(url) as memory:
        memory.start_task(Task(id="01aa11", query="Who wrote Hamlet?", graph="qa"))
    feedback = typer.Typer()
    feedback.command()(feedback_command)
    for done in (runner.invoke(feedback, ["", "--score", "1", "--memory", url]), runner.invoke(memory_app, ["show", " ", "--memory", url])):
        assert done.exit_code == 2, done.output
        assert done.stderr == "error: TASK_ID is empty: give a task's id or its first characters\n"
    with SQLMemory(url) as memory:
        assert memory.get_task("01aa11").task.score is None


def test_run_names_its_batch_on_one_line_in_an_80_column_terminal(tmp_path: Path) -> None:
    """The README's `questions.jsonl`: a JSON object or a JSON string per line."""
    (tmp_path / "questions.jsonl").write_text('{"query": "Who wrote Hamlet?", "answer": "Shakespeare"}\n"2+2?"\n')
    (tmp_path / "my_pool.yaml").write_text(
        "models:\n  - {id: small, backend: openai, model: m, base_url: 'http://127.0.0.1:9/v1', "
        "input_price: 0.1, output_price: 0.4}\n"
    )
    memory = f"sqlite:///{tmp_path / 'memory.db'}"
    narrow = CliRunner(env={"COLUMNS": "80"})
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        done = narrow.invoke(app, ["run", "qa", "--input", "questions.jsonl", "--pool", "my_pool.yaml",
                                   "--budget-usd", "1e-12", "--memory", memory])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert re.search(r"^2 tasks \(0 lines skipped\); batch qa-\S+: 2 queries$", done.stdout, re.M), done.stdout


def test_eval_names_the_files_it_wrote_whole_in_an_80_column_terminal(tmp_path: Path) -> None:
    """A path cut across two lines cannot be copied into the next command."""
    rows = [
        f'{{"query_id": "q{i}", "query": "question {i}", "agent": "{agent}", "score": {score}, "cost_usd": {cost}}}'
        for i in range(20)
        for agent, score, cost in (("small", i % 2, 0.001), ("large", 1, 0.01))
    ]
    (tmp_path / "logs.jsonl").write_text("\n".join(rows) + "\n")
    out = tmp_path / "runs" / "an-evaluation-with-a-long-folder-name"
    narrow = CliRunner(env={"COLUMNS": "80"})
    done = narrow.invoke(app, ["eval", "--dataset", f"outcomes:{tmp_path / 'logs.jsonl'}", "--routers", "cheapest",
                               "--no-peers", "--boot", "0", "--out", str(out)])  # fmt: skip
    assert done.exit_code == 0, done.output
    wrote = [line for line in done.stdout.splitlines() if line.startswith("wrote ")]
    assert wrote and str(out / "results.json") in wrote[0] and str(out / "results.csv") in wrote[0], done.stdout


def test_eval_refuses_a_fixed_router_naming_a_model_the_dataset_lacks(tmp_path: Path) -> None:
    """`eval --routers fixed:model=smal` was evaluated as the cheapest model, under that name."""
    (tmp_path / "logs.jsonl").write_text("".join(
        f'{{"query_id": "q{i}", "query": "question {i}", "agent": "{agent}", "score": 1, "cost_usd": 0.01}}\n'
        for i in range(10) for agent in ("small", "large")
    ))  # fmt: skip
    done = runner.invoke(app, ["eval", "--dataset", f"outcomes:{tmp_path / 'logs.jsonl'}", "--routers", "cheapest,fixed:model=smal",
                               "--no-peers", "--boot", "0", "--out", str(tmp_path / "out")])  # fmt: skip
    assert done.exit_code == 2, done.output
    assert done.stderr.strip() == (
        "error: router spec 'fixed:model=smal': fixed: model 'smal' is not in the dataset (did you mean 'small'?); "
        "its models: large, small"
    )


def test_pool_list_shows_litellm_prices_and_refuses_a_model_the_cost_table_does_not_know(tmp_path: Path) -> None:
    """A typo in a LiteLLM model name was listed as priced by the "provider" (exit 0); `ask` then refused it."""
    if importlib.util.find_spec("litellm") is None:  # not imported here: agentroute imports it offline
        pytest.skip("the [litellm] extra is not installed")
    pool = tmp_path / "my_pool.yaml"
    pool.write_text(
        "models:\n  - {id: mini, backend: litellm, model: openai/gpt-4o-mini}\n"
        "  - {id: typo, backend: litellm, model: openai/gpt-4o-mnii}\n"
    )
    listed = runner.invoke(app, ["pool", "list", "--pool", str(pool)])
    assert listed.exit_code == 2
    assert re.search(r"│ mini +│ litellm +│ \w+ +│ 0\.15 +│ 0\.6 ", listed.stdout), listed.stdout
    assert re.search(r"│ typo +│ litellm +│ \w+ +│ none +│ none ", listed.stdout), listed.stdout
    assert "error: model 'typo': LiteLLM's cost table has no price for 'openai/gpt-4o-mnii'" in listed.stderr


def test_ask_takes_router_options_as_eval_does(tmp_path: Path) -> None:
    """`--router fixed:model=ID` (what the error for a bare `fixed` asks for) was an 'unknown router'."""
    pool = tmp_path / "my_pool.yaml"
    pool.write_text(
        "models:\n  - {id: small, backend: openai, model: m, base_url: 'http://127.0.0.1:9/v1', "
        "input_price: 0.1, output_price: 0.4}\n"
    )
    common = ["--pool", str(pool), "--budget-usd", "1e-12", "--memory", f"sqlite:///{tmp_path / 'm.db'}", "--json"]
    fixed = runner.invoke(app, ["ask", "Who wrote Hamlet?", "--router", "fixed:model=small", *common])
    assert fixed.exit_code == 0, fixed.output
    assert '"status": "budget_exhausted"' in fixed.stdout
    typo = runner.invoke(app, ["ask", "Who wrote Hamlet?", "--router", "cascade:threshhold=0.5", *common])
    assert typo.exit_code == 2
    assert "cascade takes no parameter threshhold" in typo.output and "did you mean 'threshold'" in typo.output


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("fixed:model=smal", "error: fixed: model 'smal' is not in the pool (did you mean 'small'?); its models: large, small"),
        ("fixed:model=small:strategy=cot", "error: fixed: model 'small' has no strategy 'cot' (it has: direct)"),
    ],
)
def test_a_fixed_router_naming_what_the_pool_lacks_is_refused(tmp_path: Path, spec: str, error: str) -> None:
    """`fixed:model=ID` with a mistyped ID routed every step to the cheapest model without a word."""
    pool = tmp_path / "my_pool.yaml"
    pool.write_text(
        "models:\n"
        + "".join(f"  - {{id: {m}, backend: openai, model: m, base_url: 'http://127.0.0.1:9/v1', input_price: 0.1, "
                  "output_price: 0.4}\n" for m in ("small", "large"))  # fmt: skip
    )
    done = runner.invoke(app, ["ask", "Who wrote Hamlet?", "--router", spec, "--pool", str(pool),
                               "--memory", f"sqlite:///{tmp_path / 'm.db'}"])  # fmt: skip
    assert done.exit_code == 2, done.output
    assert done.stderr.strip() == error


def test_ask_shows_the_whole_model_id_in_an_80_column_terminal(tmp_path: Path) -> None:
    """The route table cut every model id to 8 characters ("smollm2…", "gpt-4o-m…"). A process of its
    own: ``ask`` prints through a console whose width is fixed when the CLI is imported."""
    from tests.fixtures_reply_server import ReplyServer

    with ReplyServer() as server:
        pool = tmp_path / "my_pool.yaml"
        pool.write_text(
            f"models:\n  - {{id: gpt-4o-mini-2024-07-18, backend: openai, model: echo-x, base_url: '{server.url}/v1', "
            "input_price: 0.15, output_price: 0.6}\n"
        )
        done = agentroute("ask", "Who wrote Hamlet?", "--pool", str(pool), "--router", "cheapest",
                          "--memory", f"sqlite:///{tmp_path / 'm.db'}", cwd=tmp_path, columns=80)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [line.split("│") for line in done.stdout.splitlines() if line.startswith("│")]
    model_column = "".join(cells[3].strip() for cells in rows)
    assert model_column.startswith("gpt-4o-mini-2024-07-18"), done.stdout


def test_pool_list_cuts_nothing_in_an_80_column_terminal_and_loads_no_litellm(tmp_path: Path) -> None:
    """The default pool was listed as "smollm…", "strateg…", "descri…". LiteLLM (seconds to import)
    prices only LiteLLM cards: a pool without one does not import it."""
    done = agentroute("pool", "list", cwd=tmp_path, columns=80, python=["-X", "importtime"])
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout and "│ smollm2-135m │" in done.stdout, done.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "agentroute.pool" in imported and not {m for m in imported if m.split(".")[0] == "litellm"}

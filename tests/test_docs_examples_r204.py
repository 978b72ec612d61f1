"""What a new user meets following README.md and docs/*.md as written (r204): the trained router's
warning of unseen agents, the graphs and recipes the docs' commands name, `eval --json`'s progress on
a terminal, and the URL `agentroute serve --port 0` serves on.

README's learning loop — ``agentroute train knn --from MEMORY`` after ``agentroute run qa``, then
``agentroute ask ... --router runs/knn --allow-new-agents`` — warned "Strategies never logged:
smollm2-135m:cot (logged as smollm2-135m:sc@3), smollm2-135m:sc@3 (logged as smollm2-135m:sc@3)":
the planner had played cot and sc@3; the executor had not. The hint kept one logged strategy per
model over every role, so it named strategies that were logged as never logged.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from agentroute import AgentGraph
from agentroute.loading import load_graph, load_router
from agentroute.outcomes import OutcomeTable
from agentroute.pool import ModelCard, ModelPool
from agentroute.routers import make_router

ROOT = Path(__file__).resolve().parents[1]
QA = (
    AgentGraph("qa")
    .add_role("planner", prompt="Break the question into sub-questions.")
    .add_role("executor", prompt="Answer briefly.")
    .add_edge("planner", "executor")
)


def saved_router(tmp_path, columns: list[str]) -> str:
    """A router trained on logged outcomes of ``columns`` (agent keys ``role:model:strategy``), saved."""
    n = 24
    rng = np.random.default_rng(0)
    table = OutcomeTable(
        [f"q{i}" for i in range(n)], [f"question {i}?" for i in range(n)], columns,
        rng.random((n, len(columns))), np.full((n, len(columns)), 1e-5),
    )  # fmt: skip
    make_router("best-single").fit(table).save(tmp_path / "router")
    return str(tmp_path / "router")


def warnings_on(path: str, strategies: tuple[str, ...]) -> str:
    pool = ModelPool([ModelCard(id="small", backend="replay", input_price=0.1, output_price=0.1, strategies=strategies)])
    said: list[str] = []
    load_router(path, pool=pool, graph=QA, allow_new_agents=True, warn=said.append)
    assert len(said) == 1, said
    return said[0]


def test_a_strategy_another_role_logged_is_not_named_as_never_logged(tmp_path):
    """The planner played direct and cot, the executor direct: the executor playing cot is a new
    agent, but cot is no strategy 'never logged'."""
    path = saved_router(tmp_path, ["planner:small:direct", "planner:small:cot", "executor:small:direct"])
    said = warnings_on(path, ("direct", "cot"))
    assert "executor:small:cot" in said
    assert "never logged" not in said, said


def test_a_strategy_no_role_logged_is_named_once_with_every_logged_one(tmp_path):
    path = saved_router(tmp_path, ["planner:small:direct", "planner:small:cot", "executor:small:direct"])
    said = warnings_on(path, ("direct", "cot", "sc@3"))
    assert "Strategies never logged: small:sc@3 (logged as small:direct, small:cot):" in said, said
    assert said.count("never logged") == 1


@pytest.mark.parametrize("strategies", [("direct",), ("direct", "cot")])
def test_a_pool_of_the_trained_agents_warns_of_nothing(tmp_path, strategies):
    columns = [f"{role}:small:{s}" for role in ("planner", "executor") for s in strategies]
    pool = ModelPool([ModelCard(id="small", backend="replay", input_price=0.1, output_price=0.1, strategies=strategies)])
    said: list[str] = []
    load_router(saved_router(tmp_path, columns), pool=pool, graph=QA, warn=said.append)
    assert said == []


def shell_commands(doc: Path) -> list[str]:
    """The ``agentroute`` commands of ``doc``'s shell blocks (fenced bash, console or bare), one a line,
    continuation lines joined."""
    blocks = re.findall(r"^ *```(?:bash|sh|console|)\n(.*?)^ *```", doc.read_text(encoding="utf-8"), re.S | re.M)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [line.strip().removeprefix("$ ") for line in lines if line.strip().removeprefix("$ ").startswith("agentroute ")]


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_the_graphs_the_docs_commands_name_load_from_any_folder(doc, tmp_path, monkeypatch):
    """`--graph graphs/router_r1.py` (docs/router_r1.md) and `--graph graphs/planner.py`
    (docs/graph_planner.md) were paths into a checkout: `error: graph file graphs/router_r1.py does
    not exist` from a user's own folder. A built-in name loads anywhere."""
    monkeypatch.chdir(tmp_path)
    for command in shell_commands(doc):
        for spec in re.findall(r"--graph ([^\s`]+)", command):
            if spec.isupper():  # a placeholder: NAME
                continue
            assert load_graph(spec) is not None, command


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_the_recipes_the_docs_commands_name_ship_in_the_checkout(doc):
    """README says the recipes are the repository's ``training/`` folder: each one named is there."""
    for command in shell_commands(doc):
        for recipe in re.findall(r"--config ([^\s`]+)", command):
            assert (ROOT / recipe).is_file(), command


@pytest.mark.slow  # 12-17 s: the MiniLM embedding and an mlp fit, in a process on a terminal
def test_eval_json_on_a_terminal_draws_its_progress_on_stderr(tmp_path, data_dir):
    """README's `agentroute eval --dataset dcrouter:... --routers knn,per-task --json` ran 241 s on
    this box without a line of output: --json turned every bar off, though the bars go to stderr and
    the JSON to stdout (`agentroute eval ... --json > results.json` in a terminal)."""
    from tests.test_fit_progress import _assert_fit_bar, _start_on_a_terminal

    command = [sys.executable, "-m", "agentroute", "eval", "--dataset", f"routerbench:{data_dir / 'routerbench'}",
               "--limit", "40", "--routers", "mlp:epochs=3", "--no-peers", "--boot", "0", "--json",
               "--out", str(tmp_path / "out")]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "AGENTROUTE_PROGRESS"}
    code, drawn = _start_on_a_terminal(command, env)()
    assert code == 0, drawn[-3000:]
    _assert_fit_bar(drawn, "mlp")


@pytest.mark.slow  # 10 s: the server's start (FastAPI, uvicorn) in a process of its own
def test_serve_on_port_0_says_the_url_it_serves(tmp_path):
    """docs/serve.md: `agentroute serve --port 0 picks a free port` — and then said which nowhere
    (uvicorn names its address only when it binds the socket itself): a user could not reach it."""
    import signal
    import threading

    import httpx

    from tests.test_serve_user_paths import start_cli

    process = start_cli(tmp_path, 0)
    lines: list[str] = []
    url = threading.Event()

    def read() -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "http://127.0.0.1:" in line:
                url.set()

    reader = threading.Thread(target=read)
    reader.start()
    try:
        assert url.wait(60), "".join(lines)
        base = re.search(r"(http://127\.0\.0\.1:\d+/v1)\b", "".join(lines))
        assert base and base.group(1) != "http://127.0.0.1:0/v1", "".join(lines)
        assert [m["id"] for m in httpx.get(f"{base.group(1)}/models", timeout=10).json()["data"]] == ["echo"]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130
    finally:
        process.kill()
        process.wait()
        reader.join(10)
        process.stdout.close()  # type: ignore[union-attr]

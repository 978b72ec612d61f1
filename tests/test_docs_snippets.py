"""The Python snippets of docs/langgraph.md, run in order as a reader pastes them into one session.

The doc's first block is a cheat sheet (placeholders such as ``{...}``); a reader keeps its imports.
The other blocks are complete examples that assume what the reader already has: a ``pool``, a
``memory``, a checkpointer ``saver`` and a thread ``config``. Run in a fresh process, from a folder
of the reader's own, on the default local pool (the real SmolLM2) with its answers cut to 8 tokens
(what the snippets do does not depend on the answers' length; a 96-token cap made this the slowest
test of CI, and 16 tokens took 36-39 s here against 24-25 s for 8, same printed lines). docs/learning.md's scoring snippet runs in the same process, in a namespace of
its own, so the model loads once.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

READER = """
from langgraph.checkpoint.memory import InMemorySaver
from agentroute.memory import SQLMemory
from agentroute.pool import ModelPool

pool = ModelPool([card.model_copy(update={"max_tokens": 8}) for card in ModelPool.default()])
memory = SQLMemory("sqlite:///memory.db")
saver = InMemorySaver()
config = {"configurable": {"thread_id": "t1"}}
"""

CHECKS = {
    1: """
r = team.compile(pool=pool, router=make_router("cheapest")).run("Who wrote Dune?")
print("team", r.task.status, [s.agent.key.split(":")[0] for s in r.steps])
""",
    2: """
state = app.get_state(config).values
print("draft", bool(state["draft"]), state["agentroute_cost_usd"] > 0)
""",
    3: """
last = chat.get_state(config).values["messages"][-1]
print("chat", type(last).__name__, last.name, bool(last.content))
""",
    4: """
print("jokes", len(jokes))
""",
    5: """
print("answers", len(answers), all(isinstance(a, str) for a in answers))
""",
}


def python_blocks(doc: Path) -> list[str]:
    """Every ```python block of ``doc``, dedented (a block inside a list item is indented)."""
    return [textwrap.dedent(b) for b in re.findall(r"^ *```python\n(.*?)^ *```", doc.read_text(), re.S | re.M)]


SCORING = """
import os, runpy
os.makedirs("scoring"); os.chdir("scoring")
runpy.run_path("../score.py", run_name="__main__")  # a fresh namespace: nothing of the snippets above
"""


@pytest.fixture(scope="module")
def reader_session(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """docs/langgraph.md's snippets in order, then docs/learning.md's ``app.run(..., gold=, metric=)``
    snippet (inside a list item), in one fresh process on the default pool."""
    folder = tmp_path_factory.mktemp("reader")
    blocks = python_blocks(ROOT / "docs" / "langgraph.md")
    imports = "\n".join(line for line in blocks[0].splitlines() if line.startswith(("from ", "import ")))
    script = [READER, imports]
    for i, check in CHECKS.items():
        script += [blocks[i], check]
    (folder / "reader.py").write_text("\n".join([*script, SCORING]))
    (folder / "score.py").write_text(next(b for b in python_blocks(ROOT / "docs" / "learning.md") if "gold=" in b))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "reader.py"], cwd=folder, env=env, capture_output=True, text=True, timeout=600
    )
    return folder, done


@pytest.mark.slow
def test_the_langgraph_doc_snippets_run_in_order_on_the_default_pool(reader_session):
    _, done = reader_session
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.split(" ", 1)[0] in ("team", "draft", "chat", "jokes", "answers")]
    assert lines == [
        "team done ['researcher', 'writer']",
        "draft True True",
        "chat AIMessage assistant True",
        "jokes 3",
        "answers 2 True",
    ], done.stdout[-2000:]


@pytest.mark.slow
def test_the_learning_doc_scoring_snippet_scores_the_task(reader_session):
    """docs/learning.md's ``app.run(..., gold=, metric=)`` snippet (inside a list item)."""
    folder, done = reader_session
    assert done.returncode == 0, done.stderr[-3000:]
    assert float(done.stdout.split()[-1]) in (0.0, 1.0)
    assert (folder / "scoring" / ".agentroute" / "memory.db").exists()


def run_blocks(tmp_path: Path, blocks: list[str]) -> subprocess.CompletedProcess[str]:
    """``blocks`` pasted one after the other into a script, run in a fresh process in ``tmp_path``."""
    (tmp_path / "reader.py").write_text("\n".join(blocks))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "reader.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_the_learning_doc_explore_train_and_reload_snippets_run_in_order(tmp_path):
    """docs/learning.md: explore on a replay pool, train kNN from the memory, then reload it into
    a pool that lacks its agents (refused, the message printed) and one that adds an agent (warned)."""
    blocks = python_blocks(ROOT / "docs" / "learning.md")
    train = next(b for b in blocks if "OutcomeTable.from_trajectories" in b)
    reload = next(b for b in blocks if "allow_new_agents=True" in b)
    done = run_blocks(tmp_path, [train, reload])
    out = done.stdout.splitlines()
    assert sorted(eval(out[0])) == ["executor:large:direct", "executor:small:direct"]
    assert out[1] == "True 20.0"
    assert "does not fit this pool" in out[2]
    assert (tmp_path / "runs" / "knn").is_dir()
    assert "unseen in training: executor:gpt-4o-mini:direct" in done.stderr


def test_the_eval_doc_int8_and_calibration_snippets_print_what_they_say(tmp_path):
    """docs/eval.md's int8 embedder and reliability examples, as written."""
    blocks = python_blocks(ROOT / "docs" / "eval.md")
    int8 = next(b for b in blocks if 'precision="int8"' in b)
    calibration = next(b for b in blocks if "M.reliability" in b)
    out = run_blocks(tmp_path, [int8, calibration]).stdout.splitlines()
    assert out[0] in ("onnx-int8 (2, 384)", "onnx-fp32 (2, 384)")
    ece, brier = map(float, out[1].split())
    assert 0 <= ece <= 1 and brier == pytest.approx((0.2**2 + 0.2**2 + 0.1**2) / 3, abs=1e-3)

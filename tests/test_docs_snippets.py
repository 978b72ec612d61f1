"""The Python snippets of docs/langgraph.md, run in order as a reader pastes them into one session.

The doc's first block is a cheat sheet (placeholders such as ``{...}``); a reader keeps its imports.
The other blocks are complete examples that assume what the reader already has: a ``pool``, a
``memory``, a checkpointer ``saver`` and a thread ``config``. Run in a fresh process, from a folder
of the reader's own, on the default local pool (the real SmolLM2).
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

pool = ModelPool.default()
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
}


def python_blocks(doc: Path) -> list[str]:
    """Every ```python block of ``doc``, dedented (a block inside a list item is indented)."""
    return [textwrap.dedent(b) for b in re.findall(r"^ *```python\n(.*?)^ *```", doc.read_text(), re.S | re.M)]


@pytest.mark.slow
def test_the_langgraph_doc_snippets_run_in_order_on_the_default_pool(tmp_path):
    blocks = python_blocks(ROOT / "docs" / "langgraph.md")
    imports = "\n".join(line for line in blocks[0].splitlines() if line.startswith(("from ", "import ")))
    script = [READER, imports]
    for i, check in CHECKS.items():
        script += [blocks[i], check]
    (tmp_path / "reader.py").write_text("\n".join(script))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "reader.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.split(" ", 1)[0] in ("team", "draft", "chat", "jokes")]
    assert lines == [
        "team done ['researcher', 'writer']",
        "draft True True",
        "chat AIMessage assistant True",
        "jokes 3",
    ], done.stdout[-2000:]


@pytest.mark.slow
def test_the_learning_doc_scoring_snippet_scores_the_task(tmp_path):
    """docs/learning.md's ``app.run(..., gold=, metric=)`` snippet (inside a list item)."""
    block = next(b for b in python_blocks(ROOT / "docs" / "learning.md") if "gold=" in b)
    (tmp_path / "score.py").write_text(block)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "score.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert float(done.stdout.split()[-1]) in (0.0, 1.0)
    assert (tmp_path / ".agentroute" / "memory.db").exists()

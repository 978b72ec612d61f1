"""``BatchRunner(out=…)`` from Python follows ``--out``'s one rule (:func:`agentroute.out_path.check_out`).

Was: a missing folder was a bare ``FileNotFoundError`` (a file in the way ``NotADirectoryError``,
a folder ``IsADirectoryError``) once ``run()`` opened the file, after the batch's items had been
added to the memory's queue; the CLI created the folders. Now the folders are created when the run
first writes (a runner made and never run leaves none), and a path that cannot be written is a
``ConfigurationError`` naming ``out`` when the runner is made, before anything is queued.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from agentroute import AgentGraph, make_router
from agentroute.batch import BatchReport, BatchRunner
from agentroute.errors import ConfigurationError
from agentroute.memory import BatchQueue, SQLMemory
from tests.helpers import replay_pool

ITEMS = [{"query": f"question {i}", "query_id": f"q{i}"} for i in range(3)]


@pytest.fixture
def memory(tmp_path: Path):
    with SQLMemory(f"sqlite:///{tmp_path / 'm.db'}") as opened:
        yield opened


def _compiled(memory: SQLMemory):
    graph = AgentGraph("one").add_role("executor", prompt="p")
    return graph.compile(pool=replay_pool(), router=make_router("cheapest"), memory=memory)


def _written(out: Path, report: BatchReport) -> None:
    """Every item finished and has its line in ``out``."""
    assert report.counts == {"done": 3}
    assert sorted(json.loads(line)["query_id"] for line in out.read_text().splitlines()) == ["q0", "q1", "q2"]


def test_a_missing_folder_of_out_is_created_when_the_batch_first_writes(tmp_path, memory):
    out = tmp_path / "new" / "dir" / "out.jsonl"
    runner = BatchRunner(_compiled(memory), memory, batch_id="b", out=out)
    assert not (tmp_path / "new").exists()  # made, not run: no folder yet
    _written(out, asyncio.run(runner.run(ITEMS)))  # was: FileNotFoundError, the items queued


def test_a_missing_folder_of_out_is_created_by_a_runner_made_in_a_running_loop(tmp_path, memory):
    out = tmp_path / "new" / "dir" / "out.jsonl"

    async def main() -> BatchReport:
        return await BatchRunner(_compiled(memory), memory, batch_id="b", out=out).run(ITEMS)

    _written(out, asyncio.run(main()))


@pytest.mark.parametrize(
    ("under", "message"),
    [("notes.txt/dir/out.jsonl", "notes.txt is a file, not a directory"), ("folder", "is a directory; give the file")],
)
def test_an_out_that_cannot_be_written_is_refused_before_anything_is_queued(tmp_path, memory, under, message):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "folder").mkdir()
    out = tmp_path / under
    with pytest.raises(ConfigurationError, match=rf"^out {out}.*{message}"):
        BatchRunner(_compiled(memory), memory, batch_id="b", out=out)  # was: raised by run(), items queued

    async def in_a_loop() -> None:
        with pytest.raises(ConfigurationError, match=message):
            await BatchRunner(_compiled(memory), memory, batch_id="b", out=out).run(ITEMS)

    asyncio.run(in_a_loop())
    assert memory.stats()["tasks"] == {}
    assert BatchQueue(memory, "b").counts() == {}  # was: the three items pending
    assert (tmp_path / "notes.txt").read_text() == "mine"

"""`agentroute run --out` writes the outcome its memory stored: a task whose step the database
refused is stored ``failed`` (its record incomplete) and so is its item, and its line says so.
Before, the line said ``done`` while the item was ``failed``: the resume reran the query and wrote
a second ``done`` line for it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections import Counter

from agentroute.memory import SQLMemory
from tests.test_batch_kill import _command, _setup
from tests.test_batch_server import StubOpenAIServer

REFUSE_ID3 = (
    "CREATE TRIGGER refuse_id3 BEFORE INSERT ON steps "
    "WHEN (SELECT json_extract(meta, '$.query_id') FROM tasks WHERE id = NEW.task_id) = 'id3' "
    "BEGIN SELECT RAISE(ABORT, 'refused by the database'); END"
)


def test_an_out_line_says_failed_when_its_task_was_stored_failed_and_the_resume_adds_one_done_line(tmp_path):
    n = 6
    url = f"sqlite:///{tmp_path}/memory.db"
    SQLMemory(url).close()
    with sqlite3.connect(tmp_path / "memory.db") as conn:  # the database refuses the step of query id3
        conn.execute(REFUSE_ID3)
    env = {**os.environ, "COLUMNS": "200"}
    with StubOpenAIServer(delay_s=0.0) as server:
        paths = _setup(tmp_path, server.url, n)
        first = subprocess.run(_command(paths, url), capture_output=True, text=True, env=env, timeout=300)
        assert "Traceback" not in first.stdout + first.stderr, first.stdout + first.stderr
        lines = {
            line["query_id"]: line for line in map(json.loads, paths["out.jsonl"].read_text().splitlines())
        }
        assert len(lines) == n
        assert lines["id3"]["status"] == "failed", lines["id3"]  # before: "done"
        assert "1 step(s) of this task were not stored" in lines["id3"]["error"]
        assert all(line["status"] == "done" for qid, line in lines.items() if qid != "id3")

        with sqlite3.connect(tmp_path / "memory.db") as conn:
            conn.execute("DROP TRIGGER refuse_id3")
        resumed = subprocess.run(_command(paths, url), capture_output=True, text=True, env=env, timeout=300)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    done = Counter(
        line["query_id"]
        for line in map(json.loads, paths["out.jsonl"].read_text().splitlines())
        if line["status"] == "done"
    )
    assert done == Counter({f"id{i}": 1 for i in range(n)})  # before: id3 twice

"""`agentroute run web` with the options `agentroute run` offers every pipeline: `--out`,
`--resume` (after a Ctrl-C) and `--input` (refused). `run` parses them itself, so the web runner
silently dropped them: no file, every episode played again, a JSONL input ignored.

Through the real CLI in a subprocess, with a real headless Chromium (marked ``browser``) and the
$0 DOM skill (``--router always-skill``); the memory is a SQLite file.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

browser = pytest.mark.browser

CLI = [sys.executable, "-c", "from agentroute.cli import main; main()", "run", "web"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def _web(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=ENV)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _episodes(url: str) -> list:
    """Every web episode in the memory, finished or not."""
    from agentroute.memory import open_memory

    memory = open_memory(url)
    try:
        every = ["running", "done", "budget_exhausted", "failed", "interrupted"]
        return memory.trajectories(graph="web_agent", status=every)
    finally:
        memory.close()


# -- refused before anything starts ---------------------------------------------------------------


def test_input_is_refused_with_exit_2_not_ignored(tmp_path) -> None:
    """`run web --input queries.jsonl`: the file was ignored and the default tasks played; now
    exit 2 with a line saying why, before any browser or episode."""
    queries = tmp_path / "queries.jsonl"
    queries.write_text('{"query": "click the button"}\n')
    url = f"sqlite:///{tmp_path / 'web.db'}"
    done = _web("--tasks", "click-test", "--input", str(queries), "--memory", url)
    assert done.returncode == 2, done.stdout + done.stderr
    err = " ".join(done.stderr.split())
    assert "--input has no meaning for `run web`" in err and "--tasks" in err, err
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "web.db").exists() or _episodes(url) == []


@pytest.mark.parametrize(
    ("option", "value"),
    [("--metric", "f1"), ("--checkpointer", "memory"), ("--grace-s", "5"), ("--allow-new-agents", None)],
)
def test_other_options_of_run_that_mean_nothing_for_web_pages_are_refused(tmp_path, option, value) -> None:
    """`run`'s batch options that a web run cannot honour were dropped silently; now exit 2 naming them."""
    url = f"sqlite:///{tmp_path / 'web.db'}"
    done = _web("--tasks", "click-test", option, *([value] if value else []), "--memory", url)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{option} " in " ".join(done.stderr.split()), done.stderr


def test_an_out_file_that_cannot_be_written_stops_before_any_episode(tmp_path) -> None:
    """`--out` under a file: the option was dropped (exit 0, no file); now exit 2 at once, no episode
    played. (A missing folder is created, as for every `--out`: tests/test_cli_out_folders_a232.py.)"""
    url = f"sqlite:///{tmp_path / 'web.db'}"
    (tmp_path / "no").write_text("a file, not a folder")
    done = _web("--tasks", "click-test", "--out", str(tmp_path / "no" / "results.jsonl"), "--memory", url)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "is a file, not a directory" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "web.db").exists() or _episodes(url) == []


# -- --out ------------------------------------------------------------------------------------------


@browser
def test_out_gets_one_json_line_per_episode_with_what_the_table_shows(chromium, tmp_path) -> None:
    """`run web --out results.jsonl`: no file was written; now one line per episode with its task,
    seed, reward, success, steps, cost, router and agents, the task id of its record in the memory."""
    out, url = tmp_path / "results.jsonl", f"sqlite:///{tmp_path / 'web.db'}"
    done = _web("--tasks", "click-test,enter-text", "--episodes", "2", "--router", "always-skill",
                "--concurrency", "1", "--memory", url, "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = _lines(out)
    assert sorted((line["task"], line["seed"]) for line in lines) == [
        ("click-test", 0), ("click-test", 1), ("enter-text", 0), ("enter-text", 1),
    ]  # fmt: skip
    for line in lines:
        assert line["status"] == "done" and line["success"] is True and line["reward"] > 0, line
        assert line["cost_usd"] == 0.0 and line["router"] == "always-skill"
        assert line["agents"] == {"dom-skill": line["steps"]} and len(line["actions"]) == line["steps"]
        assert line["error"] is None and line["batch"].startswith("web-")
    stored = {t.task.id: t.task for t in _episodes(url)}
    assert set(stored) == {line["task_id"] for line in lines}
    for line in lines:
        task = stored[line["task_id"]]
        assert (task.metadata["task"], task.metadata["seed"], task.status) == (line["task"], line["seed"], "done")
        assert task.metadata["batch"] == line["batch"] and task.metadata["reward"] == line["reward"]
    again = _web("--tasks", "click-test", "--episodes", "1", "--router", "always-skill", "--memory", url,
                 "--out", str(out))  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert [(x["task"], x["seed"]) for x in _lines(out)] == [("click-test", 0)]  # a new run starts the file anew


# -- Ctrl-C, then --resume -------------------------------------------------------------------------


@browser
def test_ctrl_c_then_resume_plays_only_the_missing_episodes(chromium, tmp_path) -> None:
    """Ctrl-C during `run web --out FILE`, then the same command with `--resume`: every episode was
    played again (the memory held the first ones twice) and FILE never existed; now the stopped
    run exits 130 naming the command to resume with, FILE holds a whole line per episode finished
    by then, and the resumed run plays only the others: each (task, seed) once in FILE and in the
    memory."""
    out, url = tmp_path / "results.jsonl", f"sqlite:///{tmp_path / 'web.db'}"
    base = ["--tasks", "click-test", "--router", "always-skill", "--concurrency", "2", "--memory", url,
            "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(
        [*CLI, *base, "--episodes", "300"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while (not out.exists() or len(out.read_text().splitlines()) < 3) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGINT)  # as `kill -INT` (a terminal's ^C reaches Chromium too)
        sent = time.monotonic()
        stdout, stderr = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stdout + stderr
    assert took < 5, f"exited {took:.1f} s after SIGINT"  # ~0.3 s (32.5 s once the start-screen wait ran a script)
    err = " ".join(stderr.split())
    assert "stopped by SIGINT" in err and "--resume" in err and "Traceback" not in stderr, err
    stopped = _lines(out)  # every line whole (json.loads would raise on a torn one)
    played = {line["seed"] for line in stopped}
    assert 3 <= len(stopped) < 300 and len(played) == len(stopped)
    assert all(line["status"] == "done" for line in stopped)
    assert _episodes(url) and all(t.task.status != "running" for t in _episodes(url))

    total = max(played) + 3  # a few episodes past the last one finished
    finished_before = {t.task.metadata["seed"] for t in _episodes(url) if t.task.status == "done"}
    resumed = _web(*base, "--episodes", str(total), "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    left = total - len(finished_before & set(range(total)))
    assert f"; {left} to play" in " ".join(resumed.stdout.split()), resumed.stdout
    lines = _lines(out)
    assert sorted(line["seed"] for line in lines) == list(range(total))  # each once, none lost
    done = [t.task.metadata["seed"] for t in _episodes(url) if t.task.status == "done"]
    assert sorted(done) == sorted(finished_before | set(range(total)))  # none played twice


@browser
def test_resume_with_nothing_left_starts_no_browser_and_fills_a_new_out_file(chromium, tmp_path) -> None:
    """`--resume` once every episode is finished: they were all played again; now nothing is played
    (exit 0), and a `--out` given only now gets the lines of the episodes the memory holds."""
    out, url = tmp_path / "results.jsonl", f"sqlite:///{tmp_path / 'web.db'}"
    base = ["--tasks", "click-test", "--episodes", "2", "--router", "always-skill", "--memory", url]
    first = _web(*base)
    assert first.returncode == 0, first.stdout + first.stderr
    ids = sorted(t.task.id for t in _episodes(url))
    again = _web(*base, "--resume", "--out", str(out))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing left to play" in " ".join(again.stdout.split()), again.stdout
    assert sorted(t.task.id for t in _episodes(url)) == ids  # no episode played again
    lines = _lines(out)
    assert sorted(line["task_id"] for line in lines) == ids
    assert sorted(line["seed"] for line in lines) == [0, 1]
    assert all(line["status"] == "done" and line["success"] is True and line["steps"] == 1 for line in lines)
    other = _web(*base, "--resume", "--max-steps", "3")  # another step limit: another batch, played anew
    assert other.returncode == 0 and "0 of 2 episodes finished earlier" in " ".join(other.stdout.split())
    assert len(_episodes(url)) == 4


@browser
def test_the_docs_results_file_example_runs_as_written(chromium, tmp_path) -> None:
    """docs/web_agent.md's `--out` / `--resume` example, pasted into a shell in an empty folder."""
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "web_agent.md").read_text()
    section = doc[doc.index("### A results file, and resuming") :]
    script = re.search(r"```bash\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    done = subprocess.run(["bash", "-e", "-c", script], capture_output=True, text=True, timeout=240,
                          cwd=tmp_path, env={**ENV, "PATH": path})  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6 of 6 episodes finished earlier; nothing left to play" in " ".join(done.stdout.split())
    assert done.stdout.split()[-1] == "6"
    assert sorted((x["task"], x["seed"]) for x in _lines(tmp_path / "results.jsonl")) == [
        (t, s) for t in ("click-test", "enter-text") for s in range(3)
    ]


# -- what a new user runs into ------------------------------------------------------------------------


def test_episodes_0_names_the_option_at_fault(tmp_path) -> None:
    """`--episodes 0`: the message lumped three options ("--episodes, --max-steps and --concurrency
    must be ≥ 1 (got 0, 8, 4)"); now it names the one given wrong, in the words of every other count
    option (agentroute.checks.check_count, one rule; web_cmd had its own "≥ 1")."""
    done = _web("--tasks", "click-test", "--episodes", "0", "--memory", f"sqlite:///{tmp_path / 'web.db'}")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--episodes must be >= 1 (got 0)" in " ".join(done.stderr.split()), done.stderr
    assert "--max-steps" not in done.stderr


@browser
def test_a_task_named_twice_plays_its_episodes_once(chromium, tmp_path) -> None:
    """`--tasks click-test,click-test --episodes 1`: the same seed was played twice (two records of
    one episode, two --out lines); now each (task, seed) plays once."""
    out, url = tmp_path / "results.jsonl", f"sqlite:///{tmp_path / 'web.db'}"
    done = _web("--tasks", "click-test,click-test", "--episodes", "1", "--router", "always-skill",
                "--memory", url, "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(_episodes(url)) == 1
    assert [(x["task"], x["seed"]) for x in _lines(out)] == [("click-test", 0)]


@browser
def test_the_table_keeps_its_names_when_stdout_is_a_pipe(chromium, tmp_path) -> None:
    """`agentroute run web … | tee log` (or a CI log): rich drew the table 80 columns wide, cutting the
    task names and the agent mix to `click-…` and `dom-sk…`; now they are whole."""
    env = {k: v for k, v in ENV.items() if k != "COLUMNS"}
    done = subprocess.run(
        [*CLI, "--tasks", "click-test,enter-text", "--episodes", "1", "--router", "always-skill",
         "--memory", f"sqlite:///{tmp_path / 'web.db'}"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("│")]
    assert any("click-test" in row and "dom-skill 100%" in row for row in rows), done.stdout
    assert any("enter-text" in row for row in rows) and "…" not in done.stdout, done.stdout


@browser
def test_a_browser_that_cannot_start_stops_the_run_before_any_episode(chromium, tmp_path) -> None:
    """A Chromium that exits at once under `run web --episodes 3 --out FILE`: every episode failed in
    turn with the same reason (a `failed` task and an --out line each); now one line says so and
    how to check the browser, exit 2, nothing in the memory or the file."""
    from agentroute.web.env import find_chromium

    _, driver = find_chromium()
    out, url = tmp_path / "results.jsonl", f"sqlite:///{tmp_path / 'web.db'}"
    env = {**ENV, "MINIWOB_CHROME_BINARY": "/bin/false", "MINIWOB_CHROMEDRIVER": driver}
    done = subprocess.run(
        [*CLI, "--tasks", "click-test,enter-text", "--episodes", "3", "--router", "always-skill",
         "--memory", url, "--out", str(out)],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    err = " ".join(done.stderr.split())
    assert err.count("could not start Chromium") == 1 and "No episode was played" in err, err
    assert "MINIWOB_CHROME_BINARY" in err and "Traceback" not in done.stderr
    assert _episodes(url) == [] and not out.exists()


def _running(db: Path) -> int:
    """Web episodes the SQLite memory at ``db`` holds as `running` (0 before it exists)."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as conn:
            return int(conn.execute("select count(*) from tasks where status = 'running'").fetchone()[0])
    except sqlite3.Error:
        return 0


@browser
def test_resume_after_kill_9_closes_the_episodes_left_running(chromium, tmp_path) -> None:
    """`kill -9` of `run web` (or a crash) mid-episode, then `--resume`: the episodes in flight stayed
    `running` in the memory for good; now the resumed run closes them `interrupted` (their process
    is gone) and plays them again, every (task, seed) then finished once."""
    db, out = tmp_path / "web.db", tmp_path / "results.jsonl"
    base = ["--tasks", "click-test", "--router", "always-skill", "--concurrency", "2",
            "--memory", f"sqlite:///{db}", "--out", str(out)]  # fmt: skip
    for _attempt in range(3):  # kill while an episode is `running` in the memory (it may end first)
        proc = subprocess.Popen([*CLI, *base, "--episodes", "300"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=ENV, start_new_session=True)  # fmt: skip
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and proc.poll() is None:
                if out.exists() and len(out.read_text().splitlines()) >= 2 and _running(db):
                    break
                time.sleep(0.01)
        finally:
            with contextlib.suppress(ProcessLookupError):  # it may have ended by itself
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        if _running(db):
            break
    stale = _running(db)
    assert stale >= 1, "no episode was running when the process was killed"
    seeds = {line["seed"] for line in _lines(out)}
    total = max(seeds) + 3
    resumed = _web(*base, "--episodes", str(total), "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    said = " ".join(resumed.stdout.split())
    assert f"{stale} episode{'s' if stale > 1 else ''} left running by a process that died marked interrupted" in said
    trajectories = _episodes(f"sqlite:///{db}")
    assert [t for t in trajectories if t.task.status == "running"] == []
    interrupted = [t.task for t in trajectories if t.task.status == "interrupted"]
    assert len(interrupted) == stale and all("ended while it ran" in t.metadata["error"] for t in interrupted)
    done = sorted(t.task.metadata["seed"] for t in trajectories if t.task.status == "done")
    assert set(range(total)) <= set(done) and len(done) == len(set(done))  # each once


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_resume_on_a_memory_that_does_not_outlive_the_run_is_refused(chromium, url) -> None:
    """`--resume --memory sqlite://`: nothing from an earlier run can be there, and every episode was
    played again without a word; now exit 2 saying why, before any browser."""
    done = _web("--tasks", "click-test", "--episodes", "1", "--router", "always-skill", "--memory", url, "--resume")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--resume needs a memory that outlives a run" in " ".join(done.stderr.split()), done.stderr
    assert "web · " not in done.stdout  # no progress bar: no episode

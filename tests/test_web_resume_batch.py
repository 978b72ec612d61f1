"""`run web --resume` resumes the batch the episodes were played in, and says how.

- The default batch id hashed the router, the pool, the step limit and the budgets, not
  `--miniwob-url`: a `--resume` against another MiniWoB++ server counted the first server's
  episodes as done and played nothing there. A relative `--router DIR` was hashed as typed, so
  `./r` from two folders (two routers) was one batch.
- The stop line after Ctrl-C printed the user's arguments (the command to resume with, `--batch`)
  as rich markup: `[bold]` in an argument was dropped, `[/x]` raised. The printed command then
  resumed another batch into another file.

Through the real CLI in a subprocess, a real headless Chromium and the $0 DOM skill; the memory is
a SQLite file.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time

import pytest

from agentroute.cli.web_cmd import default_batch
from tests.fixtures_web import chromium, miniwob_server  # noqa: F401 (fixtures)
from tests.test_web_cli_options import CLI, ENV, _episodes, _lines, _web

browser = pytest.mark.browser
NO_BUDGET = {
    "--budget-usd": None,
    "--budget-calls": None,
    "--budget-seconds": None,
    "--budget-large-calls": None,
}


def _said(proc: subprocess.CompletedProcess[str]) -> str:
    return " ".join(proc.stdout.split())


@browser
def test_resume_against_another_miniwob_server_plays_its_episodes(chromium, miniwob_server, tmp_path) -> None:  # noqa: F811
    """Episodes played on the shipped pages, then `--resume --miniwob-url` of a server of the user's
    own: was "2 of 2 episodes finished earlier; nothing left to play" and the server never asked;
    now they are another batch, played on that server, and a second resume there plays nothing."""
    url, out = f"sqlite:///{tmp_path / 'web.db'}", tmp_path / "shipped.jsonl"
    base = ["--tasks", "click-test", "--episodes", "2", "--router", "always-skill", "--memory", url]
    shipped = _web(*base, "--out", str(out))
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    # the id earlier versions gave a run on the shipped pages: their --resume still finds its episodes
    assert {line["batch"] for line in _lines(out)} == {"web-104f0f75"}

    served = _web(*base, "--resume", "--miniwob-url", miniwob_server.base)
    assert served.returncode == 0, served.stdout + served.stderr
    assert "0 of 2 episodes finished earlier; 2 to play" in _said(served), served.stdout
    assert miniwob_server.paths.count("/miniwob/click-test.html") >= 1, miniwob_server.paths

    asked = len(miniwob_server.paths)
    again = _web(*base, "--resume", "--miniwob-url", miniwob_server.base.rstrip("/"))  # the same server
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 of 2 episodes finished earlier; nothing left to play" in _said(again), again.stdout
    assert len(miniwob_server.paths) == asked


def test_a_relative_router_folder_is_hashed_by_the_folder_it_names(tmp_path, monkeypatch) -> None:
    """`--router r` from two folders names two saved routers: two batches; the same folder by a
    relative or a full path: one. A web preset is hashed by its name as before."""
    for home in ("a", "b"):
        (tmp_path / home / "r").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a")
    in_a = default_batch("r", None, 8, NO_BUDGET)
    assert (
        default_batch("./r", None, 8, NO_BUDGET)
        == in_a
        == default_batch(str(tmp_path / "a" / "r"), None, 8, NO_BUDGET)
    )
    monkeypatch.chdir(tmp_path / "b")
    assert default_batch("r", None, 8, NO_BUDGET) != in_a
    assert default_batch("always-skill", None, 8, NO_BUDGET) == "web-104f0f75"


@browser
def test_the_resume_command_printed_after_ctrl_c_keeps_brackets_in_arguments(chromium, tmp_path) -> None:  # noqa: F811
    """Ctrl-C of `run web --batch 'run[/v2]' --out 'r[bold].jsonl'`: the stop line's command read
    the brackets as markup (`[bold]` dropped: another --out file; `[/v2]` a MarkupError traceback);
    now it is the command as typed plus `--resume`, and it resumes that batch into that file."""
    url, out = f"sqlite:///{tmp_path / 'web.db'}", tmp_path / "r[bold].jsonl"
    args = ["--tasks", "click-test", "--episodes", "300", "--router", "always-skill", "--memory", url,
            "--batch", "run[/v2]", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(
        [*CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while (not out.exists() or len(out.read_text().splitlines()) < 2) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr, stderr
    line = next(text for text in stderr.splitlines() if text.startswith("stopped by SIGINT"))
    assert "(in the memory, batch run[/v2])" in line, line
    printed = shlex.split(line.split("`")[1])
    assert printed == ["agentroute", "run", "web", *args, "--resume"], printed

    finished = {t.task.metadata["seed"] for t in _episodes(url) if t.task.status == "done"}
    total = max(finished) + 2  # the printed command, its 300 episodes cut to a few (a short test)
    resumed = _web(*[str(total) if arg == "300" else arg for arg in printed[3:]])
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    said = _said(resumed)
    assert f"--resume: batch run[/v2]: {len(finished)} of {total} episodes finished earlier" in said, said
    assert sorted(line["seed"] for line in _lines(out)) == list(range(total))

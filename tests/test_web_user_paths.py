"""The web agent used as a user uses it: a mistyped task, the CLI's per-episode budgets, a Chromium
killed between or during episodes, an episode interrupted mid-step.

Real Chromium (marked ``browser``; skipped without chromium/chromedriver or the ``web`` extra). A
scripted backend stands in for a *model* where a test needs a slow or browser-killing answer; the
browser, the dispatcher, the budget and the memory are the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agentroute.budget import Budget
from agentroute.pool.backends.base import Backend
from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool
from agentroute.types import Completion, CompletionRequest
from tests.fixtures_web import still_running

browser = pytest.mark.browser

SCRIPTED = ModelCard(id="scripted", backend="replay", input_price=1.0, output_price=2.0, max_tokens=16)


class Scripted(Backend):
    """A stand-in model: each call awaits and returns the next answer (a callable gets the page)."""

    name = "replay"
    blocks = False

    def __init__(self, answers: list[str | Callable[[str], object]]):
        self.answers, self.calls = list(answers), 0

    async def complete(self, request: CompletionRequest, card: ModelCard) -> Completion:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        text = answer(request.messages[-1]["content"]) if callable(answer) else answer
        if asyncio.iscoroutine(text):
            text = await text
        return Completion(model=card.id, text=str(text), tokens_in=50, tokens_out=5, cost_usd=card.usd(50, 5))


# the `chromium` and `store` fixtures: tests/fixtures_web.py

def _proc(pid: int) -> tuple[str, str, int] | None:
    """(name, state, parent) of a live process from /proc; None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
    return name, state, int(ppid)


def _browsers_below(root: int) -> list[int]:
    """Chromium and chromedriver processes descending from ``root`` that are not zombies."""
    table = {int(p): _proc(int(p)) for p in os.listdir("/proc") if p.isdigit()}
    children: dict[int, list[int]] = {}
    for pid, info in table.items():
        if info is not None:
            children.setdefault(info[2], []).append(pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        name, state, _ = table[pid] or ("", "Z", 0)
        if state != "Z" and ("chrom" in name):
            found.append(pid)
    return found


def _kill_browser(session) -> list[int]:
    """SIGKILL the Chromium of ``session`` (the children of its chromedriver), as `kill -9` would."""
    driver_pid = session.driver.service.process.pid
    victims = _browsers_below(driver_pid)
    assert victims, "no Chromium under the session's chromedriver"
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    _running(victims, within_s=5)
    return victims


def _running(pids: list[int], within_s: float) -> list[int]:
    """Which of ``pids`` still run (neither gone nor zombies) after waiting up to ``within_s`` for
    them to end: a SIGKILLed Chromium takes a while to exit on a loaded machine."""
    deadline = time.monotonic() + within_s
    while (alive := [p for p in pids if (_proc(p) or ("", "Z", 0))[1] != "Z"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


# -- input mistakes (no browser started) --------------------------------------------------------


def test_a_mistyped_task_names_the_closest_one_first(capsys: pytest.CaptureFixture[str]) -> None:
    """`run web --tasks click-tset`: the ~130 known names were listed with no hint; now the closest
    name comes first."""
    pytest.importorskip("miniwob")
    from agentroute.cli.web_cmd import run_web

    code = run_web(
        ["--tasks", "click-test,enter-txt"],
        router="always-skill",
        pool=None,
        budget_usd=None,
        memory="sqlite://",
        concurrency=1,
    )
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2
    assert "unknown MiniWoB task 'enter-txt'; did you mean 'enter-text'" in err
    assert err.index("did you mean") < err.index("ascending-numbers")  # before the long list


# -- the CLI's per-episode budgets ---------------------------------------------------------------


@browser
def test_run_web_budget_calls_hold_per_episode(chromium, tmp_path) -> None:
    """`agentroute run web --budget-calls 1` on enter-text (2 steps): `run` swallowed the option and
    the episode played both steps (`done`); now it stops after one call, `budget_exhausted`, with that
    step in the memory. `--budget-tokens`, which the web runner does not take, is refused (exit 2)
    instead of being dropped silently."""
    from agentroute.memory import open_memory

    db = tmp_path / "web.db"
    base = [sys.executable, "-c", "from agentroute.cli import main; main()", "run", "web", "--tasks", "enter-text",
            "--episodes", "1", "--router", "always-skill", "--memory", f"sqlite:///{db}"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*base, "--budget-calls", "1"], capture_output=True, text=True, timeout=90, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    memory = open_memory(f"sqlite:///{db}")
    try:
        (traj,) = memory.trajectories(graph="web_agent")
    finally:
        memory.close()
    assert traj.task.status == "budget_exhausted" and len(traj.steps) == 1, (
        traj.task.status,
        len(traj.steps),
    )
    refused = subprocess.run(
        [*base, "--budget-tokens", "100"], capture_output=True, text=True, timeout=90, env=env
    )
    assert refused.returncode == 2 and "--budget-tokens" in refused.stderr


# -- a Chromium that dies -------------------------------------------------------------------------


@browser
def test_a_browser_killed_between_episodes_is_replaced_and_the_next_episode_plays(chromium, store) -> None:
    """`kill -9` of the Chromium kept for the next episode (it died while idle, or while a model was
    thinking): that next episode failed at its reset ("invalid session id"); now a fresh browser
    plays it, and no Chromium or chromedriver is left running."""
    from agentroute.web.agent import WebAgent

    agent = WebAgent(router="always-skill", memory=store, budget=Budget(calls=4))
    try:
        first = asyncio.run(agent.run_episode("click-test", 0))
        _kill_browser(agent.session("click-test"))
        second = asyncio.run(agent.run_episode("click-test", 1))
    finally:
        agent.close()
    assert first.status == "done"
    assert (second.status, second.success, second.error) == ("done", True, None)
    assert store.get_task(second.task_id).task.status == "done"
    assert _browsers_below(os.getpid()) == []


@browser
def test_a_browser_killed_mid_episode_fails_it_with_its_cost_and_a_one_line_reason(chromium, store) -> None:
    """`kill -9` of Chromium while a model decides: that episode is `failed` with the cost of its
    steps and a one-line reason (it carried Selenium's session info and documentation link over
    five lines); the next episode gets a fresh browser; nothing is left running."""
    from agentroute.web.agent import WebAgent

    holder: dict[str, WebAgent] = {}

    def kill_then_click(observation: str) -> str:
        _kill_browser(holder["agent"].session("click-test"))
        return "click(4)"

    def first_button(observation: str) -> str:
        import re

        found = re.search(r"\[(\d+)\] button", observation)
        return f"click({found.group(1) if found else 0})"

    pool = ModelPool([SCRIPTED], backends={"replay": Scripted([kill_then_click, first_button])})
    agent = holder["agent"] = WebAgent(router="always-small", pool=pool, memory=store, max_steps=3)
    try:
        crashed, after = asyncio.run(agent.run_many([("click-test", 0), ("click-test", 1)]))
    finally:
        agent.close()
    assert crashed.status == "failed" and crashed.error
    assert (
        "\n" not in crashed.error
        and "selenium.dev" not in crashed.error
        and "Session info" not in crashed.error
    )
    assert "click(4) on 'click-test' failed" in crashed.error
    record = store.get_task(crashed.task_id)
    assert record.task.status == "failed" and record.task.cost_usd > 0
    assert record.task.cost_usd == pytest.approx(sum(s.cost_usd for s in record.steps))
    assert (after.status, after.success) == ("done", True)
    assert _browsers_below(os.getpid()) == []


# -- an interrupted episode ---------------------------------------------------------------------------


@browser
def test_an_interrupted_episode_is_closed_interrupted_with_what_it_cost(chromium, store) -> None:
    """Ctrl-C (or SIGTERM, or the caller's cancel) during a model step: the episode stayed `running`
    at $0 in the memory although its steps were billed; now it is `interrupted` with their cost, and
    closing the agent leaves no browser."""
    from agentroute.web.agent import WebAgent

    started = asyncio.Event()

    async def slow(observation: str) -> str:
        started.set()
        await asyncio.sleep(30)
        return "click(4)"

    pool = ModelPool([SCRIPTED], backends={"replay": Scripted(["click(999)", slow])})
    agent = WebAgent(router="always-small", pool=pool, memory=store, max_steps=5)

    async def go() -> None:
        episode = asyncio.ensure_future(agent.run_episode("click-test", 0))
        await asyncio.wait_for(started.wait(), 30)  # the first (illegal, billed) step is recorded
        episode.cancel()
        with pytest.raises(asyncio.CancelledError):
            await episode

    try:
        asyncio.run(go())
    finally:
        agent.close()
    every = ["running", "done", "budget_exhausted", "failed", "interrupted"]
    (traj,) = store.trajectories(graph="web_agent", status=every)
    assert traj.task.status == "interrupted"
    assert len(traj.steps) >= 1 and traj.task.cost_usd > 0
    assert traj.task.cost_usd == pytest.approx(sum(s.cost_usd for s in traj.steps))
    assert _browsers_below(os.getpid()) == []


@browser
def test_a_browser_that_cannot_start_leaves_its_reason_in_the_memory(chromium, store, monkeypatch) -> None:
    """A Chromium that exits at once: the episode's task was `failed` with no step, no answer and no
    audit event, so `agentroute memory show` gave no reason; now an audit event and the task's
    metadata carry it."""
    from agentroute.web.agent import WebAgent
    from agentroute.web.env import find_chromium

    _, driver = find_chromium()
    monkeypatch.setenv("MINIWOB_CHROME_BINARY", "/bin/false")
    monkeypatch.setenv("MINIWOB_CHROMEDRIVER", driver)
    agent = WebAgent(router="always-skill", memory=store)
    try:
        result = asyncio.run(agent.run_episode("click-test", 0))
    finally:
        agent.close()
    assert result.status == "failed" and "could not start Chromium for 'click-test'" in (result.error or "")
    record = store.get_task(result.task_id)
    assert record.task.status == "failed" and record.task.metadata["error"] == result.error
    events = store.audit_events(result.task_id)
    assert [(e.kind, e.subject) for e in events] == [("step_failed", "browser")]
    assert events[0].detail == result.error
    assert _browsers_below(os.getpid()) == []


def _tasks_in(db: Path) -> int:
    """How many tasks the SQLite memory at ``db`` holds (0 before it exists)."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as conn:
            return int(conn.execute("select count(*) from tasks").fetchone()[0])
    except sqlite3.Error:
        return 0


PROGRAM = """
import asyncio, sys
from agentroute.budget import Budget
from agentroute.memory import open_memory
from agentroute.web import WebAgent

memory = open_memory(sys.argv[1])
agent = WebAgent(router="always-skill", memory=memory, budget=Budget(calls=4))
asyncio.run(agent.run_many([("click-test", s) for s in range(500)], concurrency=2))
"""


@browser
def test_ctrl_c_of_a_python_program_leaves_no_browser_folder_and_no_running_episode(
    chromium, tmp_path
) -> None:
    """The Python API of docs/web_agent.md in a script stopped by Ctrl-C before it reached
    `agent.close()`: each browser's temp folder (its profile) stayed in TMPDIR and the episodes in
    flight stayed `running`; now the browsers are closed at exit and those episodes are `interrupted`."""
    import tempfile

    from agentroute.memory import open_memory

    tmp = Path(tempfile.mkdtemp(prefix="t", dir="/tmp"))  # short: Chromium's socket path must fit
    url = f"sqlite:///{tmp_path / 'web.db'}"
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", PROGRAM, url],
            env={**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1"},
            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while not list(tmp.glob("agentroute-*")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        # episodes under way: wait for the first one in the memory (a fixed 3 s after the browser's
        # folder appeared was too short on a loaded machine: Ctrl-C came before any episode began)
        while _tasks_in(tmp_path / "web.db") == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        assert proc.poll() is None, proc.communicate()[0]
        os.kill(
            proc.pid, signal.SIGINT
        )  # the program alone, as `kill -INT` (a terminal's ^C reaches Chromium too)
        out, _ = proc.communicate(timeout=60)
        left = still_running(proc.pid)
        assert "KeyboardInterrupt" in out, out[-2000:]
        assert left == [] and list(tmp.glob("agentroute-*")) == []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    memory = open_memory(url)
    try:
        stats = memory.stats()
    finally:
        memory.close()
    assert stats["tasks_total"] > 0 and stats["tasks"].get("running", 0) == 0, stats["tasks"]


def test_a_screenshots_folder_that_cannot_be_made_stops_at_once(tmp_path, capsys) -> None:
    """`run web --screenshots PATH` where PATH lies under a file: a NotADirectoryError traceback
    after the browsers started, with the episodes left `running` in the memory; now exit 2 with
    one line before any browser or episode."""
    pytest.importorskip("miniwob")
    from agentroute.cli.web_cmd import run_web
    from agentroute.memory import open_memory

    (tmp_path / "a-file").write_text("")
    url = f"sqlite:///{tmp_path / 'web.db'}"
    code = run_web(
        ["--tasks", "click-test", "--episodes", "2", "--screenshots", str(tmp_path / "a-file" / "shots")],
        router="always-skill", pool=None, budget_usd=None, memory=url, concurrency=1,
    )  # fmt: skip
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "screenshots folder" in err and "Not a directory" in err and "Traceback" not in err
    memory = open_memory(url)
    try:
        assert memory.stats()["tasks_total"] == 0
    finally:
        memory.close()


@browser
def test_an_episode_played_to_the_step_limit_is_an_outcome_a_router_trains_on(
    chromium, store, tmp_path
) -> None:
    """An agent that never solves the page within --max-steps: the episode was `failed`, and
    `agentroute train … --from` (which then skipped failed tasks; it learns from them now) dropped it,
    so a router trained on web logs saw the agents' successes only; now it is `done` with score 0,
    an outcome as any other, and trained on."""
    from agentroute.web.agent import WebAgent

    def type_without_submitting(observation: str) -> str:  # legal steps that never finish the page
        import re

        found = re.search(r"\[(\d+)\] input_text", observation)
        return f'type({found.group(1) if found else 0}, "not it")'

    pool = ModelPool([SCRIPTED], backends={"replay": Scripted([type_without_submitting])})
    agent = WebAgent(router="always-small", pool=pool, memory=store, max_steps=2)
    try:
        result = asyncio.run(agent.run_episode("enter-text", 0))
    finally:
        agent.close()
    assert (result.status, result.success, result.steps, result.error) == ("done", False, 2, None)
    record = store.get_task(result.task_id)
    assert (record.task.status, record.task.score) == ("done", 0.0)
    assert [s.status for s in record.steps] == ["ok", "ok"]
    url = store.url
    trained = subprocess.run(
        [sys.executable, "-c", "from agentroute.cli import main; main()", "train", "per-task", "--from", url,
         "--out", str(tmp_path / "router")],
        capture_output=True, text=True, timeout=60, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "on 1 trajectories" in " ".join(trained.stdout.split())


@browser
def test_a_killed_chromedriver_leaves_no_chromium_running(chromium, store) -> None:
    """`kill -9` of chromedriver: its Chromium (a dozen processes) ran on forever, since `quit` goes
    through the dead driver; now closing the lost browser kills them, and a fresh one plays on."""
    from agentroute.web.agent import WebAgent

    agent = WebAgent(router="always-skill", memory=store, budget=Budget(calls=4))
    orphans: list[int] = []
    try:
        first = asyncio.run(agent.run_episode("click-test", 0))
        driver_pid = agent.session("click-test").driver.service.process.pid
        orphans = _browsers_below(driver_pid)
        os.kill(driver_pid, signal.SIGKILL)
        second = asyncio.run(agent.run_episode("click-test", 1))
    finally:
        agent.close()
        alive = _running(orphans, within_s=10)
        for pid in alive:  # never leave them running, even when the test fails
            os.kill(pid, signal.SIGKILL)
    assert orphans and (first.status, second.status) == ("done", "done")
    assert alive == [], f"{len(alive)} of {len(orphans)} Chromium processes still running"
    assert _browsers_below(os.getpid()) == []


@browser
def test_run_many_checks_every_task_name_before_the_first_episode(chromium, store) -> None:
    """`run_many([("click-test", 0), ("click-tset", 0)])` from Python played (and recorded) the
    first episode, then raised on the second; now the mistyped name is refused, with the closest
    name, before any browser starts."""
    from agentroute.web.agent import WebAgent
    from agentroute.web.env import UnknownTaskError

    agent = WebAgent(router="always-skill", memory=store)
    try:
        with pytest.raises(UnknownTaskError, match="click-tset"):
            asyncio.run(agent.run_many([("click-test", 0), ("click-tset", 0)]))
    finally:
        agent.close()
    assert store.stats()["tasks_total"] == 0
    assert _browsers_below(os.getpid()) == []


@browser
def test_an_error_in_one_worker_stops_the_others_inside_a_running_loop(chromium, store) -> None:
    """In a long-lived event loop (a notebook, a server), an exception from one `run_many` worker
    (here `on_done`) reached the caller while the other worker went on playing every remaining
    episode unseen; now it is cancelled first, its episode in flight `interrupted`."""
    from agentroute.web.agent import WebAgent

    raised: list[bool] = []

    def boom(result) -> None:  # once: the other worker's callbacks are fine
        if not raised:
            raised.append(True)
            raise RuntimeError("on_done failed")

    async def session() -> tuple[int, int]:
        agent = WebAgent(router="always-skill", memory=store)
        try:
            with pytest.raises(RuntimeError, match="on_done failed"):
                await agent.run_many([("click-test", s) for s in range(40)], concurrency=2, on_done=boom)
            played = store.stats()["tasks_total"]
            await asyncio.sleep(3)  # the loop lives on: would the other worker keep playing?
            return played, store.stats()["tasks_total"]
        finally:
            await agent.aclose()

    played, later = asyncio.run(session())
    assert later == played <= 3, (played, later)
    assert store.stats()["tasks"].get("running", 0) == 0
    assert _browsers_below(os.getpid()) == []


def test_run_web_refuses_a_negative_seed_before_any_browser(tmp_path) -> None:
    """`--seed -5` started the browsers and failed every episode (MiniWoB seeds its pages with it)."""
    done = subprocess.run(
        [sys.executable, "-c", "from agentroute.cli import main; main()", "run", "web", "--tasks", "click-test",
         "--seed", "-5", "--memory", f"sqlite:///{tmp_path / 'web.db'}"],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done.returncode == 2 and "--seed must be ≥ 0 (got -5)" in done.stderr, done.stdout + done.stderr


def test_run_web_help_lists_the_web_runners_own_options() -> None:
    """`agentroute run web --help` showed only `run`'s options: --tasks, --episodes, --max-steps,
    --seed, --headed and --screenshots were listed nowhere."""
    done = subprocess.run(
        [sys.executable, "-c", "from agentroute.cli import main; main()", "run", "web", "--help"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "120"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for option in ("--tasks", "--episodes", "--max-steps", "--seed", "--screenshots", "--router", "--budget-usd"):
        assert option in done.stdout, option

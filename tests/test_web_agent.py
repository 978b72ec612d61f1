"""The web agent on MiniWoB++: action grammar and DOM rendering (unit), real headless episodes (browser).

The browser tests drive Debian's chromium through chromedriver; they skip when either (or the
``web`` extra) is missing. A scripted backend stands in for a model so that illegal answers, budgets
and a crash are exercised in seconds; the DOM skill plays the real policy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agentroute.budget import Budget
from agentroute.dispatch.dispatcher import Dispatcher
from agentroute.pool.backends.base import Backend
from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool
from agentroute.routers.baselines import FixedRouter
from agentroute.types import Completion, CompletionRequest
from agentroute.web.actions import Action, ActionError, check_action, parse_action
from agentroute.web.dom import Page, digest_of, page_from_observation, render
from agentroute.web.skill import SKILL_BACKEND, SKILL_MODEL, DomSkillBackend, dom_policy, skill_card
from tests.fixtures_web import still_running

# -- unit: the action grammar ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("click(4)", Action("click", ref=4)),
        ("  CLICK( 12 )  ", Action("click", ref=12)),
        ('type(5, "Myron")', Action("type", ref=5, text="Myron")),
        ('type(5, "say \\"hi\\" \\\\ bye")', Action("type", ref=5, text='say "hi" \\ bye')),
        ("key(Enter)", Action("key", key="Enter")),
        ("key(<tab>)", Action("key", key="Tab")),
        ("done()", Action("done")),
        ("The Ok button is 6.\nAnswer: click(6)", Action("click", ref=6)),
        ("Action: `click(3)`.", Action("click", ref=3)),
        ('Click on the "okay" button.\n\nThe answer is: click(9)', Action("click", ref=9)),
        ("click(7)\nbecause it says OK", Action("click", ref=7)),
    ],
)
def test_parse_action_accepts_the_grammar(text: str, expected: Action) -> None:
    assert parse_action(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I would click the button",
        "click 4",
        "click(4) and click(5)",
        "click(four)",
        "type(5, Myron)",
        "Answer: the button",
        "press(Enter)",
        "click(4)(5)",
    ],
)
def test_parse_action_rejects_everything_else(text: str) -> None:
    with pytest.raises(ActionError) as err:
        parse_action(text)
    assert err.value.kind == "unparsable"


def test_canonical_form_round_trips() -> None:
    for action in (
        Action("click", ref=3),
        Action("type", ref=2, text='a "b" \\ c'),
        Action("key", key="Tab"),
        Action("done"),
    ):
        assert parse_action(str(action)) == action


def test_check_action_names_what_is_illegal() -> None:
    with pytest.raises(ActionError, match="element 9 is not on the page"):
        check_action(Action("click", ref=9), refs={4, 5})
    with pytest.raises(ActionError, match="does not take text"):
        check_action(Action("type", ref=4, text="x"), refs={4, 5}, typeable={5})
    with pytest.raises(ActionError, match="unknown key 'Escape'"):
        parse_action("key(Escape)")
    assert check_action(Action("type", ref=5, text="x"), refs={4, 5}, typeable={5}).ref == 5


# -- unit: DOM rendering -------------------------------------------------------------------------


def _el(
    ref: int,
    parent: int,
    tag: str,
    text: str = "",
    value: str = "",
    id: str = "",
    classes: str = "",
    flags: tuple[int, ...] = (0, 0, 0, 1),
) -> dict:
    return {
        "ref": ref,
        "parent": parent,
        "tag": tag,
        "text": text,
        "value": value,
        "id": id,
        "classes": classes,
        "flags": flags,
    }


LOGIN = {
    "utterance": 'Enter the username "kanesha" and the password "Rt2v" into the text fields and press login.',
    "fields": (("username", "kanesha"), ("password", "Rt2v")),
    "dom_elements": (
        _el(1, 0, "body", flags=(1, 0, 0, 0)),
        _el(2, 1, "div", id="wrap", flags=(0, 0, 0, 0)),
        _el(5, 2, "p", flags=(0, 0, 0, 0)),
        _el(6, 5, "label", "Username"),
        _el(7, 5, "input_text", id="username"),
        _el(8, 2, "p", flags=(0, 0, 0, 0)),
        _el(9, 8, "label", "Password"),
        _el(10, 8, "input_password", id="password", flags=(1, 0, 0, 1)),
        _el(11, 2, "button", "Login", id="subbtn"),
    ),
}
CHECKBOXES = {
    "utterance": "Select nd7Qt and click Submit.",
    "fields": (("target 0", "nd7Qt"), ("button", "submit")),
    "dom_elements": (
        _el(1, 0, "body"),
        _el(5, 1, "label", flags=(0, 0, 0, 0)),
        _el(6, 5, "input_checkbox", id="ch0"),
        _el(-1, 5, "t", "91YPF"),
        _el(7, 1, "label", flags=(0, 0, 0, 0)),
        _el(8, 7, "input_checkbox", id="ch1"),
        _el(-2, 7, "t", "nd7Qt"),
        _el(15, 1, "button", "Submit"),
    ),
}


def test_render_is_compact_and_keeps_ids_tags_text_and_labels() -> None:
    page = page_from_observation(LOGIN)
    text = render(page)
    assert text.splitlines()[0] == f"Observation: {page.digest}"  # first: a model copies a last one
    assert text.splitlines()[1] == f"Task: {LOGIN['utterance']}"
    assert '\n[7] input_text "Username"\n' in text  # an input shows its label
    assert '\n[10] input_password "Password"\n' in text
    assert '\n[11] button "Login"\n' in text and text.endswith("Done: none")
    assert "[2] div" not in text and "[1] body" not in text  # empty containers are left out
    assert page.element(7).html_id == "username" and page.element(10).focused  # kept for the skill
    typed = Page(page.utterance, (dataclasses.replace(page.element(7), value="kanesha"),))
    assert '[7] input_text "Username" value="kanesha"' in render(typed)
    assert "[6] label" in text  # a label beside an input stays (it has text)
    assert page.refs == {6, 7, 9, 10, 11} and page.typeable_refs == {7, 10}
    assert digest_of(text) == page.digest


def test_text_nodes_label_their_inputs_and_digest_follows_history() -> None:
    page = page_from_observation(CHECKBOXES)
    text = render(page)
    assert '[8] input_checkbox "nd7Qt"' in text and "[7] label" not in text
    later = page.with_history(["click(8)"])
    assert later.digest != page.digest and render(later).endswith("Done: click(8)")
    assert page_from_observation(CHECKBOXES).digest == page.digest  # deterministic


def test_dom_policy_fills_fields_by_label_then_submits() -> None:
    page = page_from_observation(LOGIN)
    history: list[str] = []
    for _ in range(3):
        history.append(str(dom_policy(page.with_history(history))))
    assert history == ['type(7, "kanesha")', 'type(10, "Rt2v")', "click(11)"]
    assert dom_policy(page.with_history(history)) is None  # nothing left: the skill says so
    boxes = page_from_observation(CHECKBOXES)
    assert str(dom_policy(boxes)) == "click(8)"
    assert str(dom_policy(boxes.with_history(["click(8)"]))) == "click(15)"


class Scripted(Backend):
    """A stand-in model: each call returns the next answer (a callable gets the step's input)."""

    name = "replay"
    blocks = False

    def __init__(self, answers: list[str | Callable[[str], str]]):
        self.answers, self.calls = list(answers), 0

    async def complete(self, request: CompletionRequest, card: ModelCard) -> Completion:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        text = answer(request.messages[-1]["content"]) if callable(answer) else answer
        return Completion(model=card.id, text=text, tokens_in=50, tokens_out=5, cost_usd=card.usd(50, 5))


SCRIPTED = ModelCard(id="scripted", backend="replay", input_price=1.0, output_price=2.0, max_tokens=16)


def test_dom_skill_is_a_zero_cost_agent_whose_failure_escalates() -> None:
    """No browser: the skill behind the dispatcher, its blocked postcondition as a failed step."""
    skill = DomSkillBackend()
    pool = ModelPool(
        [skill_card(), SCRIPTED], backends={SKILL_BACKEND: skill, "replay": Scripted(["click(11)"])}
    )
    dispatcher = Dispatcher(pool, FixedRouter(model=SKILL_MODEL), max_fallbacks=1)
    page = page_from_observation(LOGIN)

    async def go(p: Page) -> list:
        skill.remember(p)
        run = dispatcher.start("login", budget=Budget(calls=5))
        await dispatcher.step(run, role="navigator", stage="act", prompt="act", input=render(p))
        return run.steps

    steps = asyncio.run(go(page))
    assert [(s.agent.model, s.status, s.output, s.cost_usd) for s in steps] == [
        (SKILL_MODEL, "ok", 'type(7, "kanesha")', 0.0)
    ]
    done = page.with_history(['type(7, "kanesha")', 'type(10, "Rt2v")', "click(11)"])
    steps = asyncio.run(go(done))  # the skill is at a loss: failed step, then the model
    assert [(s.agent.model, s.status) for s in steps] == [(SKILL_MODEL, "failed"), ("scripted", "ok")]
    assert "an action was found" in steps[0].error


def test_web_pool_sends_the_worked_examples_as_chat_turns_and_bills_them() -> None:
    """No browser: a model agent's request carries SHOTS as earlier turns; the ledger counts them."""
    from agentroute.web.agent import PROMPT, SHOTS, FewShotBackend, web_pool

    seen: list[list[dict[str, str]]] = []

    class Recording(Scripted):
        async def complete(self, request: CompletionRequest, card: ModelCard) -> Completion:
            seen.append(list(request.messages))
            return await super().complete(request, card)

    inner = Recording(["click(11)"])
    pool = web_pool(ModelPool([SCRIPTED], backends={"replay": inner}))
    wrapped = pool.backend("scripted")
    assert isinstance(wrapped, FewShotBackend) and isinstance(pool.backend(SKILL_MODEL), DomSkillBackend)
    assert isinstance(
        web_pool(ModelPool([SCRIPTED], backends={"replay": inner}), shots=False).backend("scripted"),
        Recording,
    )
    dispatcher = Dispatcher(pool, FixedRouter(model="scripted"))
    page = page_from_observation(LOGIN)

    async def go() -> list:
        run = dispatcher.start("login", budget=Budget(calls=5))
        await dispatcher.step(
            run, role="navigator", stage="act", prompt=PROMPT, input=render(page) + "\nAnswer:"
        )
        return run.steps

    steps = asyncio.run(go())
    assert [s.output for s in steps] == ["click(11)"]
    (chat,) = seen
    assert [m["role"] for m in chat] == ["system"] + ["user", "assistant"] * len(SHOTS) + ["user"]
    assert chat[0]["content"].startswith(PROMPT) and chat[-1]["content"].startswith(
        f"Observation: {page.digest}"
    )
    assert [(chat[1 + 2 * i]["content"], chat[2 + 2 * i]["content"]) for i in range(len(SHOTS))] == list(
        SHOTS
    )
    plain = CompletionRequest(model="scripted", messages=[chat[0], chat[-1]], max_tokens=8)
    assert wrapped.prompt_tokens(plain, SCRIPTED) > inner.prompt_tokens(
        plain, SCRIPTED
    )  # the shots are paid for
    assert wrapped.worst_case_usd(plain, SCRIPTED) > inner.worst_case_usd(plain, SCRIPTED)
    assert all(parse_action(answer).kind in ("click", "type") for _, answer in SHOTS)  # strict grammar


# -- CLI input checks (no browser started) ------------------------------------------------------


def test_unknown_task_lists_the_available_ones(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("miniwob")
    from agentroute.cli.web_cmd import run_web

    code = run_web(
        ["--tasks", "click-tset"],
        router="always-skill",
        pool=None,
        budget_usd=None,
        memory=None,
        concurrency=1,
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown MiniWoB task 'click-tset'" in err and "click-test" in err and "enter-text" in err


def test_missing_chromium_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path
) -> None:
    pytest.importorskip("miniwob")
    from agentroute.cli.web_cmd import run_web

    monkeypatch.delenv("MINIWOB_CHROME_BINARY", raising=False)
    monkeypatch.delenv("MINIWOB_CHROMEDRIVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # neither chromium nor chromedriver on PATH
    code = run_web(
        ["--tasks", "click-test"],
        router="always-skill",
        pool=None,
        budget_usd=None,
        memory=None,
        concurrency=1,
    )
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2
    assert "chromium and chromedriver not found" in err and "apt-get install chromium chromium-driver" in err


def test_headed_without_a_display_stops_at_once(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`run web --headed` on a machine without a display: exit 2 naming the way out, instead of
    every episode failing with Chromium's "session not created"."""
    pytest.importorskip("miniwob")
    from agentroute.cli.web_cmd import run_web

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    code = run_web(["--tasks", "click-test", "--episodes", "1", "--headed"], router="always-skill", pool=None, budget_usd=None, memory="sqlite://", concurrency=1)
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "--headed needs a display" in err and "xvfb-run" in err


# -- real episodes in headless Chromium -----------------------------------------------------------

browser = pytest.mark.browser


# the `chromium` and `store` fixtures: tests/fixtures_web.py

def _agent(**kwargs):
    from agentroute.web.agent import WebAgent

    return WebAgent(**kwargs)


def _button_ref(observation: str) -> str:
    """A scripted model that reads the page: the first button's id."""
    found = re.search(r"\[(\d+)\] button", observation)
    return f"click({found.group(1) if found else 0})"


@browser
def test_dom_skill_solves_simple_tasks_with_real_rewards_in_memory(chromium, store) -> None:
    agent = _agent(router="always-skill", memory=store, budget=Budget(calls=10))
    episodes = [(t, s) for t in ("click-test", "click-button", "enter-text") for s in (0, 1)]
    try:
        results = asyncio.run(agent.run_many(episodes))
    finally:
        agent.close()
    for r in results:
        assert (r.status, r.success) == ("done", True), r
        assert 0.5 < r.reward <= 1.0 and r.cost_usd == 0.0  # time-discounted: a loaded CI machine is slower
    assert [r.steps for r in results] == [1, 1, 1, 1, 2, 2]  # enter-text: type, then submit
    trajectories = {t.task.id: t for t in store.trajectories(graph="web_agent")}
    assert len(trajectories) == 6
    for r in results:
        traj = trajectories[r.task_id]
        assert traj.task.status == "done" and traj.task.score == pytest.approx(r.reward)
        assert traj.task.metadata["task"] == r.task and traj.task.metadata["seed"] == r.seed
        last = traj.steps[-1]
        assert last.score == pytest.approx(r.reward) and last.agent.model == SKILL_MODEL
        assert all(s.score is None for s in traj.steps[:-1])
        for step in traj.steps:  # observation digest, action, agent, cost, latency
            assert digest_of(step.input) and re.fullmatch(r"[0-9a-f]{12}", digest_of(step.input))
            assert parse_action(step.output) and step.cost_usd == 0.0 and step.latency_ms >= 0


@browser
def test_illegal_and_unparsable_answers_are_failed_audited_charged_steps(chromium, store) -> None:
    model = Scripted(["click(999)", "I think I should click OK", _button_ref])
    pool = ModelPool([SCRIPTED], backends={"replay": model})
    agent = _agent(router="always-small", pool=pool, memory=store, max_steps=5)
    try:
        r = asyncio.run(agent.run_episode("click-button", 3))
    finally:
        agent.close()
    traj = store.get_task(r.task_id)
    assert [s.status for s in traj.steps] == ["failed", "failed", "ok"]
    assert r.status == "done" and r.steps == 3 and r.failed_steps == 2
    assert all(s.cost_usd > 0 for s in traj.steps)  # a failed answer was billed: it counts
    assert traj.task.cost_usd == pytest.approx(sum(s.cost_usd for s in traj.steps))
    details = [e.detail for e in store.audit_events(r.task_id) if e.kind == "postcondition_failed"]
    assert len(details) == 2
    assert "element 999 is not on the page" in details[0] and "unparsable action" in details[1]
    # the button read off the page is the right one on click-button only when it is the target
    assert traj.steps[-1].score == pytest.approx(max(0.0, r.reward))


@browser
def test_budgets_hold_and_end_the_episode_budget_exhausted(chromium, store) -> None:
    pool = ModelPool([SCRIPTED], backends={"replay": Scripted(["click(999)"])})
    agent = _agent(router="always-small", pool=pool, memory=store, max_steps=10)
    try:
        calls = asyncio.run(agent.run_episode("click-test", 0, budget=Budget(calls=2)))
        per_call = SCRIPTED.usd(0, SCRIPTED.max_tokens)  # lower bound of a worst case
        usd = asyncio.run(agent.run_episode("click-test", 1, budget=Budget(usd=per_call / 2)))
    finally:
        agent.close()
    assert (calls.status, calls.steps, calls.reward) == ("budget_exhausted", 2, 0.0)
    assert len(store.get_task(calls.task_id).steps) == 2
    assert (usd.status, usd.steps, usd.cost_usd) == ("budget_exhausted", 0, 0.0)
    assert store.get_task(usd.task_id).task.status == "budget_exhausted"


@browser
def test_large_call_and_seconds_budgets_hold(chromium, store) -> None:
    import time

    def slow(observation: str) -> str:
        time.sleep(0.4)
        return "click(999)"

    large = SCRIPTED.model_copy(update={"tier": "large"})
    pool = ModelPool([large], backends={"replay": Scripted([slow])})
    agent = _agent(router="always-large", pool=pool, memory=store, max_steps=10)
    try:
        capped = asyncio.run(agent.run_episode("click-test", 0, budget=Budget(large_calls=2)))
        timed = asyncio.run(agent.run_episode("click-test", 1, budget=Budget(seconds=1.0)))
    finally:
        agent.close()
    assert (capped.status, capped.steps) == ("budget_exhausted", 2)
    assert timed.status == "budget_exhausted" and 1 <= timed.steps <= 3
    assert len(store.get_task(timed.task_id).steps) == timed.steps


@browser
def test_cascade_escalates_from_the_skill_and_a_crash_fails_only_its_episode(chromium, store) -> None:
    from agentroute.web.agent import WebAgent

    holder: dict[str, WebAgent] = {}

    def crash(observation: str) -> str:
        holder["agent"].session("click-test").driver.quit()  # the browser dies mid-episode
        return "click(4)"

    model = Scripted([crash])
    pool = ModelPool([SCRIPTED], backends={"replay": model})
    agent = holder["agent"] = _agent(router="cascade", pool=pool, memory=store, max_steps=3)
    try:
        ok = asyncio.run(agent.run_episode("click-test", 0))
        agent.skill.registry.skills.clear()  # the skill is now unavailable: every step escalates
        crashed, after = asyncio.run(agent.run_many([("click-test", 1), ("click-test", 2)]))
    finally:
        agent.close()
    assert ok.status == "done" and ok.agents == {SKILL_MODEL: 1}
    assert crashed.status == "failed" and crashed.error and "click(4)" in crashed.error
    steps = store.get_task(crashed.task_id).steps
    assert [(s.agent.model, s.status) for s in steps] == [(SKILL_MODEL, "failed"), ("scripted", "failed")]
    assert store.get_task(crashed.task_id).task.status == "failed"
    # the batch went on: a fresh browser served the next episode (the scripted model kills it again)
    assert after.steps >= 1 and store.get_task(after.task_id) is not None


@browser
def test_run_web_cli_prints_a_table_per_task(chromium, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from agentroute.cli.web_cmd import run_web

    shots = tmp_path / "shots"
    code = run_web(
        [
            "--tasks",
            "click-test,enter-text",
            "--episodes",
            "2",
            "--max-steps",
            "4",
            "--budget-calls",
            "6",
            "--screenshots",
            str(shots),
        ],
        router="always-skill",
        pool=None,
        budget_usd=None,
        memory=f"sqlite:///{tmp_path / 'cli.db'}",
        concurrency=2,
    )
    out = capsys.readouterr().out
    assert code == 0
    assert re.search(r"click-test\s+│\s+2\s+│\s+100%", out) and re.search(
        r"enter-text\s+│\s+2\s+│\s+100%", out
    )
    assert "dom-skill 100%" in out and "episodes/min" in out
    assert len(list(shots.glob("enter-text-seed0-step*.png"))) == 3  # after reset, type, submit


@browser
def test_a_closed_browser_leaves_nothing_in_the_temp_folder(chromium, monkeypatch) -> None:
    """Chromium's profile and singleton socket live in a folder of the browser's own, removed on close."""
    import tempfile
    from pathlib import Path

    from agentroute.web.env import MiniWoBSession

    # a short folder: the socket's path must fit a Unix socket address (108 bytes), as /tmp's does
    tmp = Path(tempfile.mkdtemp(prefix="t", dir="/tmp"))
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    try:
        with MiniWoBSession("click-test") as session:
            assert session.reset(seed=0) is not None
            assert [p.name[:11] for p in tmp.iterdir()] == ["agentroute-"]
        assert list(tmp.iterdir()) == []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- the CLI as a user runs it: a browser that cannot start, and Ctrl-C -------------------------

AGENTROUTE = [sys.executable, "-c", "from agentroute.cli import main; main()"]


def _web_cli(tmp: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    """``agentroute run web …`` in its own session (as a terminal's foreground job), TMPDIR=tmp."""
    command = [*AGENTROUTE, "run", "web", *args, "--memory", f"sqlite:///{tmp / 'web.db'}"]
    return subprocess.Popen(
        command, env={**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1", **env},
        start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


@pytest.fixture
def short_tmp():
    """A short TMPDIR: Chromium's socket path must fit a Unix socket address (108 bytes)."""
    tmp = Path(tempfile.mkdtemp(prefix="t", dir="/tmp"))
    yield tmp
    shutil.rmtree(tmp, ignore_errors=True)


def _browser_folders(tmp: Path) -> list[str]:
    return [p.name for p in tmp.iterdir() if p.name.startswith("agentroute-")]


@browser
def test_a_browser_that_does_not_start_leaves_no_temp_folder_and_a_short_reason(chromium, short_tmp) -> None:
    """`run web` with a Chromium that exits at once: one line of reason (not chromedriver's stack of
    addresses), and no browser folder is left in TMPDIR. The run stops before its first episode
    (exit 2): it used to fail every episode in turn, each with the same line and a `failed` task."""
    from agentroute.memory import open_memory
    from agentroute.web.env import find_chromium

    _, driver = find_chromium()
    proc = _web_cli(
        short_tmp, "--tasks", "click-test", "--episodes", "2", "--router", "always-skill",
        MINIWOB_CHROME_BINARY="/bin/false", MINIWOB_CHROMEDRIVER=driver,
    )  # fmt: skip
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, out
    assert " ".join(out.split()).count("could not start Chromium for 'click-test'") == 1, out
    assert "No episode was played" in " ".join(out.split())
    memory = open_memory(f"sqlite:///{short_tmp / 'web.db'}")
    try:
        assert memory.stats()["tasks_total"] == 0  # no `failed` task per episode
    finally:
        memory.close()
    assert "Stacktrace" not in out and "<unknown>" not in out
    assert _browser_folders(short_tmp) == []


#: Seconds from a stop (Ctrl-C, SIGTERM) to the exit of `run web`: ~0.5 s, a few under load.
STOP_S = 5.0


def _stop(proc: subprocess.Popen[str], signum: int, *, group: bool = True) -> tuple[str, float]:
    """Send ``signum`` to the job (as a terminal's Ctrl-C) or to `run web` alone (``kill -INT``);
    its output and the seconds it took to exit."""
    sent = time.monotonic()
    (os.killpg if group else os.kill)(proc.pid, signum)
    out, _ = proc.communicate(timeout=60)
    return out, time.monotonic() - sent


@browser
def test_ctrl_c_stops_run_web_and_leaves_no_browser_or_temp_folder(chromium, short_tmp) -> None:
    """Ctrl-C reaches the whole foreground job — agentroute, chromedriver and Chromium: the run
    stops with 130, prints no traceback, and leaves no Chromium process and no temp folder."""
    proc = _web_cli(short_tmp, "--tasks", "click-test,click-button", "--episodes", "100", "--router", "always-skill")
    deadline = time.monotonic() + 90
    while not _browser_folders(short_tmp) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(3)  # a browser up and playing
    assert proc.poll() is None, proc.communicate()[0]
    out, took = _stop(proc, signal.SIGINT)
    left = still_running(proc.pid)  # processes of the job
    assert proc.returncode == 130, out
    assert took < STOP_S, f"exited {took:.1f} s after SIGINT"  # 32 s when it landed in chromedriver's start
    assert "Traceback" not in out and "Error closing the driver" not in out, out
    assert "lost chromedriver" not in out, out  # the Ctrl-C reached it: Chromium's sweep is expected
    assert left == [] and _browser_folders(short_tmp) == []


@browser
@pytest.mark.parametrize("group", [True, False], ids=["ctrl-c", "kill-int"])
def test_a_stop_while_chromedriver_starts_exits_at_once(chromium, short_tmp, tmp_path, group) -> None:
    """Ctrl-C while chromedriver is still starting (a slow start, as on a loaded machine): the stop
    killed chromedriver and reaped it, Selenium's start read the lost status as 0, "still running",
    and polled its port 70 times: the run exited after 32 s. Now at once, nothing left."""
    from agentroute.web.env import find_chromium

    _, driver = find_chromium()
    slow = tmp_path / "slow-chromedriver"
    slow.write_text(f'#!/bin/sh\nsleep 3\nexec {driver} "$@"\n')
    slow.chmod(0o755)
    proc = _web_cli(short_tmp, "--tasks", "click-test", "--episodes", "5", "--router", "always-skill",
                    MINIWOB_CHROMEDRIVER=str(slow))  # fmt: skip
    deadline = time.monotonic() + 90
    while not _browser_folders(short_tmp) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # chromedriver started, not answering yet
    assert proc.poll() is None, proc.communicate()[0]
    out, took = _stop(proc, signal.SIGINT, group=group)
    left = still_running(proc.pid)
    assert proc.returncode == 130, out
    assert took < STOP_S, f"exited {took:.1f} s after SIGINT"
    assert "Traceback" not in out, out
    assert left == [] and _browser_folders(short_tmp) == []


@browser
def test_sigterm_stops_run_web_and_closes_every_browser(chromium, short_tmp) -> None:
    """SIGTERM to `agentroute run web` alone (`kill`, `timeout`, a job manager): exit 143 with every
    Chromium closed and no temp folder (Python's default SIGTERM left 40 browser processes running)."""
    proc = _web_cli(short_tmp, "--tasks", "click-test", "--episodes", "200", "--concurrency", "2", "--router", "always-skill")
    deadline = time.monotonic() + 90
    while not _browser_folders(short_tmp) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(3)
    assert proc.poll() is None, proc.communicate()[0]
    out, took = _stop(proc, signal.SIGTERM, group=False)
    left = still_running(proc.pid)
    assert proc.returncode == 143, out
    assert took < STOP_S, f"exited {took:.1f} s after SIGTERM"
    assert "stopped by SIGTERM" in out and "Traceback" not in out
    assert left == [] and _browser_folders(short_tmp) == []

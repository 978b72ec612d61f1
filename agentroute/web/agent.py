"""The web agent: a LangGraph loop over a MiniWoB episode whose every action is a routed step.

::

    START ─► observe ─► act ─┬─► observe …       (the episode goes on)
                             └─► END             (reward, step limit, budget out, browser lost)

*observe* renders the page (utterance + one line per element + previous actions + digest).
*act* is one :meth:`Dispatcher.step <agentroute.dispatch.Dispatcher.step>` of role ``navigator``:
the router picks an agent among the legal, affordable ones — the $0 DOM skill, SmolLM2 direct or
cot, any other pool card — and its answer passes one postcondition, :class:`ExecuteAction`, which
parses it with the strict grammar of :mod:`agentroute.web.actions`, checks it against the page
and runs it in the browser. The dispatcher records a step only after its postconditions, so the
step in the memory carries the browser's verdict: an unparsable or illegal answer is a failed,
audited step whose cost was charged (and, under ``cascade``, escalates to the next agent within
the same step); the step that ends the episode carries the MiniWoB reward as ``Step.score``.

The browser runtime (session, dispatcher run, history) travels in
``config["configurable"]["episode"]``, so one compiled graph serves every episode.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from langchain_core.runnables import RunnableConfig

from agentroute.budget import Budget
from agentroute.dispatch.dispatcher import Dispatcher, TaskRun
from agentroute.errors import ConfigurationError
from agentroute.memory.base import MemoryStore
from agentroute.pool.backends.base import Backend
from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool
from agentroute.routers.base import Router
from agentroute.types import AuditEvent, Completion, CompletionRequest, Step, TaskStatus
from agentroute.web.actions import Action, check_action, parse_action
from agentroute.web.dom import Page, render
from agentroute.web.env import (
    BrowserCrashedError,
    MiniWoBSession,
    Outcome,
    check_miniwob_url,
    check_tasks,
    page_load_timeout,
)
from agentroute.web.routers import WebPolicy, web_policy
from agentroute.web.skill import SKILL_BACKEND, SKILL_MODEL, DomSkillBackend, skill_card

log = logging.getLogger(__name__)

ROLE = "navigator"
MAX_TOKENS = 32
STAGE = "act"
GRAPH = "web_agent"

PROMPT = 'You act on a web page. Reply with one action: click(ID) or type(ID, "text") or key(Enter) or done()'

#: Worked examples, sent to model agents as earlier chat turns (:class:`FewShotBackend`).
#: As turns, SmolLM2-135M answers in the grammar on 12 of 17 real pages (10 legal); as text inside
#: the system prompt, on 1 of 17 (``benchmarks/web_agent.py --profile`` measures it).
SHOTS: tuple[tuple[str, str], ...] = (
    ('Task: Click on the "Yes" button.\n[4] button "No"\n[5] button "Yes"\nDone: none\nAnswer:', "click(5)"),
    (
        'Task: Enter "Mia" into the text field and press Submit.\n[6] input_text\n[7] button "Submit"\n'
        "Done: none\nAnswer:",
        'type(6, "Mia")',
    ),
    (
        'Task: Enter "Mia" into the text field and press Submit.\n[6] input_text value="Mia"\n'
        '[7] button "Submit"\nDone: type(6, "Mia")\nAnswer:',
        "click(7)",
    ),
)


def with_shots(request: CompletionRequest, shots: Sequence[tuple[str, str]] = SHOTS) -> CompletionRequest:
    """``request`` with ``shots`` as user/assistant turns between its system message and the rest."""
    msgs = list(request.messages)
    head = msgs[:1] if msgs and msgs[0].get("role") == "system" else []
    turns = [
        {"role": role, "content": text}
        for user, answer in shots
        for role, text in (("user", user), ("assistant", answer))
    ]
    return dataclasses.replace(request, messages=[*head, *turns, *msgs[len(head) :]])


class FewShotBackend(Backend):
    """A model backend whose requests carry :data:`SHOTS` as user/assistant turns after the system message.

    A 135M chat model imitates earlier turns far better than instructions or examples inside one
    message. The turns are added before counting as well as before calling, so the ledger's
    worst case and the billed prompt tokens include them.
    """

    def __init__(self, inner: Backend, shots: Sequence[tuple[str, str]] = SHOTS):
        self.inner, self.shots = inner, tuple(shots)
        self.name, self.blocks = inner.name, inner.blocks

    def expand(self, request: CompletionRequest) -> CompletionRequest:
        return with_shots(request, self.shots)

    async def complete(self, request: CompletionRequest, card: ModelCard) -> Completion:
        return await self.inner.complete(self.expand(request), card)

    def count_tokens(self, text: str, card: ModelCard) -> int:
        return self.inner.count_tokens(text, card)

    def prompt_tokens(self, request: CompletionRequest, card: ModelCard) -> int:
        return self.inner.prompt_tokens(self.expand(request), card)

    async def aprompt_tokens(self, request: CompletionRequest, card: ModelCard) -> int:
        return await self.inner.aprompt_tokens(self.expand(request), card)

    def worst_case_usd(
        self, request: CompletionRequest, card: ModelCard, prompt_tokens: int | None = None
    ) -> float:
        return self.inner.worst_case_usd(self.expand(request), card, prompt_tokens)

    async def preload(self, card: ModelCard) -> object:
        return await self.inner.preload(card)

    async def aclose(self) -> None:
        await self.inner.aclose()


def reward_score(reward: float) -> float:
    """The task score stored in the memory: MiniWoB's reward clipped to [0, 1] (failure is 0).

    >>> reward_score(-1.0), reward_score(0.9946)
    (0.0, 0.9946)
    """
    return max(0.0, min(1.0, float(reward)))


def web_pool(
    pool: ModelPool | str | None = None,
    *,
    strategies: Sequence[str] = ("direct", "cot"),
    shots: bool = True,
) -> ModelPool:
    """The DOM skill's $0 card followed by the model cards.

    ``None`` or ``"default"``: the default local pool (SmolLM2-135M) restricted to ``strategies``
    (an ``sc@3`` step of a 135M model is too slow for an interactive page); a path or a
    :class:`ModelPool`: its cards as they are, served by its backends. ``shots``: model backends
    send :data:`SHOTS` as earlier chat turns (:class:`FewShotBackend`).
    """
    default = pool in (None, "", "default")
    base = pool if isinstance(pool, ModelPool) else ModelPool.load(pool)  # type: ignore[arg-type]
    cards = []
    for card in base:
        if default:
            kept = tuple(s for s in card.strategies if s in strategies) or card.strategies[:1]
            card = card.model_copy(update={"strategies": kept})
        cards.append(card)
    # the given pool's backend instances come along (a loaded model, a scripted test backend),
    # each behind the few-shot turns when ``shots`` is on
    backends: dict[str, Backend] = {}
    for card in base:
        inner = base.backend(card.id)
        backends[card.backend] = (
            FewShotBackend(inner) if shots and not isinstance(inner, DomSkillBackend) else inner
        )
    backends[SKILL_BACKEND] = DomSkillBackend()
    return ModelPool([skill_card(), *cards], backends=backends)


class WebState(TypedDict, total=False):
    """The LangGraph state of one episode."""

    task: str
    seed: int
    observation: str
    digest: str
    steps: int
    reward: float
    status: str


@dataclass
class Episode:
    """The live runtime of one episode (not checkpointable: it holds a browser)."""

    task: str
    seed: int
    session: MiniWoBSession
    run: TaskRun
    page: Page
    max_steps: int
    screenshots: Path | None = None
    history: list[str] = field(default_factory=list)
    steps: int = 0
    reward: float = 0.0
    raw_reward: float = 0.0
    done: bool = False
    acted: bool = False
    crashed: str | None = None
    stopped: bool = False  # a stop killed the browser mid-action: the episode is the stop's
    browser_ms: list[float] = field(default_factory=list)

    def shot(self, label: str) -> None:
        if self.screenshots is not None:
            self.session.screenshot(self.screenshots / f"{self.task}-seed{self.seed}-{label}.png")


class ExecuteAction:
    """Postcondition of an act step: its answer is one legal action, and the browser ran it.

    Raises :class:`~agentroute.web.actions.ActionError` for an unparsable or illegal answer and
    :class:`~agentroute.web.env.BrowserCrashedError` when the browser died (the dispatcher fails
    the step and audits the reason; one that a stop killed ends the step as the stop's cancel
    does). At most one action runs per step: when a router escalates after an executed attempt,
    the later attempt fails instead of acting on a stale page.

    The browser runs the action in a worker thread (:meth:`MiniWoBSession.off_loop`), so the event
    loop stays free: at the task's ``seconds`` deadline the dispatcher cancels the check, the
    browser is killed, and the episode ends ``budget_exhausted``; Ctrl-C stops it at once.
    """

    __name__ = "legal_action_executed"

    def __init__(self, episode: Episode):
        self.episode = episode

    async def __call__(self, step: Step) -> bool:
        ep = self.episode
        if ep.acted:
            raise RuntimeError("an earlier attempt of this step already acted on the page")
        action: Action = check_action(parse_action(step.output), ep.page.refs, ep.page.typeable_refs)
        ep.acted = True
        label = f"step{ep.steps + 1:02d}"

        def act() -> Outcome:  # in a worker thread: a hung page blocks neither the loop nor the deadline
            outcome = ep.session.execute(action)
            ep.shot(label)
            return outcome

        started = time.perf_counter()
        try:
            outcome = await ep.session.off_loop(act, str(action))
        except BrowserCrashedError as exc:
            ep.browser_ms.append((time.perf_counter() - started) * 1000)
            if await stop_killed(ep.session):  # the episode ends as the stop's cancel ends it
                ep.stopped = True
                raise asyncio.CancelledError from None
            ep.crashed = str(exc)
            raise
        ep.browser_ms.append((time.perf_counter() - started) * 1000)
        ep.history.append(str(action))
        if outcome.done:
            ep.done, ep.reward, ep.raw_reward = True, outcome.reward, outcome.raw_reward
            step.score = reward_score(outcome.reward)
        else:
            ep.page = outcome.page or ep.page
        return True


#: Seconds the start of an episode whose kept browser died waits to learn whether a stop (Ctrl-C,
#: SIGTERM, a cancel) killed it: the signal reaches the browser and the program's handler together,
#: and the handler may run a moment after the browser's command failed.
STOP_GRACE_S = 1.0


def stopped_browser(session: MiniWoBSession) -> bool:
    """Whether a stop (Ctrl-C, SIGTERM, a cancel, a shutdown) killed the browser of ``session`` whose
    command just failed, waiting up to :data:`STOP_GRACE_S` for it to be noted (blocks: call it in a
    worker thread). The one rule that tells a stop's kill from a lost browser."""
    return session.stopped(within_s=STOP_GRACE_S)


async def stop_killed(session: MiniWoBSession) -> bool:
    """:func:`stopped_browser` asked off the loop, before a browser's failure is recorded as its
    episode's: true, the episode ends as the stop's cancel ends it (not recorded at its start,
    ``interrupted`` after). The stop's handler may run a moment after the failure reached the
    episode (or its cancel was lost as the command failed: ``asyncio.wait_for`` on 3.11, which
    ``off_loop`` no longer uses): the failure alone would have been recorded, and the run played on."""
    return await asyncio.to_thread(stopped_browser, session)


def _start(session: MiniWoBSession, seed: int) -> Page:
    """The first page of an episode. A browser kept from an earlier episode that died in between
    (killed, crashed while a model was thinking) is replaced by a fresh one once, instead of failing
    an episode that never started. One that a stop killed is not: the stop's cancel ends the episode."""
    kept = session.running
    try:
        return session.open().reset(seed)
    except BrowserCrashedError as exc:
        if not kept or stopped_browser(session):
            raise
        log.warning("the browser of %r was lost (%s); starting a fresh one", session.task, exc)
        return session.open().reset(seed)


def _episode(config: RunnableConfig) -> Episode:
    return config["configurable"]["episode"]


def build_web_graph(
    dispatcher: Dispatcher,
    skill: DomSkillBackend,
    *,
    models: Sequence[str] | None = None,
    max_tokens: int | None = None,
) -> Any:
    """The compiled LangGraph ``StateGraph`` of an episode (observe → act → … → END)."""
    from langgraph.graph import END, START, StateGraph

    models = tuple(models) if models is not None else None

    def observe(state: WebState, config: RunnableConfig) -> dict[str, Any]:
        ep = _episode(config)
        page = ep.page.with_history(ep.history)
        skill.remember(page)
        return {"observation": render(page), "digest": page.digest}

    async def act(state: WebState, config: RunnableConfig) -> dict[str, Any]:
        ep = _episode(config)
        ep.acted = False
        step = await dispatcher.step(
            ep.run,
            role=ROLE,
            stage=STAGE,
            prompt=PROMPT,
            input=f"{state['observation']}\nAnswer:",
            models=models,
            max_tokens=max_tokens,
            postconditions=[ExecuteAction(ep)],
        )
        if step is not None:
            ep.steps += 1
        if ep.crashed:
            status = "failed"
        elif ep.done:
            status = "done"
        elif step is None or ep.run.exhausted:
            status = ep.run.stop_status
        elif ep.steps >= ep.max_steps:
            status = "step_limit"
        else:
            status = "running"
        return {"steps": ep.steps, "reward": ep.reward, "status": status}

    def after_act(state: WebState) -> str:
        return "observe" if state.get("status") == "running" else END

    builder = StateGraph(WebState)
    builder.add_node("observe", observe)
    builder.add_node("act", act)
    builder.add_edge(START, "observe")
    builder.add_edge("observe", "act")
    builder.add_conditional_edges("act", after_act, ["observe", END])
    return builder.compile()


@dataclass
class EpisodeResult:
    """One finished episode."""

    task: str
    seed: int
    task_id: str
    status: str  # done (the page ended it, done(), or the step limit), budget_exhausted, failed
    reward: float  # MiniWoB's reward (time-discounted, -1 … 1; 0 when it never ended)
    success: bool
    steps: int
    cost_usd: float
    agents: Counter[str]
    seconds: float
    browser_ms: list[float]
    step_ms: list[float]
    failed_steps: int
    error: str | None = None
    actions: list[str] = field(default_factory=list)
    step_models: list[str] = field(default_factory=list)  # the model of each recorded step (with step_ms)

    @property
    def score(self) -> float:
        return reward_score(self.reward)


class WebAgent:
    """Runs MiniWoB episodes with every action routed through one :class:`Dispatcher`.

    Args:
        router: a preset of :mod:`agentroute.web.routers` (``cascade``, ``always-skill`` …), a
            registered router name or saved router directory, or a :class:`Router`.
        pool: the model pool (default: SmolLM2-135M direct + cot), its YAML path, or a pool;
            the DOM skill's $0 card is always added first.
        memory: where tasks, steps and audit events go.
        budget: the per-episode :class:`Budget` (any of usd, calls, large_calls, seconds, tokens).
        max_steps: act steps per episode; an episode that uses them all unsolved ends ``done`` with score 0.
        headless: run Chromium without a window.
        screenshots: a directory for a PNG after the reset and after each action.
        max_tokens: per-call output limit of the model agents (``direct`` gets half): 32 by
            default, room for ``type(ID, "a few words")`` (an action is 5–12 tokens).
        page_load_timeout_s: seconds a task page may take to load before its episode fails
            (default ``$AGENTROUTE_WEB_PAGE_LOAD_S``, else 30; a bad value is refused here).
        miniwob_url: the base URL of a MiniWoB++ server of your own (``http://host:port/miniwob/``,
            whose ``<task>.html`` are the pages); default: the pages the ``miniwob`` package ships.
    """

    def __init__(
        self,
        *,
        router: str | Router = "cascade",
        pool: ModelPool | str | None = None,
        memory: MemoryStore | None = None,
        budget: Budget | None = None,
        max_steps: int = 8,
        headless: bool = True,
        screenshots: str | Path | None = None,
        max_tokens: int | None = MAX_TOKENS,
        page_load_timeout_s: float | None = None,
        miniwob_url: str | None = None,
    ):
        # a bad value is refused before anything starts
        self.page_load_timeout_s = page_load_timeout(page_load_timeout_s)
        self.miniwob_url = check_miniwob_url(miniwob_url) if miniwob_url is not None else None
        self.pool = web_pool(pool)
        self.skill: DomSkillBackend = self.pool.backend(SKILL_MODEL)  # type: ignore[assignment]
        if isinstance(router, Router):
            self.policy = WebPolicy(router.name, router, None, 2)
        else:
            self.policy = web_policy(router, self.pool, role=ROLE)
        self.dispatcher = Dispatcher(
            self.pool, self.policy.router, memory=memory, max_fallbacks=self.policy.max_fallbacks
        )
        self.budget, self.max_steps, self.headless = budget, max_steps, headless
        self.screenshots = Path(screenshots) if screenshots else None
        if self.screenshots is not None:  # before any episode starts: a bad path is the caller's to fix
            try:
                self.screenshots.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigurationError(
                    f"screenshots folder {str(self.screenshots)!r} cannot be created: {exc.strerror or exc}"
                ) from None
        self.graph = build_web_graph(
            self.dispatcher, self.skill, models=self.policy.models, max_tokens=max_tokens
        )
        self._sessions: dict[str, MiniWoBSession] = {}
        self._preloaded = False

    def session(self, task: str, slot: int = 0) -> MiniWoBSession:
        """The browser of worker ``slot`` on ``task``: kept across its episodes of that task, closed
        when the worker moves to another task (one browser per worker at a time)."""
        key = f"{slot}/{task}"
        session = self._sessions.get(key)
        if session is None:
            for other in [k for k in self._sessions if k.startswith(f"{slot}/")]:
                self._sessions.pop(other).close()
            session = self._sessions[key] = MiniWoBSession(
                task,
                headless=self.headless,
                page_load_timeout_s=self.page_load_timeout_s,
                miniwob_url=self.miniwob_url,
            )
        return session

    async def run_many(
        self,
        episodes: Sequence[tuple[str, int]],
        *,
        concurrency: int = 1,
        on_done: Callable[[EpisodeResult], None] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> list[EpisodeResult]:
        """Play ``(task, seed)`` episodes, ``concurrency`` at a time (one browser each); input order.
        ``metadata`` goes into every episode's task (``agentroute run web`` puts its batch id there).

        Every task name is checked before the first episode (:class:`UnknownTaskError`). When one
        worker raises (``on_done`` did, say), the others are cancelled — their episodes in flight end
        ``interrupted`` — before the error reaches the caller: none goes on playing unseen."""
        if episodes:
            await asyncio.to_thread(check_tasks, sorted({task for task, _ in episodes}))
        results: list[EpisodeResult | None] = [None] * len(episodes)
        todo = iter(enumerate(episodes))

        async def worker(slot: int) -> None:
            for i, (task, seed) in todo:
                results[i] = result = await self.run_episode(task, seed, slot=slot, metadata=metadata)
                if on_done is not None:
                    on_done(result)

        workers = [asyncio.ensure_future(worker(w)) for w in range(max(1, min(concurrency, len(episodes))))]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        return results  # type: ignore[return-value]

    async def run_episode(
        self,
        task: str,
        seed: int,
        *,
        budget: Budget | None = None,
        slot: int = 0,
        metadata: dict[str, Any] | None = None,
    ) -> EpisodeResult:
        """Play one episode of ``task`` with ``seed``; never raises for browser or budget failures.

        The task's metadata in the memory: ``metadata``, then env, task, seed and router, and once
        the episode ends its MiniWoB ``reward``, ``success`` and act ``steps``."""
        if not self._preloaded:  # load the models before the page's episode timer starts
            await self.preload()
        started = time.perf_counter()
        session = await asyncio.to_thread(self.session, task, slot)
        meta: dict[str, Any] = {
            **(metadata or {}),
            "env": "miniwob",
            "task": task,
            "seed": seed,
            "router": self.policy.name,
        }
        try:
            page = await session.starting(lambda: _start(session, seed))  # Ctrl-C kills a loading browser
        except BrowserCrashedError as exc:
            if await stop_killed(session):  # unrecorded, as the stop's cancel leaves it
                raise asyncio.CancelledError from None
            run = self.dispatcher.start(
                f"[{task}]",
                budget=budget or self.budget,
                graph=GRAPH,
                task_type=task,
                query_id=f"miniwob/{task}/{seed}",
                metadata={**meta, "error": str(exc)},
            )
            if self.dispatcher.memory is not None:  # why it failed, where `agentroute memory show` looks
                self.dispatcher.memory.record_audit(
                    AuditEvent(
                        task_id=run.task.id,
                        stage=STAGE,
                        kind="step_failed",
                        subject="browser",
                        detail=str(exc),
                    )
                )
            task_record = self.dispatcher.finish(run, status="failed", score=0.0)
            return EpisodeResult(
                task,
                seed,
                task_record.id,
                "failed",
                0.0,
                False,
                0,
                0.0,
                Counter(),
                time.perf_counter() - started,
                [],
                [],
                0,
                str(exc),
            )
        run = self.dispatcher.start(
            f"[{task}] {page.utterance}",
            budget=budget or self.budget,
            graph=GRAPH,
            task_type=task,
            task_id=uuid.uuid4().hex,
            query_id=f"miniwob/{task}/{seed}",
            metadata=meta,
        )
        ep = Episode(task, seed, session, run, page, self.max_steps, self.screenshots)
        error = None
        try:  # from here on a cancel closes the task it started (it stayed `running` otherwise)
            # a browser command: not on the loop the other episodes share
            await asyncio.to_thread(ep.shot, "step00")
            await self.graph.ainvoke(
                {"task": task, "seed": seed, "steps": 0, "reward": 0.0, "status": "running"},
                {"configurable": {"episode": ep}, "recursion_limit": 4 * self.max_steps + 10},
            )
        except BaseException as exc:
            # Ctrl-C, SIGTERM or the caller's cancel (also one whose kill of the browser mid-action
            # reached the episode first: LangGraph hands that on as its NodeCancelledError)
            cancelled = isinstance(exc, asyncio.CancelledError | KeyboardInterrupt)
            if not (cancelled or ep.stopped):
                if not isinstance(exc, Exception):
                    raise
                error = f"{type(exc).__name__}: {exc}"  # a bug in a node must not stop the batch: it fails
            else:
                # closed in the memory with what its steps cost (it stayed `running` at $0 otherwise),
                # then the interruption goes on
                self.dispatcher.finish(
                    run,
                    answer="; ".join(ep.history),
                    status="done" if ep.done else "interrupted",
                    score=reward_score(ep.reward) if ep.done else None,  # stopped from outside: no outcome
                )
                if cancelled:
                    raise
                raise asyncio.CancelledError from None
        status: TaskStatus
        if ep.crashed or error:
            status = "failed"
            session.close()
        elif ep.done:
            status = "done"
        elif run.exhausted:
            status = "budget_exhausted"
        elif ep.steps >= self.max_steps:
            # the agents played every step without solving the page: an outcome (score 0), as when
            # MiniWoB's own timer ends it, so `agentroute train --from` learns from it (it never
            # trains on `failed` tasks, which it keeps for errors: a dead browser, a blocked step)
            status = "done"
        else:
            status = "failed"  # a blocked step
        success = ep.done and ep.raw_reward > 0
        run.task.metadata.update(reward=ep.reward, success=success, steps=ep.steps)
        record = self.dispatcher.finish(
            run, answer="; ".join(ep.history), status=status, score=reward_score(ep.reward)
        )
        steps = run.steps
        return EpisodeResult(
            task=task,
            seed=seed,
            task_id=record.id,
            status=status,
            reward=ep.reward,
            success=success,
            steps=ep.steps,
            cost_usd=record.cost_usd,
            agents=Counter(
                s.agent.model if s.agent.strategy == "direct" else f"{s.agent.model}:{s.agent.strategy}"
                for s in steps
            ),
            seconds=time.perf_counter() - started,
            browser_ms=ep.browser_ms,
            step_ms=[s.latency_ms for s in steps],
            failed_steps=sum(s.status != "ok" for s in steps),
            error=ep.crashed or error,
            actions=list(ep.history),
            step_models=[s.agent.model for s in steps],
        )

    async def preload(self) -> None:
        """Load the pool's local models now (:meth:`run_episode` does it before its first episode:
        counting a prompt's tokens already needs the model's tokenizer)."""
        self._preloaded = True
        for card in self.pool:
            if card.backend != SKILL_BACKEND and (
                self.policy.models is None or card.id in self.policy.models
            ):
                await self.pool.backend(card.id).preload(card)

    def close(self) -> None:
        """Close every browser, also one an interrupted episode is still starting in its thread."""
        sessions = list(self._sessions.values())
        self._sessions.clear()
        for session in sessions:
            session.shutdown()

    async def aclose(self) -> None:
        """Close every browser, then the pool's backends."""
        await asyncio.to_thread(self.close)
        await self.pool.aclose()

    def __enter__(self) -> WebAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> WebAgent:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

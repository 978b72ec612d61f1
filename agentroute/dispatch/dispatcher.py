"""The dispatcher: the path of one step.

::

    task context ──► stage machine: is this stage/role legal now?        (blocked → audit event)
                 ──► ledger: which candidate agents are affordable now?   (worst case ≤ remaining)
                 ──► router.route(context) → Decision
                 ──► ledger.reserve(worst case) ──► memory.reserve_attempt (durable before the call)
                 ──► backend call (retry, then fallback, within budget)
                 ──► postconditions ──► ledger.settle(actual) ──► memory.record(step)
                 ──► router.observe(step)

One place enforces each rule: legality here via the :class:`StageMachine`, affordability in the
:class:`~agentroute.budget.Ledger`, choice in the router, persistence in the memory. Routers never
see an illegal or unaffordable candidate, so no router can break the budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import logging
import operator
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, NamedTuple, Protocol, TypeVar

from agentroute.budget import Attempt, Budget, Cost, Ledger
from agentroute.dispatch.options import RequestOptions, nth_seed
from agentroute.dispatch.run import TaskRun
from agentroute.dispatch.skills import SkillBlocked, SkillRegistry
from agentroute.dispatch.stages import StageMachine
from agentroute.errors import BackendError, BudgetExceededError, ConfigurationError, ProtocolError
from agentroute.memory.base import MemoryStore
from agentroute.pool.backends.base import Backend, Pulse, stream_pulse, token_sink, worst_case_of
from agentroute.pool.backends.streaming import TOOL_FIELDS
from agentroute.pool.backends.usage import with_usage
from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool
from agentroute.routers.base import Router
from agentroute.strategies import Strategy, get_strategy
from agentroute.types import (
    Agent,
    AuditEvent,
    Completion,
    CompletionRequest,
    Decision,
    RouteContext,
    Step,
    Task,
    TaskStatus,
    check_role,
    finite_number,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: A check of a step's output, run before the step is recorded: ``True`` keeps it, ``False`` or a
#: raise fails it (audited). It may return an awaitable (an ``async def`` check, a worker thread's
#: call): the dispatcher awaits it, cut at the task's ``seconds`` deadline — the step then fails,
#: the task is exhausted, and the check is cancelled (its ``CancelledError`` handler cleans up).
Postcondition = Callable[[Step], "bool | Awaitable[bool]"]


class _Candidate(NamedTuple):
    """What never changes about an agent between steps: its card, strategy, backend and limits."""

    agent: Agent
    key: str
    card: ModelCard
    strategy: Strategy
    backend: Backend
    max_tokens: int
    large_calls: float  # 1.0 on a large-tier card: what one attempt takes of ``large_calls``
    shared_count: bool  # the backend counts prompt tokens the same way for every card
    single: bool  # one sample: awaited in the step's own task (no gather, no extra turns of the loop)
    direct: bool  # the backend answers without I/O: no timeout task is needed
    asks: bool  # the endpoint can count prompt tokens itself (a vLLM server's /tokenize)
    model: str  # the name the backend is called with
    priced_by_card: bool  # the backend's worst case is the card's price of the counted tokens
    worst_case: Callable[[CompletionRequest, ModelCard], tuple[int, float]]  # worst_case_of(backend)


class _Plan(NamedTuple):
    """One candidate for this step: its request and the worst case of running it."""

    agent: Agent
    key: str
    card: ModelCard
    strategy: Strategy
    backend: Backend
    request: CompletionRequest
    worst: Cost  # the whole step: every sample of the strategy
    sample: Cost  # one provider attempt
    card_usd: float
    single: bool  # one sample: awaited in the step's own task
    direct: bool  # the backend answers without I/O: no timeout task is needed
    asks: bool
    candidate: _Candidate


def _plan_of(c: _Candidate, request: CompletionRequest, tokens_in: int, usd: float | None = None) -> _Plan:
    """The candidate's plan for ``request``, whose prompt takes ``tokens_in``: its worst cases and
    the card-priced step cost routers see.

    One attempt: prompt tokens × input price + ``max_tokens`` × output price (``usd`` when the
    backend priced it already), one call (a large one on a large-tier card); the step: ``samples``
    attempts.
    """
    max_tokens = c.max_tokens  # the request's: every request of the candidate asks for it
    card_usd = c.card.usd(tokens_in, max_tokens)
    if usd is None:
        usd = card_usd if c.priced_by_card else c.backend.worst_case_usd(request, c.card, tokens_in)
    sample = _cost((usd, tokens_in + max_tokens, 1.0, 0.0, c.large_calls))
    if c.single:
        worst = sample
    else:
        samples = c.strategy.samples
        worst, card_usd = _cost([a * samples for a in sample]), card_usd * samples
    return _plan(
        (
            c.agent,
            c.key,
            c.card,
            c.strategy,
            c.backend,
            request,
            worst,
            sample,
            card_usd,
            c.single,
            c.direct,
            c.asks,
            c,
        )
    )


def _sample(plan: _Plan, index: int) -> _Plan:
    """The plan of sample ``index`` of a several-sample strategy: with a seed, its own
    (:func:`~agentroute.dispatch.options.nth_seed`), so that the samples still differ."""
    seed = plan.request.seed
    if seed is None or index == 0:
        return plan
    return plan._replace(request=dataclasses.replace(plan.request, seed=nth_seed(seed, index)))


#: The router hooks the base class defines as doing nothing (a step skips them).
_IDLE_HOOKS: dict[str, Callable[..., Any]] = {"observe": Router.observe, "escalate": Router.escalate}

#: ``Cost`` from a sequence of its five amounts, without the named tuple's Python ``__new__``.
_cost: Callable[[Iterable[float]], Cost] = functools.partial(tuple.__new__, Cost)  # type: ignore[assignment]
#: ``_Plan`` from a sequence of its fields, the same way (one per candidate and step).
_plan: Callable[[Iterable[Any]], _Plan] = functools.partial(tuple.__new__, _Plan)  # type: ignore[assignment]
# A plan's fields as C getters: a step reads them without a Python comprehension (a frame and its code).
_worst_of = operator.attrgetter("worst")
_agent_of = operator.attrgetter("agent")
_key_and_usd = operator.attrgetter("key", "card_usd")
_cost_usd_of = operator.attrgetter("cost_usd")  # of a Step


class _CutOff(TimeoutError):
    """An attempt cut by :func:`call_within`: at the task's deadline, or after ``timeout_s`` of silence."""

    def __init__(self, message: str, *, deadline: bool, streamed: bool):
        super().__init__(message)
        self.deadline, self.streamed = deadline, streamed


async def call_within(call: Coroutine[Any, Any, T], timeout: float, left: float | None = None) -> T:
    """``call``'s result, or :class:`_CutOff` (a :class:`TimeoutError`) when it is cut: at the
    deadline ``left`` seconds from now, or once it showed no life for ``timeout`` seconds.

    A call shows life when it starts and with each streamed chunk that carries text
    (:data:`stream_pulse`): ``timeout`` bounds a plain call as a whole, and a streamed one's wait
    for its first chunk and each gap between two; a stream whose chunks keep coming runs on to its
    ``max_tokens`` (where the backend cuts it) or to the deadline.

    Unlike :func:`asyncio.wait_for`, a call that times out is cancelled and left to finish its
    cancellation (closing a stream, releasing a connection) on its own: on a busy event loop each of
    those awaits costs a whole turn of the loop, and the deadline must not wait for them.
    """
    pulse = Pulse(time.monotonic())
    start = pulse.at
    token = stream_pulse.set(pulse)
    task = asyncio.ensure_future(call)  # the call's task copies this context: its stream sees the pulse
    stream_pulse.reset(token)
    wait = timeout if left is None else min(timeout, left)
    try:
        done, _ = await asyncio.wait((task,), timeout=max(wait, 0.001))
        while not done and pulse.at != start:  # chunks came: wait for the next, or for the deadline
            now = time.monotonic()
            idle = pulse.at + timeout - now
            wait = idle if left is None else min(idle, start + left - now)
            if wait <= 0:
                break
            done, _ = await asyncio.wait((task,), timeout=wait)
    except BaseException:
        task.cancel()
        raise
    if done:
        return task.result()
    task.cancel()
    task.add_done_callback(_retrieve)
    streamed = pulse.at != start
    deadline = left is not None and (left <= timeout if not streamed else start + left <= pulse.at + timeout)
    if deadline:
        raise _CutOff(f"cut off at the task's deadline after {left:.3f}s", deadline=True, streamed=streamed)
    if streamed:
        raise _CutOff(f"the stream was silent for {timeout:g}s", deadline=False, streamed=True)
    raise _CutOff(f"no reply after {timeout:g}s", deadline=False, streamed=False)


async def _watched(plan: _Plan, timeout: float, left: float | None, seen: AttemptWatch) -> Completion:
    """The backend's completion, with the answer's pieces sent to ``seen`` as they arrive."""
    sink = token_sink.set(seen.token)  # the call's task copies this context: its backend sees the sink
    try:
        call = plan.backend.complete(plan.request, plan.card)
        return await (call if plan.direct else call_within(call, timeout, left))
    finally:
        token_sink.reset(sink)


def _with_usage(plan: _Plan, completion: Any) -> Completion:
    """A backend's answer with the usage it did not report counted (a backend of the user's:
    :func:`~agentroute.pool.backends.usage.with_usage`); anything but a :class:`Completion` is the
    backend's bug (``TypeError``), charged as billed like any other; tool calls not in OpenAI's
    shape are a :class:`ProtocolError` (:func:`check_tool_calls`), as a bad usage is."""
    if not isinstance(completion, Completion):
        raise TypeError(
            f"{type(plan.backend).__name__}.complete returned {type(completion).__name__}, not a Completion"
        )
    check_tool_calls(completion, plan.card.id)
    if completion.cost_usd is None or completion.tokens_in is None or completion.tokens_out is None:
        return with_usage(completion, plan.backend, plan.request, plan.card)
    return completion


def check_tool_calls(completion: Completion, card_id: str) -> None:
    """:class:`ProtocolError` when ``completion``'s ``raw["tool_calls"]`` are not OpenAI's: a list of
    ``{"id": str, "type": "function", "function": {"name": str, "arguments": str}}`` or, for a
    custom tool, ``{"id": str, "type": "custom", "custom": {"name": str, "input": str}}`` (a user
    backend's own shape, or a call without an id, is a reply no client can read or answer). The one
    rule of every step, and of ``agentroute serve``'s direct and routed models (a 502 ``bad_upstream_reply``)."""
    if (problem := tool_calls_problem(completion.raw.get("tool_calls"))) is not None:
        raise ProtocolError(card_id, f"'tool_calls' {problem}")


def tool_calls_problem(calls: Any) -> str | None:
    """What keeps ``calls`` from being a message's OpenAI ``tool_calls`` (``None``: nothing; none
    at all is fine)."""
    if not calls:
        return None
    if not isinstance(calls, list):
        return f"is not a list (got {type(calls).__name__})"
    for index, call in enumerate(calls):
        if not isinstance(call, dict) or not isinstance(call.get("id"), str) or not call["id"]:
            return f'{index}: needs an "id", a non-empty string'
        kind = call.get("type")
        if not isinstance(kind, str) or kind not in TOOL_FIELDS:
            return f'{index}: "type" must be "function" or "custom" (got {kind!r})'
        body, field = call.get(kind), TOOL_FIELDS[kind][1]
        if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"]:
            return f'{index}: needs a "{kind}" with a "name", a non-empty string'
        if not isinstance(body.get(field), str):
            what = "a string of JSON" if kind == "function" else "a string"
            return f"{index}: {kind}.{field} must be {what} (got {type(body.get(field)).__name__})"
    return None


async def _all_by_deadline(tasks: list[asyncio.Future[T]], left: float | None) -> list[T]:
    """The results of ``tasks`` (as :func:`asyncio.gather`), read at the deadline without waiting a turn.

    Under a ``seconds`` limit every sample is cut at the same deadline. :func:`asyncio.gather` would
    see that only through the tasks' done-callbacks, two turns of the event loop later (each turn
    takes tens of milliseconds on a busy loop); waking at the deadline reads the samples as soon as
    they are done: the caller's timer is set just after the samples' own (their cut comes first in
    the turn both fire in). Cancelling the caller cancels the samples.
    """
    try:
        if left is not None:
            await asyncio.wait(tasks, timeout=max(left, 0.0) + 0.005)
            if all(t.done() for t in tasks):
                return [t.result() for t in tasks]
        return await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        raise


def _not_waiting(plans: list[_Plan], limited: dict[str, float]) -> list[_Plan]:
    """``plans`` without the models a server asked this task to leave alone for now (a long
    ``Retry-After``); all of them when every one is waiting (a refused call beats no call)."""
    now = time.monotonic()
    for model in [m for m, until in limited.items() if until <= now]:
        del limited[model]
    if not limited:
        return plans
    free = [p for p in plans if p.card.id not in limited]
    return free or plans


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a left-behind call's outcome as seen (no "exception was never retrieved" warning)."""
    if not task.cancelled():
        task.exception()


def _count_key(plan: _Plan) -> tuple[Any, ...]:
    """Plans sharing this key share one ``/tokenize`` count (the chat object is shared per strategy)."""
    return (id(plan.backend), plan.card.base_url, plan.card.backend_model, id(plan.request.messages))


class AttemptWatch(Protocol):
    """One provider attempt as callback handlers see it (a chat model's run)."""

    async def token(self, text: str) -> None: ...
    async def end(self, completion: Completion) -> None: ...
    async def error(self, reason: str) -> None: ...


class StepWatch(Protocol):
    """A routed step watched by callback handlers: each of its attempts is reported as it runs."""

    async def attempt(self, plan: Any, stage: str, index: int, attempt: int) -> AttemptWatch: ...


def _watching(watch: StepWatch | None, plan: _Plan) -> StepWatch | None:
    """The watch of a one-sample attempt: only that of a backend that streams tokens, unless the
    watch sets ``whole_replies = True`` (a served request: it keeps every backend's tool calls and
    finish reason)."""
    if watch is not None and (plan.backend.streams_tokens or getattr(watch, "whole_replies", False)):
        return watch
    return None


#: The functions that say who watches a step (``(run, role) -> StepWatch | None``), asked in turn
#: once per step, the first answer wins: :mod:`agentroute.graph_runtime` (LangGraph's callback
#: handlers) and :mod:`agentroute.serve.routed` (a served stream) add theirs. Empty: nobody.
_step_watchers: list[Callable[[TaskRun, str], StepWatch | None]] = []


def add_step_watcher(watcher: Callable[[TaskRun, str], StepWatch | None]) -> None:
    """Ask ``watcher`` too, once per step, whether it watches the step (each function once)."""
    if watcher not in _step_watchers:
        _step_watchers.append(watcher)


@functools.lru_cache(maxsize=1024)
def _fallback_decision(router: str, agent: Agent) -> Decision:
    return Decision(agents=[agent], weights=[1.0], router=router, why="router error: cheapest candidate")


class Dispatcher:
    """Runs the steps of tasks: legality, affordability, routing, calls, audit and memory.

    Args:
        pool: the models that may be called.
        router: chooses among legal, affordable agents.
        memory: where tasks, steps and audit events are recorded (optional).
        stage_machine: legal stages/transitions/intent bindings (optional: everything legal).
        retries: retries of a retryable backend error before falling back (backoff doubles).
        backoff_s: first retry delay.
        max_fallbacks: other agents tried after one fails for good.
        max_retry_wait_s: the longest wait a server may ask for before a retry (a 429's
            ``Retry-After``); a longer one, or one past the task's ``seconds`` deadline, is not
            waited: the step falls over to another agent at once.
    """

    #: A ``route`` call at least this slow moves the router's later calls to a worker thread.
    SLOW_ROUTE_S = 0.05

    def __init__(
        self,
        pool: ModelPool,
        router: Router,
        *,
        memory: MemoryStore | None = None,
        stage_machine: StageMachine | None = None,
        retries: int = 2,
        backoff_s: float = 0.2,
        max_fallbacks: int = 2,
        max_retry_wait_s: float = 60.0,
    ):
        router.check_fitted()
        pool.require_backends()  # a missing package is an error now, not a billed failure per task
        self.pool, self.router, self.memory, self.stage_machine = pool, router, memory, stage_machine
        self.retries, self.backoff_s, self.max_fallbacks = retries, backoff_s, max_fallbacks
        self.max_retry_wait_s = max_retry_wait_s
        self._candidates: dict[tuple[str, tuple[str, ...] | None, int | None], list[_Candidate]] = {}
        self._cards = {card.id: card for card in pool}
        self._system_prompts: dict[
            tuple[str, str], str
        ] = {}  # (strategy instruction, role prompt) → system prompt
        self._asking = False  # some candidate's endpoint counts prompt tokens itself (_ask_counts)
        self._route_off_loop = False
        self._slow_routes = 0

    # -- tasks ------------------------------------------------------------------------------
    def start(
        self,
        query: str,
        *,
        budget: Budget | None = None,
        graph: str = "",
        task_type: str | None = None,
        query_id: str | None = None,
        task_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> TaskRun:
        meta = dict(metadata or {})
        if query_id is not None:
            meta["query_id"] = query_id
        fields: dict[str, Any] = {"id": task_id} if task_id else {}
        task = Task(query=query, graph=graph, task_type=task_type, budget=budget, metadata=meta, **fields)
        run = TaskRun(task=task, ledger=Ledger(budget or None), context={"query": query})
        if self.memory is not None:
            self.memory.start_task(task)
        return run

    def finish(
        self,
        run: TaskRun,
        *,
        answer: str | None = None,
        status: TaskStatus | None = None,
        score: float | None = None,
        observe: bool = True,
    ) -> Task:
        """Close the task; nothing raises. ``answer`` left out: the best partial answer (the latest
        successful output), except for a ``failed`` task, whose answer stays empty — an earlier
        role's output (a planner's sub-questions) is no answer. :meth:`closing_status` is its status.
        ``observe=False`` records the task as it stands without telling the router it ended (its end
        comes later: a routed node of your own graph keeps the record up to date)."""
        task = run.task
        task.status = self.closing_status(run, status)
        task.answer = answer if answer is not None else None if task.status == "failed" else run.best_answer
        task.cost_usd = sum(map(_cost_usd_of, run.steps))
        if score is not None:
            task.score = score
        elif run.steps and run.steps[-1].score is not None:
            task.score = run.steps[-1].score
        if self.memory is not None:
            self.memory.finish_task(task)
        if observe and run.steps and (hook := self._hook("observe")) is not None:
            self._guarded(run, run.stage or "", "observe", hook, run.steps[-1], task)
        return task

    @staticmethod
    def closing_status(run: TaskRun, status: TaskStatus | None = None) -> TaskStatus:
        """The status :meth:`finish` gives the task: ``status``, else what its run came to."""
        return status or (run.stop_status if run.exhausted or run.failed else "done")

    # -- one step ---------------------------------------------------------------------------
    async def step(
        self,
        run: TaskRun,
        *,
        role: str,
        stage: str,
        prompt: str,
        input: str,
        models: Sequence[str] | None = None,
        max_tokens: int | None = None,
        query_id: str | None = None,
        postconditions: Iterable[Postcondition] = (),
        history: Sequence[tuple[str, str]] = (),
        temperature: float | None = None,
        options: RequestOptions | None = None,
    ) -> Step | None:
        """Run one routed step; ``None`` when blocked or when nothing affordable is left.

        A blocked step writes an audit event and returns ``None`` with ``run.failed`` set; an
        exhausted budget (or an overrun, or the deadline) sets ``run.exhausted``. A step whose
        every agent failed is returned with status ``failed`` (and recorded).

        ``history``: the earlier turns of a conversation, ``(role, text)`` with role ``user`` or
        ``assistant``, sent as chat messages between the system prompt and ``input`` (the step's
        input, the last turn); they count in every attempt's prompt tokens and worst case.
        ``temperature``: the caller's sampling temperature for one-sample strategies (``direct``,
        ``cot``; ``None``: the strategy's, 0); ``sc@K`` keeps its own, so that its samples differ.
        ``options``: provider fields every attempt's request carries (:class:`RequestOptions`); the
        caller checks that the candidates' backends take them
        (:func:`~agentroute.dispatch.options.refused_option`): a backend ignores those it does not name.
        """
        check_role(role)
        if self.stage_machine is not None and self._blocked(run, role, stage, self.stage_machine):
            return None
        run.stage = stage
        qid = query_id or run.task.metadata.get("query_id")
        plans = self._plans(run, role, prompt, input, models, max_tokens, qid, history, temperature, options)
        if self._asking and any(p.asks for p in plans):
            plans = await self._ask_counts(run, plans)
        post = tuple(postconditions)
        attempts: list[Step] = []
        excluded: set[str] = set()
        watch = None
        for watcher in _step_watchers:  # the first that watches the step (callback handlers listen)
            if (watch := watcher(run, role)) is not None:
                break
        while True:
            affordable = self._affordable(run, plans, excluded)
            if not affordable:
                if not attempts:
                    self._exhaust(
                        run,
                        stage,
                        role,
                        f"no affordable agent for {role!r}; remaining {run.ledger.remaining()}",
                    )
                    return None
                return attempts[-1]
            ctx = self._context(run, role, stage, input, affordable, attempts, qid)
            if self._route_off_loop:
                decision, chosen = await self._route(run, ctx, affordable)
            else:
                decision, chosen = self._route_now(run, ctx, affordable)
            if len(chosen) == 1:
                step = await self._run_agent(
                    run, ctx, decision, chosen[0], affordable, stage, input, post, excluded, watch
                )
            else:
                step = await self._collaborate(
                    run, ctx, decision, chosen, affordable, stage, input, post, excluded
                )
            attempts.append(step)
            if step.status != "ok" or run.exhausted:
                return step
            if (escalate := self._hook("escalate")) is None or not self._guarded(
                run, stage, "escalate", escalate, ctx, step
            ):
                return step
            excluded.add(step.agent.key)
            self._audit(run, stage, "fallback", step.agent.key, "escalated by router: low confidence")

    def _affordable(self, run: TaskRun, plans: list[_Plan], excluded: set[str]) -> list[_Plan]:
        if run.exhausted:  # an overrun or the deadline stopped the task's calls
            return []
        faulty = run.context.get("faulty_endpoints")
        limited = run.context.get("rate_limited")
        if excluded or faulty or limited:
            plans = [p for p in plans if p.key not in excluded and not (faulty and p.card.id in faulty)]
            if limited:
                plans = _not_waiting(plans, limited)
        fits = run.ledger.affordable_each(list(map(_worst_of, plans)))
        if all(fits):  # the common case: the budget is far from its limits
            return plans
        return [p for p, ok in zip(plans, fits, strict=True) if ok]

    def _exhaust(self, run: TaskRun, stage: str, subject: str, detail: str) -> None:
        run.exhausted = True
        self._audit(run, stage, "budget_blocked", subject, detail)

    def _blocked(self, run: TaskRun, role: str, stage: str, machine: StageMachine) -> bool:
        """Whether ``machine`` refuses the move to ``stage`` (audited, and the task fails)."""
        reason = machine.check(run.stage, stage, intent=role)
        if reason is None:
            return False
        run.failed = True
        self._audit(run, stage, "stage_blocked", role, reason)
        return True

    # -- skills -----------------------------------------------------------------------------
    async def use_skill(
        self, run: TaskRun, skills: SkillRegistry, skill: str, *, stage: str | None = None, **kwargs: Any
    ) -> Any:
        """Run ``skill`` for ``run`` in its current stage (or after a legal move to ``stage``).

        The stage machine checks the move, the registry checks the skill's stages, preconditions and
        postconditions against the run's context and actual stage; every block is audited and
        raised as :class:`~agentroute.dispatch.skills.SkillBlocked`.
        """
        target = stage or run.stage or (self.stage_machine.start if self.stage_machine else "")
        if self.stage_machine is not None:
            reason = self.stage_machine.check(run.stage, target)  # the skill's own stages are checked below
            if reason is not None:
                self._audit(run, target, "stage_blocked", skill, reason)
                raise SkillBlocked(skill, "stage_blocked", reason)
        run.stage = target
        try:
            return await skills.invoke(skill, run.context, stage=target, **kwargs)
        except SkillBlocked as exc:
            self._audit(run, target, exc.kind, skill, exc.reason)  # type: ignore[arg-type]
            raise

    def _plans(
        self,
        run: TaskRun,
        role: str,
        prompt: str,
        input: str,
        models: Sequence[str] | None,
        max_tokens: int | None,
        query_id: str | None,
        history: Sequence[tuple[str, str]] = (),
        temperature: float | None = None,
        options: RequestOptions | None = None,
    ) -> list[_Plan]:
        plans = []
        chats: dict[str, list[dict[str, str]]] = {}  # one prompt per strategy
        counted: dict[tuple[Backend, str], int] = {}  # prompt tokens, where no card tokenizer is involved
        turns = (
            [{"role": "assistant" if r == "assistant" else "user", "content": t} for r, t in history]
            if history
            else []
        )
        for c in self._candidates_for(role, models, max_tokens):
            strategy, card, backend = c.strategy, c.card, c.backend
            chat = chats.get(strategy.name)
            if chat is None:
                system = self._system_prompts.get((strategy.instruction, prompt))
                if system is None:
                    system = self._system_prompt(strategy, prompt)
                chat = chats[strategy.name] = [
                    {"role": "system", "content": system},
                    *turns,
                    {"role": "user", "content": input},
                ]
            temp = strategy.temperature if temperature is None or not c.single else temperature
            request = CompletionRequest(c.model, chat, c.max_tokens, temp, None, query_id)
            if options is not None:
                options.apply(request)
            usd = None
            if c.shared_count:
                tokens_in = counted.get((backend, strategy.name))
                if tokens_in is None:
                    tokens_in = counted[(backend, strategy.name)] = backend.prompt_tokens(request, card)
            elif c.priced_by_card:
                tokens_in = backend.prompt_tokens(request, card)
            else:  # the backend counts and prices: one call (replay looks both up at once)
                tokens_in, usd = c.worst_case(request, card)
            plans.append(_plan_of(c, request, tokens_in, usd))
        return plans

    def _system_prompt(self, strategy: Strategy, prompt: str) -> str:
        """``strategy.system_prompt(prompt)``, remembered by the two strings it is made of: a graph's
        roles ask for the same few every step."""
        if len(self._system_prompts) >= 1024:
            self._system_prompts.clear()
        system = self._system_prompts[(strategy.instruction, prompt)] = strategy.system_prompt(prompt)
        return system

    async def _ask_counts(self, run: TaskRun, plans: list[_Plan]) -> list[_Plan]:
        """Recount the prompts of endpoints that count tokens themselves (``Backend.aprompt_tokens``).

        Their synchronous count is a safe bound (UTF-8 bytes); the endpoint's own count is exact and
        usually 2–5× lower. It can only change the decision for a plan the bound makes unaffordable
        under a ``usd`` or ``tokens`` limit, so only those are asked: all at once, for at most
        0.5 s in all and never more than half the time left; the bound stays where the endpoint
        does not answer.
        """
        ledger = run.ledger
        if "usd" not in ledger.limits and "tokens" not in ledger.limits:
            return plans
        asked = [i for i, p in enumerate(plans) if p.asks and not ledger.affordable(p.worst)]
        left = ledger.seconds_left()
        limit = 0.5 if left is None else min(0.5, left / 2)
        if not asked or limit <= 0:
            return plans
        counts: dict[tuple[Any, ...], asyncio.Future[int]] = {}  # one request per endpoint, model and chat
        for i in asked:
            p = plans[i]
            key = _count_key(p)
            if key not in counts:
                counts[key] = asyncio.ensure_future(p.backend.aprompt_tokens(p.request, p.card))
        _, pending = await asyncio.wait(counts.values(), timeout=limit)
        for task in pending:
            task.cancel()
        out = list(plans)
        for i in asked:
            p = plans[i]
            task = counts[_count_key(p)]
            if task.cancelled() or not task.done() or task.exception() is not None:
                continue  # the bound stays
            out[i] = _plan_of(p.candidate, p.request, task.result())
        return out

    def _candidates_for(
        self, role: str, models: Sequence[str] | None, max_tokens: int | None
    ) -> list[_Candidate]:
        key = (role, tuple(models) if models is not None else None, max_tokens)
        found = self._candidates.get(key)
        if found is None:
            for model in models or ():
                self.pool.card(model)  # unknown model → error naming the known ones
            found = []
            for agent in self.pool.agents(role):
                if models is not None and agent.model not in models:
                    continue
                card, strategy = self._cards[agent.model], get_strategy(agent.strategy)
                limit = max(1, int((max_tokens or card.max_tokens) * strategy.max_tokens_factor))
                backend = self.pool.backend(card.id)
                shared = (
                    type(backend).prompt_tokens is Backend.prompt_tokens
                    and type(backend).count_tokens is Backend.count_tokens
                )
                asks = bool(card.base_url) and type(backend).aprompt_tokens is not Backend.aprompt_tokens
                by_card = type(backend).worst_case_usd is Backend.worst_case_usd
                self._asking = self._asking or asks
                found.append(
                    _Candidate(
                        agent,
                        agent.key,
                        card,
                        strategy,
                        backend,
                        limit,
                        1.0 if card.tier == "large" else 0.0,
                        shared,
                        strategy.samples == 1,
                        not backend.blocks,
                        asks,
                        card.backend_model,
                        by_card,
                        worst_case_of(backend),
                    )
                )
            self._candidates[key] = found
        return found

    def _context(
        self,
        run: TaskRun,
        role: str,
        stage: str,
        input: str,
        plans: list[_Plan],
        attempts: list[Step],
        query_id: str | None,
    ) -> RouteContext:
        return RouteContext(
            query=run.task.query,
            candidates=list(map(_agent_of, plans)),
            stage=stage,
            role=role,
            step_input=input,
            task_id=run.task.id,
            step_index=len(run.steps),
            history=run.steps,
            attempts=attempts,
            costs=dict(map(_key_and_usd, plans)),
            cards=self._cards,
            remaining=run.ledger.remaining(),
            budget=dict(run.ledger.limits),  # a copy: a router must not reach the ledger
            query_id=query_id,
            metadata=run.task.metadata,
        )

    # -- routing, guarded -------------------------------------------------------------------
    async def _route(
        self, run: TaskRun, ctx: RouteContext, plans: list[_Plan]
    ) -> tuple[Decision, list[_Plan]]:
        """The router's decision among ``plans``, off the event loop once the router proved slow."""
        if not self._route_off_loop:
            return self._route_now(run, ctx, plans)
        try:
            decision = await asyncio.to_thread(self.router.route, ctx)
            return decision, self._validate(decision, plans)
        except Exception as exc:  # noqa: BLE001 - a router must not take the task down
            return self._router_failed(run, ctx, plans, exc)

    def _route_now(self, run: TaskRun, ctx: RouteContext, plans: list[_Plan]) -> tuple[Decision, list[_Plan]]:
        """The router's decision among ``plans``; a router that fails costs the task nothing.

        A router that raises, returns something that is not a :class:`Decision`, or names an agent
        outside its candidates is audited (``router_error``) and the step goes to the cheapest
        candidate. A router whose ``route`` is slow (≥ :attr:`SLOW_ROUTE_S`, three calls in a row) is warned
        about once and from then on runs in a worker thread, so it cannot stall other tasks' steps.
        """
        started = time.perf_counter()
        try:
            decision = self.router.route(ctx)
            chosen = self._validate(decision, plans)
        except Exception as exc:  # noqa: BLE001 - a router must not take the task down
            return self._router_failed(run, ctx, plans, exc)
        took = time.perf_counter() - started
        if took < self.SLOW_ROUTE_S:
            self._slow_routes = 0  # three slow calls in a row: a first call that loads a model, or a
            return decision, chosen  # busy machine pausing the process now and then, is not a slow router
        self._slow_routes += 1
        if self._slow_routes >= 3:
            self._route_off_loop = True
            log.warning(
                "router %r took %.0f ms to route a step; its later calls run in a worker thread",
                self.router.name,
                took * 1000,
            )
        return decision, chosen

    def _router_failed(
        self, run: TaskRun, ctx: RouteContext, plans: list[_Plan], exc: Exception
    ) -> tuple[Decision, list[_Plan]]:
        fallback = min(plans, key=lambda p: (p.worst.usd, p.worst.tokens))
        self._audit(
            run,
            ctx.stage,
            "router_error",
            self.router.name,
            f"{type(exc).__name__}: {exc}; using {fallback.key}",
        )
        return _fallback_decision(self.router.name, fallback.agent), [fallback]

    def _validate(self, decision: Any, plans: list[_Plan]) -> list[_Plan]:
        if not isinstance(decision, Decision) or not decision.agents:
            raise ConfigurationError(
                f"router returned {type(decision).__name__} {decision!r:.80}, not a Decision naming an agent"
            )
        agents = decision.agents
        if len(agents) == 1:  # the common case: one agent, found without building an index
            agent = agents[0]
            for p in plans:
                if p.agent is agent:
                    return [p]
            key = getattr(agent, "key", None)  # an equal agent: a decision interned for an earlier pool
            for p in plans:  # (a notebook that compiled its graph again)
                if p.key == key:
                    return [p]
        by_key = {p.key: p for p in plans}
        chosen = [by_key.get(getattr(agent, "key", None)) for agent in agents]  # type: ignore[arg-type]
        if any(p is None for p in chosen):
            raise ConfigurationError(
                f"router {self.router.name!r} chose {[getattr(a, 'key', a) for a in decision.agents]} outside its candidates"
            )
        if len(chosen) > 1:  # one run per agent, even if named twice
            chosen = list({p.key: p for p in chosen}.values())  # type: ignore[union-attr]
        return chosen  # type: ignore[return-value]

    def _hook(self, name: str) -> Callable[..., Any] | None:
        """The router's ``observe`` or ``escalate``, or ``None`` where it is the base class's (which
        does nothing): looked up at each use, so a hook set on the router or its class later counts."""
        fn = getattr(self.router, name)
        return None if getattr(fn, "__func__", None) is _IDLE_HOOKS[name] else fn

    def _guarded(self, run: TaskRun, stage: str, hook: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Call a router hook; a raising hook is audited and counts as ``None``."""
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - a router must not take the task down
            self._audit(run, stage, "router_error", self.router.name, f"{hook}: {type(exc).__name__}: {exc}")
            return None

    # -- running agents ---------------------------------------------------------------------
    async def _collaborate(
        self,
        run: TaskRun,
        ctx: RouteContext,
        decision: Decision,
        chosen: list[_Plan],
        affordable: list[_Plan],
        stage: str,
        input: str,
        post: tuple[Postcondition, ...],
        excluded: set[str],
    ) -> Step:
        """Run the agents of a collaborative decision concurrently, then aggregate by weighted vote."""
        steps = await asyncio.gather(
            *(
                self._run_agent(run, ctx, decision, p, affordable, stage, input, post, excluded)
                for p in chosen
            )
        )
        return self._aggregate(run, decision, steps, stage, input)

    async def _run_agent(
        self,
        run: TaskRun,
        ctx: RouteContext,
        decision: Decision,
        plan: _Plan,
        affordable: list[_Plan],
        stage: str,
        input: str,
        postconditions: tuple[Postcondition, ...],
        excluded: set[str],
        watch: StepWatch | None = None,
    ) -> Step:
        fallbacks = 0
        while True:
            step = await self._call(run, decision, plan, stage, input, watch)
            if step.status == "ok" and postconditions:
                try:
                    await self._check_postconditions(run, step, stage, postconditions)
                except (
                    asyncio.CancelledError
                ):  # stopped from outside mid-check: the call's cost stays on record
                    step.status, step.error = "failed", "cancelled"
                    self._record(run, step)
                    raise
            self._record(run, step)
            if step.status == "ok" or fallbacks >= self.max_fallbacks or run.exhausted:
                if step.status != "ok" and not run.exhausted:
                    run.failed = True
                return step
            excluded.add(plan.key)
            rerouted = await self._fallback(run, ctx, affordable, excluded)
            if rerouted is None:
                if not run.exhausted:
                    run.failed = True
                return step
            decision, nxt = rerouted  # the fallback's step carries the re-route's decision (its propensity)
            self._audit(run, stage, "fallback", nxt.agent.key, f"after {plan.agent.key} failed: {step.error}")
            plan, fallbacks = nxt, fallbacks + 1

    async def _check_postconditions(
        self, run: TaskRun, step: Step, stage: str, postconditions: tuple[Postcondition, ...]
    ) -> None:
        failed = []
        for check in postconditions:
            name = getattr(check, "__name__", repr(check))
            try:
                held = check(step)
                if inspect.isawaitable(held):
                    held = await self._by_deadline(run, stage, step, name, held)
                if not held:
                    failed.append(name)
            except _CutOff as cut:
                failed.append(f"{name} {cut}")
                break  # the task's time is up: no later check runs
            except Exception as exc:  # noqa: BLE001 - a raising check fails the step, not the task
                failed.append(f"{name} raised {type(exc).__name__}: {exc}")
        if failed:
            step.status, step.error = "failed", f"postconditions failed: {failed}"
            self._audit(run, stage, "postcondition_failed", step.agent.key, step.error)

    async def _by_deadline(
        self, run: TaskRun, stage: str, step: Step, name: str, held: Awaitable[Any]
    ) -> Any:
        """The result of an async postcondition, awaited until the task's ``seconds`` deadline at
        most: past it (or when the step is cancelled) the check is cancelled and awaited as it
        unwinds; at the deadline the task is exhausted, audited, and :class:`_CutOff` raised —
        however the check unwinds (a check that swallows the cancel and returns still ran late)."""
        left = run.ledger.seconds_left()
        if left is None:
            return await held
        check = asyncio.ensure_future(held)
        try:
            finished, _ = await asyncio.wait((check,), timeout=max(left, 0.0))
        finally:
            if not check.done():
                check.cancel()
                await asyncio.wait((check,))
        if finished:
            return check.result()
        if not check.cancelled():
            check.exception()  # retrieved: what it raised while unwinding is not the step's error
        detail = f"cut off at the task's deadline after {max(left, 0.0):.3f}s"
        self._deadline(run, stage, step.agent.key, f"{name} {detail}")
        raise _CutOff(detail, deadline=True, streamed=False)

    async def _fallback(
        self, run: TaskRun, ctx: RouteContext, plans: list[_Plan], excluded: set[str]
    ) -> tuple[Decision, _Plan] | None:
        """Let the router pick again among the agents not yet failed that are still affordable: its
        decision (recorded on the fallback's step, so its propensity is logged) and the plan to run."""
        left = self._affordable(run, plans, excluded)
        if not left:
            return None
        retry_ctx = self._context(run, ctx.role, ctx.stage, ctx.step_input, left, ctx.attempts, ctx.query_id)
        decision, chosen = await self._route(run, retry_ctx, left)
        return decision, chosen[0]

    async def _call(
        self,
        run: TaskRun,
        decision: Decision,
        plan: _Plan,
        stage: str,
        input: str,
        watch: StepWatch | None = None,
    ) -> Step:
        """One agent's step: every sample and every retry is a provider attempt reserved on its own.

        With ``watch`` (callback handlers listen) a one-sample step reports each attempt as it runs,
        its tokens as they come; several samples are reported once done, as one message."""
        index = run.next_index()
        started = time.perf_counter()
        charged: list[Any] = [
            0.0,
            0,
            0,
        ]  # usd, tokens in, tokens out: everything booked for this agent's attempts
        samples: list[asyncio.Future[Completion | str]] = []
        try:
            if (
                plan.single
            ):  # awaited here: a task per sample would cost the deadline two more turns of the loop
                outcome = await self._attempt(run, plan, stage, charged, _watching(watch, plan), index)
                completions = [outcome] if isinstance(outcome, Completion) else []
                error = None if completions else outcome
            else:
                samples = [
                    asyncio.ensure_future(self._attempt(run, _sample(plan, i), stage, charged, None, index))
                    for i in range(plan.strategy.samples)
                ]
                outcomes = await _all_by_deadline(samples, run.ledger.seconds_left())
                completions = [o for o in outcomes if isinstance(o, Completion)]
                error = None if completions else outcomes[0]
        except asyncio.CancelledError:  # the caller stopped the task: what its attempts cost is still a step
            await self._record_cancelled(run, decision, plan, stage, input, index, started, charged, samples)
            raise
        latency_ms = (time.perf_counter() - started) * 1000
        usd, tokens_in, tokens_out = charged
        if not completions:
            return Step(
                task_id=run.task.id,
                index=index,
                stage=stage,
                agent=plan.agent,
                decision=decision,
                input=input,
                latency_ms=latency_ms,
                cost_usd=usd,
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                status="failed",
                error=str(error),
            )
        if len(completions) == 1:
            chosen = completions[0]
            text, confidence = (
                chosen.text,
                self._reported(run, plan, stage, "confidence", chosen.raw.get("confidence")),
            )
        else:
            texts = [c.text for c in completions]
            text, confidence = plan.strategy.aggregate(texts)
            chosen = completions[texts.index(text)]  # the vote returns its winning group's first sample
        return Step(
            task_id=run.task.id,
            index=index,
            stage=stage,
            agent=plan.agent,
            decision=decision,
            input=input,
            latency_ms=latency_ms,
            cost_usd=usd,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            output=text,
            score=self._reported(run, plan, stage, "score", chosen.score),
            confidence=confidence,
        )

    async def _attempt(
        self,
        run: TaskRun,
        plan: _Plan,
        stage: str,
        charged: list[Any],
        watch: StepWatch | None = None,
        index: int = 0,
    ) -> Completion | str:
        """One sample with its retries; each try is reserved first. Returns the completion or why not."""
        ledger, card = run.ledger, plan.card
        error = "not attempted"
        seen: AttemptWatch | None
        for attempt in range(self.retries + 1):
            if run.exhausted:
                return error
            try:
                reservation = ledger.reserve(plan.sample)
            except BudgetExceededError as exc:  # another attempt took the budget, or time is up
                self._exhaust(run, stage, plan.key, f"attempt {attempt + 1} not made: {exc}")
                return str(exc) if attempt == 0 else f"{error}; no retry: {exc}"  # keep what failed
            timeout = card.timeout_s  # a plain call's whole; a stream's silences (call_within)
            left = ledger.seconds_left()
            seen = None
            sent = False  # until then a failure or a cancellation costs nothing: no provider saw the call
            try:
                if (
                    self.memory is not None and not plan.direct
                ):  # a provider may bill it: durable before it is sent
                    if not await self._write_ahead(run, plan, stage, index, attempt, left):
                        ledger.release(reservation, charge=Cost(calls=0.0))  # never sent: nothing to bill
                        error = f"{card.id}: not called: the deadline came while the memory stored its write-ahead record"
                        self._deadline(run, stage, plan.key, error)
                        return error
                    left = ledger.seconds_left()
                sent = True
                if watch is not None:  # callback handlers listen: report the attempt, its tokens as they come
                    seen = await watch.attempt(plan, stage, index, attempt)
                    completion = await _watched(plan, timeout, left, seen)
                elif plan.direct:  # a backend that answers without I/O: no timeout task is needed
                    completion = await plan.backend.complete(plan.request, card)
                else:
                    completion = await call_within(plan.backend.complete(plan.request, card), timeout, left)
                completion = _with_usage(plan, completion)  # a bug here is the backend's: charged as billed
            except BaseException as exc:
                if (
                    not sent
                ):  # the write-ahead record failed or was cancelled (a client gone, serve's memory wait)
                    ledger.release(reservation, charge=Cost(calls=0.0))
                    if not isinstance(exc, Exception):
                        raise
                    error = f"{card.id}: not called: the memory could not store its write-ahead record: {exc}"
                    self._audit(run, stage, "step_failed", plan.key, error)
                    return error
                failure = self._failure(run, plan, stage, reservation, exc, timeout, left, charged)
                if failure is None:
                    raise  # cancelled from outside: the reservation was charged, let it propagate
                retryable, error = failure
                if seen is not None:
                    await seen.error(error)
                if not retryable or attempt == self.retries or run.exhausted:
                    self._audit(run, stage, "step_failed", plan.key, error)
                    return error
                delay = self.backoff_s * 2**attempt
                left = ledger.seconds_left()
                wait = getattr(
                    exc, "retry_after_s", None
                )  # the server said when to come back (a 429's Retry-After)
                if wait is not None:
                    delay = max(delay, wait)
                    if delay > self.max_retry_wait_s or (left is not None and delay >= left):
                        # too long to wait here: another model may answer now (the task goes on)
                        room = (
                            f"{left:.3f}s left before the deadline"
                            if left is not None and delay >= left
                            else f"the cap is {self.max_retry_wait_s:g}s"
                        )
                        error = f"{error}; not retried: the server asks to wait {wait:g}s and {room}"
                        self._audit(run, stage, "step_failed", plan.key, error)
                        # the task's next steps leave this model alone until then (unless nothing else is left)
                        run.context.setdefault("rate_limited", {})[card.id] = time.monotonic() + wait
                        return error
                elif left is not None and delay >= left:
                    self._audit(run, stage, "step_failed", plan.key, error)
                    self._deadline(run, stage, plan.key, f"no retry of {plan.key}: {left:.3f}s left")
                    return error
                self._audit(run, stage, "retry", plan.key, f"attempt {attempt + 1}: {error}")
                await asyncio.sleep(delay)
                continue
            tokens_in, tokens_out = completion.tokens_in or 0, completion.tokens_out or 0  # set: _with_usage
            actual = _cost(
                (completion.cost_usd or 0.0, tokens_in + tokens_out, 1.0, 0.0, plan.sample.large_calls)
            )
            if self._settle(run, plan, stage, reservation, actual, charged, tokens_in, tokens_out) is actual:
                if seen is not None:
                    await seen.end(completion)
                return completion
            # usage is outside data: the ledger refused it (negative, NaN, infinite) and booked the worst case
            error = f"{card.id}: invalid usage tokens_in={tokens_in} tokens_out={tokens_out} cost={completion.cost_usd}"
            self._faulty(run, plan, stage, error)
            self._audit(run, stage, "step_failed", plan.key, error)
            if seen is not None:
                await seen.error(error)
            return error
        return error

    async def _write_ahead(
        self,
        run: TaskRun,
        plan: _Plan,
        stage: str,
        index: int,
        attempt: int,
        left: float | None,
    ) -> bool:
        """Store the attempt's reservation before it is made; ``False`` when the task's deadline,
        ``left`` seconds away, comes first (a memory refusing writes holds the record: no call)."""
        assert self.memory is not None
        record = self.memory.reserve_attempt(
            Attempt(run.task.id, index, attempt, plan.key, stage, plan.sample)
        )
        if left is None:  # no deadline: no task nor timer on the hot path
            await record
            return True
        stored = asyncio.ensure_future(record)
        try:
            done, _ = await asyncio.wait((stored,), timeout=max(left, 0.0))
        finally:
            if not stored.done():  # the call is not sent: its record is left out unless already being written
                stored.cancel()
                await asyncio.gather(stored, return_exceptions=True)  # withdrawn before the task goes on
        if done:
            stored.result()  # a closed memory raises here
        return bool(done)

    def _failure(
        self,
        run: TaskRun,
        plan: _Plan,
        stage: str,
        reservation: Any,
        exc: BaseException,
        timeout: float,
        left: float | None,
        charged: list[Any],
    ) -> tuple[bool, str] | None:
        """Charge a failed attempt as the provider would bill it; ``(retryable, reason)``."""
        card, sample = plan.card, plan.sample
        if isinstance(exc, ProtocolError):
            self._protocol_error(run, plan, stage, reservation, charged, str(exc))
            return False, str(exc)
        if isinstance(exc, asyncio.CancelledError | TimeoutError):
            self._settle(
                run, plan, stage, reservation, sample, charged, 0, 0
            )  # it may have run: its worst case
            if isinstance(exc, asyncio.CancelledError):
                return None
            cut = exc if isinstance(exc, _CutOff) else None
            if cut.deadline if cut is not None else left is not None and timeout >= left:
                self._deadline(
                    run, stage, plan.key, f"{card.id} cut off at the task's deadline after {left or 0.0:.3f}s"
                )
                return False, f"{card.id}: cut off at the deadline"
            if cut is not None and cut.streamed:  # the stream had begun, then went silent
                return True, f"{card.id}: timed out: {cut}"
            return True, f"{card.id}: timed out after {timeout:g}s"
        if isinstance(exc, BackendError):
            billed = exc.billed
            reason, retryable = str(exc), exc.retryable
        elif isinstance(exc, Exception):  # a backend bug must not escape as an unknown error
            billed, reason, retryable = True, f"{card.id}: {type(exc).__name__}: {exc}", False
        else:
            self._settle(run, plan, stage, reservation, sample, charged, 0, 0)
            raise exc
        charge = sample if billed else Cost(0.0, 0.0, 1.0, 0.0, sample.large_calls)
        self._settle(run, plan, stage, reservation, charge, charged, 0, 0)
        return retryable, reason

    def _settle(
        self,
        run: TaskRun,
        plan: _Plan,
        stage: str,
        reservation: Any,
        actual: Cost,
        charged: list[Any],
        tokens_in: int,
        tokens_out: int,
    ) -> Cost:
        """Book an attempt; an overrun on a limited resource stops the task's calls. Returns the booking."""
        ledger = run.ledger
        overruns = ledger.overruns
        booked = ledger.settle(reservation, actual)
        charged[0] += booked.usd
        if booked is actual:
            charged[1] += tokens_in
            charged[2] += tokens_out
        if ledger.overruns != overruns:
            over = ledger.overrun_of(reservation, booked)
            if over:
                limited = [r for r in over if r in run.ledger.limits]
                detail = ", ".join(f"{r} +{amount:.6g}" for r, amount in over.items())
                self._audit(
                    run, stage, "overrun", plan.card.id, f"billed above the reserved worst case: {detail}"
                )
                if limited:  # the limit can no longer be trusted to hold: no more calls for this task
                    run.exhausted = True
        return booked

    def _protocol_error(
        self, run: TaskRun, plan: _Plan, stage: str, reservation: Any, charged: list[Any], detail: str
    ) -> None:
        """Charge the worst case, audit, and avoid this endpoint for the rest of the task."""
        self._settle(run, plan, stage, reservation, plan.sample, charged, 0, 0)
        self._faulty(run, plan, stage, detail)

    def _reported(self, run: TaskRun, plan: _Plan, stage: str, what: str, value: Any) -> float | None:
        """A number the reply reports beside its answer (its ``raw["confidence"]``, its ``score``),
        data from outside: kept when a finite number (:func:`~agentroute.types.finite_number`);
        anything else is audited ``protocol_error`` and recorded as absent, the paid step standing."""
        number = finite_number(value)
        if number is None and value is not None:
            detail = f"{plan.card.id}: the reply's {what} is not a finite number (got {type(value).__name__} {value!r:.40}): recorded as absent"
            self._audit(run, stage, "protocol_error", plan.card.id, detail)
        return number

    def _faulty(self, run: TaskRun, plan: _Plan, stage: str, detail: str) -> None:
        run.context.setdefault("faulty_endpoints", set()).add(plan.card.id)
        self._audit(run, stage, "protocol_error", plan.card.id, detail)

    def _deadline(self, run: TaskRun, stage: str, subject: str, detail: str) -> None:
        run.exhausted = True
        self._audit(run, stage, "deadline", subject, detail)

    def _aggregate(self, run: TaskRun, decision: Decision, steps: list[Step], stage: str, input: str) -> Step:
        from agentroute.aggregate import weighted_vote

        weights = decision.weights or [1.0] * len(steps)
        ok = [(s, w) for s, w in zip(steps, weights, strict=True) if s.status == "ok"]
        if not ok:
            return steps[0]
        text, share = weighted_vote([s.output for s, _ in ok], [w for _, w in ok])
        lead = next(s for s, _ in ok if s.output == text)
        return lead.model_copy(update={"output": text, "confidence": share})

    # -- records ----------------------------------------------------------------------------
    async def _record_cancelled(
        self,
        run: TaskRun,
        decision: Decision,
        plan: _Plan,
        stage: str,
        input: str,
        index: int,
        started: float,
        charged: list[Any],
        samples: list[asyncio.Future[Any]],
    ) -> None:
        """Record a step cancelled from outside (a notebook's interrupt, ``task.cancel()``): its
        attempts were charged their worst case, as a provider may bill them; the task's recorded
        cost must say so. Cancelled samples book themselves as they unwind (a turn of the loop)."""
        if samples:
            with contextlib.suppress(BaseException):
                await asyncio.wait(samples, timeout=1.0)
        usd, tokens_in, tokens_out = charged
        if not usd:  # nothing booked: no attempt had started
            return
        self._record(
            run,
            Step(
                task_id=run.task.id,
                index=index,
                stage=stage,
                agent=plan.agent,
                decision=decision,
                input=input,
                latency_ms=(time.perf_counter() - started) * 1000,
                cost_usd=usd,
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                status="failed",
                error="cancelled",
            ),
        )

    def _record(self, run: TaskRun, step: Step) -> None:
        run.steps.append(step)
        if self.memory is not None:
            self.memory.record_step(step)
        if (observe := self._hook("observe")) is not None:
            self._guarded(run, step.stage, "observe", observe, step)

    def _audit(self, run: TaskRun, stage: str, kind: str, subject: str, detail: str) -> None:
        event = AuditEvent(task_id=run.task.id, stage=stage, kind=kind, subject=subject, detail=detail)  # type: ignore[arg-type]
        run.context.setdefault("audit", []).append(event)
        if self.memory is not None:
            self.memory.record_audit(event)
        log.info("audit %s %s: %s", kind, subject, detail)

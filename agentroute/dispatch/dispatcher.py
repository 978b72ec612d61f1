"""The dispatcher: the path of one step.

::

    task context ──► stage machine: is this stage/role legal now?        (blocked → audit event)
                 ──► ledger: which candidate agents are affordable now?   (worst case ≤ remaining)
                 ──► router.route(context) → Decision
                 ──► ledger.reserve(worst case) ──► backend call (retry, then fallback, within budget)
                 ──► postconditions ──► ledger.settle(actual) ──► memory.record(step)
                 ──► router.observe(step)

One place enforces each rule: legality here via the :class:`StageMachine`, affordability in the
:class:`~agentroute.budget.Ledger`, choice in the router, persistence in the memory. Routers never
see an illegal or unaffordable candidate, so no router can break the budget.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from agentroute.budget import Budget, Cost, Ledger
from agentroute.dispatch.run import TaskRun
from agentroute.dispatch.stages import StageMachine
from agentroute.errors import BackendError, BudgetExceededError, ConfigurationError
from agentroute.memory.base import MemoryStore
from agentroute.pool.backends.base import Backend
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
)

log = logging.getLogger(__name__)

Postcondition = Callable[[Step], bool]


class _Candidate(NamedTuple):
    """What never changes about an agent between steps: its card, strategy, backend and limits."""

    agent: Agent
    key: str
    card: ModelCard
    strategy: Strategy
    backend: Backend
    max_tokens: int
    large: bool
    shared_count: bool  # the backend counts prompt tokens the same way for every card
    direct: bool


class _Plan(NamedTuple):
    """One candidate for this step: its request and the worst case of running it."""

    agent: Agent
    key: str
    card: ModelCard
    strategy: Strategy
    backend: Backend
    request: CompletionRequest
    worst: Cost
    card_usd: float
    direct: bool  # one sample from a backend that answers without I/O: no timeout task is needed


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
    """

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
    ):
        router.check_fitted()
        self.pool, self.router, self.memory, self.stage_machine = pool, router, memory, stage_machine
        self.retries, self.backoff_s, self.max_fallbacks = retries, backoff_s, max_fallbacks
        self._candidates: dict[tuple[str, tuple[str, ...] | None, int | None], list[_Candidate]] = {}
        self._cards = {card.id: card for card in pool}

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
        task = Task(query=query, graph=graph, task_type=task_type, budget=budget, metadata=meta)
        if task_id:
            task.id = task_id
        run = TaskRun(task=task, ledger=Ledger(budget or Budget()), context={"query": query})
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
    ) -> Task:
        """Close the task: ``budget_exhausted`` keeps the best partial answer; nothing raises."""
        task = run.task
        task.status = status or ("budget_exhausted" if run.exhausted else "failed" if run.failed else "done")
        task.answer = answer if answer is not None else run.best_answer
        task.cost_usd = sum(s.cost_usd for s in run.steps)
        if score is not None:
            task.score = score
        elif run.steps and run.steps[-1].score is not None:
            task.score = run.steps[-1].score
        if self.memory is not None:
            self.memory.finish_task(task)
        if run.steps:
            self.router.observe(run.steps[-1], task)
        return task

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
    ) -> Step | None:
        """Run one routed step; ``None`` when blocked or when nothing affordable is left.

        A blocked step writes an audit event and returns ``None`` with ``run.failed`` set; an
        exhausted budget sets ``run.exhausted``. A step whose every agent failed is returned with
        status ``failed`` (and recorded).
        """
        if self._blocked(run, role, stage):
            return None
        run.stage = stage
        qid = query_id or run.task.metadata.get("query_id")
        plans = self._plans(run, role, prompt, input, models, max_tokens, qid)
        post = tuple(postconditions)
        attempts: list[Step] = []
        excluded: set[str] = set()
        while True:
            affordable = [p for p in plans if p.key not in excluded and run.ledger.affordable(p.worst)]
            if not affordable:
                if not attempts:
                    run.exhausted = True
                    self._audit(run, stage, "budget_blocked", role, f"no affordable agent for {role!r}; remaining {run.ledger.remaining()}")
                    return None
                return attempts[-1]
            ctx = self._context(run, role, stage, input, affordable, attempts, qid)
            decision = self.router.route(ctx)
            chosen = self._validate(decision, affordable)
            if len(chosen) == 1:
                step = await self._run_agent(run, ctx, decision, chosen[0], affordable, stage, input, post, excluded)
            else:
                step = await self._collaborate(run, ctx, decision, chosen, affordable, stage, input, post, excluded)
            attempts.append(step)
            if step.status == "ok" and not self.router.escalate(ctx, step):
                return step
            if step.status == "ok":
                excluded.add(step.agent.key)
                self._audit(run, stage, "fallback", step.agent.key, "escalated by router: low confidence")

    def _blocked(self, run: TaskRun, role: str, stage: str) -> bool:
        if self.stage_machine is None:
            return False
        reason = self.stage_machine.check(run.stage, stage, intent=role)
        if reason is None:
            return False
        run.failed = True
        self._audit(run, stage, "stage_blocked", role, reason)
        return True

    def _plans(
        self,
        run: TaskRun,
        role: str,
        prompt: str,
        input: str,
        models: Sequence[str] | None,
        max_tokens: int | None,
        query_id: str | None,
    ) -> list[_Plan]:
        plans = []
        chats: dict[str, list[dict[str, str]]] = {}  # one prompt per strategy
        counted: dict[tuple[Backend, str], int] = {}  # prompt tokens, where no card tokenizer is involved
        for c in self._candidates_for(role, models, max_tokens):
            strategy, card, backend = c.strategy, c.card, c.backend
            chat = chats.get(strategy.name)
            if chat is None:
                chat = chats[strategy.name] = [
                    {"role": "system", "content": strategy.system_prompt(prompt)},
                    {"role": "user", "content": input},
                ]
            request = CompletionRequest(
                model=card.backend_model, messages=chat, max_tokens=c.max_tokens,
                temperature=strategy.temperature, query_id=query_id,
            )
            if c.shared_count:
                tokens_in = counted.get((backend, strategy.name))
                if tokens_in is None:
                    tokens_in = counted[(backend, strategy.name)] = backend.prompt_tokens(request, card)
            else:
                tokens_in = backend.prompt_tokens(request, card)
            k = strategy.samples
            worst = Cost(
                backend.worst_case_usd(request, card, tokens_in) * k, (tokens_in + c.max_tokens) * k, k, 0.0, k if c.large else 0
            )
            plans.append(_Plan(c.agent, c.key, card, strategy, backend, request, worst, card.usd(tokens_in, c.max_tokens) * k, c.direct))
        return plans

    def _candidates_for(self, role: str, models: Sequence[str] | None, max_tokens: int | None) -> list[_Candidate]:
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
                shared = type(backend).prompt_tokens is Backend.prompt_tokens and type(backend).count_tokens is Backend.count_tokens
                direct = strategy.samples == 1 and not backend.blocks
                found.append(_Candidate(agent, agent.key, card, strategy, backend, limit, card.tier == "large", shared, direct))
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
            candidates=[p.agent for p in plans],
            stage=stage,
            role=role,
            step_input=input,
            task_id=run.task.id,
            step_index=len(run.steps),
            history=run.steps,
            attempts=attempts,
            costs={p.key: p.card_usd for p in plans},
            cards=self._cards,
            remaining=run.ledger.remaining(),
            budget=dict(run.ledger.limits),  # a copy: a router must not reach the ledger
            query_id=query_id,
            metadata=run.task.metadata,
        )

    def _validate(self, decision: Decision, plans: list[_Plan]) -> list[_Plan]:
        chosen = [next((p for p in plans if p.key == agent.key), None) for agent in decision.agents]
        if not chosen or any(p is None for p in chosen):
            raise ConfigurationError(
                f"router {self.router.name!r} chose {[a.key for a in decision.agents]} outside its candidates"
            )
        return chosen  # type: ignore[return-value]

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
            *(self._run_agent(run, ctx, decision, p, affordable, stage, input, post, excluded) for p in chosen)
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
    ) -> Step:
        fallbacks = 0
        while True:
            step = await self._call(run, decision, plan, stage, input)
            if step.status == "ok":
                failed = [getattr(c, "__name__", repr(c)) for c in postconditions if not c(step)]
                if failed:
                    step.status, step.error = "failed", f"postconditions failed: {failed}"
                    self._audit(run, stage, "postcondition_failed", plan.agent.key, step.error)
            self._record(run, step)
            if step.status == "ok" or fallbacks >= self.max_fallbacks:
                if step.status != "ok":
                    run.failed = True
                return step
            excluded.add(plan.key)
            nxt = self._fallback(run, ctx, affordable, excluded)
            if nxt is None:
                run.failed = True
                return step
            self._audit(run, stage, "fallback", nxt.agent.key, f"after {plan.agent.key} failed: {step.error}")
            plan, fallbacks = nxt, fallbacks + 1

    def _fallback(self, run: TaskRun, ctx: RouteContext, plans: list[_Plan], excluded: set[str]) -> _Plan | None:
        """Let the router pick again among the agents not yet failed that are still affordable."""
        left = [p for p in plans if p.key not in excluded and run.ledger.affordable(p.worst)]
        if not left:
            return None
        retry_ctx = self._context(run, ctx.role, ctx.stage, ctx.step_input, left, ctx.attempts, ctx.query_id)
        return self._validate(self.router.route(retry_ctx), left)[0]

    async def _call(self, run: TaskRun, decision: Decision, plan: _Plan, stage: str, input: str) -> Step:
        fields: dict[str, Any] = {
            "task_id": run.task.id, "index": run.next_index(), "stage": stage, "agent": plan.agent,
            "decision": decision, "input": input,
        }
        try:
            reservation = run.ledger.reserve(plan.worst)
        except BudgetExceededError as exc:  # another concurrent step took the budget first
            run.exhausted = True
            self._audit(run, stage, "budget_blocked", plan.key, str(exc))
            return Step(**fields, status="failed", error=str(exc))
        started = time.perf_counter()
        completions: list[Completion] = []
        error: BackendError | None = None
        for attempt in range(self.retries + 1):
            try:
                if plan.direct:  # one sample from a backend that answers without I/O
                    completions = [await plan.backend.complete(plan.request, plan.card)]
                else:
                    completions = await self._sample(plan, run)
                error = None
                break
            except BackendError as exc:
                error = exc
            except TimeoutError:
                error = BackendError(plan.card.id, f"timed out after {plan.card.timeout_s:g}s")
            except Exception as exc:  # a backend bug must not escape as an unknown error
                error = BackendError(plan.card.id, f"{type(exc).__name__}: {exc}", retryable=False)
            if not error.retryable or attempt == self.retries:
                break
            self._audit(run, stage, "retry", plan.key, f"attempt {attempt + 1}: {error}")
            await asyncio.sleep(self.backoff_s * 2**attempt)
        fields["latency_ms"] = (time.perf_counter() - started) * 1000
        if error is not None:
            run.ledger.release(reservation, charge=Cost(calls=plan.worst.calls, large_calls=plan.worst.large_calls))
            self._audit(run, stage, "step_failed", plan.key, str(error))
            return Step(**fields, status="failed", error=str(error))
        n = len(completions)
        if n == 1:
            first = completions[0]
            text, tokens_in, tokens_out, cost = first.text, first.tokens_in, first.tokens_out, first.cost_usd
            confidence = first.raw.get("confidence")
        else:
            text, confidence = plan.strategy.aggregate([c.text for c in completions])
            tokens_in = sum(c.tokens_in for c in completions)
            tokens_out = sum(c.tokens_out for c in completions)
            cost = sum(c.cost_usd for c in completions)
        run.ledger.settle(reservation, Cost(cost, tokens_in + tokens_out, n, 0.0, n if plan.card.tier == "large" else 0))
        return Step(
            **fields,
            output=text,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=cost,
            score=completions[0].score,
            confidence=confidence,
        )

    async def _sample(self, plan: _Plan, run: TaskRun) -> list[Completion]:
        """The strategy's samples, concurrently, within the card's timeout and the time left."""
        backend, card = plan.backend, plan.card
        calls = [backend.complete(plan.request, card) for _ in range(plan.strategy.samples)]
        timeout = card.timeout_s
        left = run.ledger.seconds_left()
        if left is not None:
            timeout = max(0.001, min(timeout, left))
        if len(calls) == 1:
            return [await asyncio.wait_for(calls[0], timeout)]
        return list(await asyncio.wait_for(asyncio.gather(*calls), timeout))

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
    def _record(self, run: TaskRun, step: Step) -> None:
        run.steps.append(step)
        if self.memory is not None:
            self.memory.record_step(step)
        self.router.observe(step)

    def _audit(self, run: TaskRun, stage: str, kind: str, subject: str, detail: str) -> None:
        event = AuditEvent(task_id=run.task.id, stage=stage, kind=kind, subject=subject, detail=detail)  # type: ignore[arg-type]
        run.context.setdefault("audit", []).append(event)
        if self.memory is not None:
            self.memory.record_audit(event)
        log.info("audit %s %s: %s", kind, subject, detail)

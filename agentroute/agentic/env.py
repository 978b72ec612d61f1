"""The offline agentic routing environment: k-step tasks replayed from logged outcomes.

Following BoPO (Zhang et al., "Budget-Aware Agentic Routing via Boundary-Guided Training",
arXiv:2602.21227), at every step of a long-horizon task a router picks a model *tier* (an ordered
list, cheapest first: ``small`` … ``large``). Here a task is a sequence of ``steps`` logged queries
of one task type (:mod:`agentroute.agentic.tasks`); a step succeeds when the chosen model's logged
score reaches ``score_threshold``; the task succeeds by ``success_rule`` over its steps (default:
all of them); costs are the logged USD costs.

Hard budgets go through the real :class:`~agentroute.budget.Ledger`, exactly as in the
dispatcher: before each call the tiers whose worst case does not fit what is left are masked
(*budget-constrained decoding*), the router chooses among the rest, the worst case is reserved and
settled with the logged cost. When no tier fits, the task ends ``budget_exhausted`` (a failure).
The worst case of a call is the train split's largest logged cost of that model on that task type
times ``cost_margin`` (a ``max_tokens``-like cap); a logged call dearer than its cap counts as cut
off: charged the cap and failed.

The router sees what the dispatcher would show it: the step's query, the affordable candidates,
their worst-case costs, the cards, the remaining budget, the horizon (``metadata["horizon"]``) and
the history of earlier steps. With ``feedback=False`` (default) the history carries tiers only —
the outcome of a step is known only at the end of the task, as for question answering; with
``feedback=True`` a failed step is reported (status ``failed`` and its score), as an agent
environment reports a failed action, and a router may escalate it (``max_attempts`` > 1).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from agentroute.agentic.tasks import AgenticTask, Equivalence, build_tasks
from agentroute.budget import Budget, Cost, Ledger
from agentroute.checks import check_count
from agentroute.errors import ConfigurationError
from agentroute.outcomes import OutcomeTable
from agentroute.pool.card import ModelCard
from agentroute.types import Agent, Decision, RouteContext, Step, Task, TaskStatus

if TYPE_CHECKING:
    from agentroute.routers.base import Router

SuccessRule = Literal["all", "majority", "any", "last"] | float
CostCaps = Mapping[tuple[str, str | None], float]


def task_succeeds(step_ok: Sequence[bool], steps: int, rule: SuccessRule = "all") -> bool:
    """Whether a task of ``steps`` steps succeeds; steps never run (budget exhausted) count as failed.

    ``rule``: ``"all"``, ``"majority"`` (more than half), ``"any"``, ``"last"`` (the final step), or
    a fraction in (0, 1] of steps that must succeed.

    >>> task_succeeds([True, True, False], 3), task_succeeds([True, True, False], 3, "majority")
    (False, True)
    >>> task_succeeds([True], 3, "any"), task_succeeds([True], 3, "last"), task_succeeds([True, True], 3, 0.6)
    (True, False, True)
    """
    ok = list(step_ok) + [False] * (steps - len(step_ok))
    if rule == "all":
        return all(ok)
    if rule == "majority":
        return sum(ok) * 2 > steps
    if rule == "any":
        return any(ok)
    if rule == "last":
        return bool(ok[-1])
    return sum(ok) >= float(check_success_rule(rule)) * steps - 1e-9


def check_success_rule(rule: Any, name: str = "success_rule") -> SuccessRule:
    """``rule`` when it is a :data:`SuccessRule`; a :class:`ConfigurationError` naming ``name``
    (``--success-rule`` on the command line) otherwise.

    >>> check_success_rule("majority"), check_success_rule(0.5)
    ('majority', 0.5)
    """
    if rule in ("all", "majority", "any", "last"):
        return rule  # type: ignore[no-any-return]
    if isinstance(rule, int | float) and not isinstance(rule, bool) and 0 < rule <= 1:
        return float(rule)
    raise ConfigurationError(f"{name} must be all/majority/any/last or a fraction in (0, 1] (got {rule!r})")


def check_tier_names(tiers: Sequence[str], name: str = "tiers") -> tuple[str, ...]:
    """``tiers`` when they name at least two distinct models; a :class:`ConfigurationError` naming
    ``name`` (``--tiers`` on the command line) otherwise."""
    tiers = tuple(tiers)
    if len(tiers) < 2 or len(set(tiers)) != len(tiers):
        raise ConfigurationError(
            f"{name} must name at least two distinct models, cheapest first (got {list(tiers)})"
        )
    return tiers


def resolve_tiers(table: OutcomeTable, tiers: Sequence[str] | None) -> tuple[str, ...]:
    """The tier ladder, cheapest first. Default: (cheapest model by mean cost, best model by mean score)."""
    if tiers is None:
        cost = np.nanmean(table.costs, axis=0)
        score = np.nanmean(table.scores, axis=0)
        small, large = table.models[int(np.nanargmin(cost))], table.models[int(np.nanargmax(score))]
        if small == large:
            raise ConfigurationError(
                f"{small!r} is both the cheapest and the best model: pass tiers= explicitly"
            )
        return (small, large)
    tiers = check_tier_names(tiers)
    unknown = [t for t in tiers if t not in table.models]
    if unknown:
        raise ConfigurationError(f"tiers {unknown} are not models of the table; known: {table.models}")
    return tiers


def tier_labels(n: int) -> tuple[str, ...]:
    """Card tiers of an ``n``-rung ladder: ``small``, then ``medium``…, then ``large``.

    >>> tier_labels(2), tier_labels(3)
    (('small', 'large'), ('small', 'medium', 'large'))
    """
    return ("small", *(["medium"] * (n - 2)), "large")


def worst_case_costs(
    table: OutcomeTable, models: Iterable[str], *, margin: float = 1.1
) -> dict[tuple[str, str | None], float]:
    """Per (model, task type): the largest logged cost × ``margin``; ``(model, None)`` covers any type."""
    if margin < 1.0:
        raise ConfigurationError(f"cost_margin must be >= 1 (got {margin})")
    types = np.array([str(t) for t in table.task_types])
    caps: dict[tuple[str, str | None], float] = {}
    for model in models:
        col = table.costs[:, table.models.index(model)]
        caps[(model, None)] = float(np.nanmax(col)) * margin
        for t in sorted(set(table.task_types), key=str):
            sel = col[types == str(t)]
            if t is not None and np.isfinite(sel).any():
                caps[(model, t)] = float(np.nanmax(sel)) * margin
    return caps


@dataclass
class EpisodeResult:
    """The outcome of one rollout of one task."""

    task_id: str
    task_type: str | None
    rollout: int
    rows: tuple[int, ...]
    tiers: tuple[int, ...]
    step_ok: tuple[bool, ...]
    success: bool
    status: TaskStatus
    cost_usd: float
    large_calls: int
    calls: int
    budget: dict[str, float] = field(default_factory=dict)
    truncated: int = 0

    @property
    def violation(self) -> bool:
        """Whether the spending went over the budget (measured from the logged charges)."""
        usd, large = self.budget.get("usd"), self.budget.get("large_calls")
        return (usd is not None and self.cost_usd > usd + 1e-12) or (
            large is not None and self.large_calls > large
        )


class AgenticEnv:
    """Offline agentic routing over an :class:`OutcomeTable` (see the module docstring).

    Args:
        table: the logged outcomes the tasks are built from (e.g. a dataset's test split).
        steps: k, the steps per task.
        tiers: models of the tier ladder, cheapest first; default (cheapest, best-scoring).
        success_rule: how step outcomes make a task success (:func:`task_succeeds`).
        variants: equivalent queries per step (1: deterministic tasks).
        equivalence: ``"neighbours"`` (nearest same-type queries by ``embeddings``) or ``"task_type"``.
        embeddings: one vector per table row (needed for ``"neighbours"`` with ``variants`` > 1).
        score_threshold: a logged score at or above it is a step success.
        cost_caps: worst case per (model, task type); default :func:`worst_case_costs` of ``table``.
        cost_margin: the margin used when ``cost_caps`` is computed here.
        feedback: whether step outcomes are shown to the router (history scores, failed status).
        max_attempts: calls allowed per step (> 1 lets a router escalate a failed step).
        seed: the seed of the task grouping.
    """

    def __init__(
        self,
        table: OutcomeTable,
        *,
        steps: int = 3,
        tiers: Sequence[str] | None = None,
        success_rule: SuccessRule = "all",
        variants: int = 1,
        equivalence: Equivalence = "neighbours",
        embeddings: np.ndarray | None = None,
        score_threshold: float = 0.5,
        cost_caps: CostCaps | None = None,
        cost_margin: float = 1.1,
        feedback: bool = False,
        max_attempts: int = 1,
        seed: int = 0,
    ):
        steps, max_attempts = check_count(steps, "steps"), check_count(max_attempts, "max_attempts")
        check_success_rule(success_rule)
        self.table = table
        self.steps = steps
        self.tiers = resolve_tiers(table, tiers)
        self.success_rule = success_rule
        self.score_threshold = score_threshold
        self.feedback = feedback
        self.max_attempts = max_attempts
        self.tasks, self.left_over = build_tasks(
            table.task_types, steps=steps, variants=variants, equivalence=equivalence,
            embeddings=embeddings, seed=seed,
        )  # fmt: skip
        if not self.tasks:
            raise ConfigurationError(f"no task of {steps} steps can be built from {len(table)} rows")
        self.cost_caps = (
            dict(cost_caps)
            if cost_caps is not None
            else worst_case_costs(table, self.tiers, margin=cost_margin)
        )
        missing = [m for m in self.tiers if (m, None) not in self.cost_caps]
        if missing:
            raise ConfigurationError(f"cost_caps lack a (model, None) entry for {missing}")
        self.labels = tier_labels(len(self.tiers))
        self.agents = [Agent(model=m) for m in self.tiers]
        self.cards = {
            m: ModelCard(id=m, backend="replay", tier=label, description="logged outcomes")  # type: ignore[arg-type]
            for m, label in zip(self.tiers, self.labels, strict=True)
        }
        self._cols = [table.models.index(m) for m in self.tiers]

    @classmethod
    def from_dataset(
        cls, dataset: Any, split: Literal["train", "test"] = "test", **options: Any
    ) -> AgenticEnv:
        """An environment on ``dataset``'s ``split`` with worst cases from its train split."""
        tiers = resolve_tiers(dataset.train, options.pop("tiers", None))
        margin = options.pop("cost_margin", 1.1)
        options.setdefault("cost_caps", worst_case_costs(dataset.train, tiers, margin=margin))
        return cls(dataset.table(split), tiers=tiers, **options)

    # -- pieces -----------------------------------------------------------------------------
    @property
    def large(self) -> int:
        """The index of the top tier (the expensive model)."""
        return len(self.tiers) - 1

    def cap(self, tier: int, row: int) -> float:
        model = self.tiers[tier]
        return self.cost_caps.get((model, self.table.task_types[row]), self.cost_caps[(model, None)])

    def worst_case(self, tier: int, row: int) -> Cost:
        return Cost(usd=self.cap(tier, row), calls=1.0, large_calls=float(self.labels[tier] == "large"))

    def outcome(self, tier: int, row: int) -> tuple[bool, float, float, bool]:
        """(step ok, score, charged USD, cut off) of calling ``tier`` on ``row``."""
        j = self._cols[tier]
        score, cost, cap = (
            float(self.table.scores[row, j]),
            float(self.table.costs[row, j]),
            self.cap(tier, row),
        )
        if not np.isfinite(score) or not np.isfinite(cost):
            return False, 0.0, cap, True  # a missing outcome: charged the worst case, failed
        if cost > cap:
            return False, 0.0, cap, True
        return score >= self.score_threshold, score, cost, False

    def episode(
        self,
        task: AgenticTask | int,
        *,
        rows: Sequence[int] | None = None,
        budget: Budget | None = None,
        rollout: int = 0,
    ) -> Episode:
        task = self.tasks[task] if isinstance(task, int) else task
        return Episode(self, task, tuple(rows) if rows is not None else task.rows, budget, rollout)

    def draws(self, seed: int | None, rollouts: int = 1) -> list[list[tuple[int, ...]]]:
        """Rows per (task, rollout): the anchors when ``seed`` is None, else seeded variants.

        The draw of (task i, rollout r) depends only on (seed, i, r), so two policies rolled out
        with the same seed see the same queries (paired comparisons).
        """
        out = []
        for i, task in enumerate(self.tasks):
            rngs = [None if seed is None else np.random.default_rng([seed, i, r]) for r in range(rollouts)]
            out.append([task.draw(rng) for rng in rngs])
        return out

    # -- running a router ----------------------------------------------------------------------
    def run(
        self,
        router: Router,
        *,
        budget: Budget | None = None,
        rollouts: int = 1,
        seed: int | None = None,
    ) -> list[EpisodeResult]:
        """Roll ``router`` through every task (``rollouts`` times each; anchors when ``seed`` is None).

        The protocol is the dispatcher's: ``route`` among affordable untried tiers, then ``observe``;
        ``escalate`` may redo a step (up to ``max_attempts``); ``observe(last, task)`` at the end.
        """
        router.check_fitted()
        results = []
        for i, per_task in enumerate(self.draws(seed, rollouts)):
            for r, rows in enumerate(per_task):
                ep = self.episode(i, rows=rows, budget=budget, rollout=r)
                results.append(ep.play(router))
        return results


class Episode:
    """One rollout of one task: a ledger, the steps so far and the step being decided."""

    def __init__(
        self, env: AgenticEnv, task: AgenticTask, rows: tuple[int, ...], budget: Budget | None, rollout: int
    ):
        self.env, self.task, self.rows, self.rollout = env, task, rows, rollout
        self.ledger = Ledger(budget or Budget())
        self.task_id = f"{task.id}#{rollout}"
        self.steps: list[Step] = []
        self.attempts: list[Step] = []
        self.step_ok: list[bool] = []
        self.tiers: list[int] = []
        self.t = 0
        self.status: TaskStatus = "running"
        self.truncated = 0
        self._ok = False

    @property
    def done(self) -> bool:
        return self.status != "running"

    @property
    def row(self) -> int:
        return self.rows[self.t]

    def candidates(self) -> list[int]:
        """Tier indices affordable now and not yet tried at this step (cheapest tier first)."""
        tried = {s.agent.model for s in self.attempts}
        return [
            k
            for k in range(len(self.env.tiers))
            if self.env.tiers[k] not in tried and self.ledger.affordable(self.env.worst_case(k, self.row))
        ]

    def context(self, candidates: Sequence[int]) -> RouteContext:
        env, row = self.env, self.row
        query = env.table.queries[row]
        return RouteContext(
            query=query,
            candidates=[env.agents[k] for k in candidates],
            step_input=query,
            task_id=self.task_id,
            step_index=self.t,
            history=list(self.steps),
            attempts=list(self.attempts),
            costs={env.agents[k].key: env.cap(k, row) for k in candidates},
            cards=env.cards,
            remaining=self.ledger.remaining(),
            budget=self.ledger.budget.limits(),
            query_id=env.table.query_ids[row],
            metadata={"horizon": env.steps},
        )

    def act(self, tier: int, decision: Decision | None = None) -> Step:
        """Call ``tier`` on the current step through the ledger; returns the recorded step."""
        env, row = self.env, self.row
        reservation = self.ledger.reserve(env.worst_case(tier, row))
        ok, score, charged, cut = env.outcome(tier, row)
        is_large = env.labels[tier] == "large"
        self.ledger.settle(reservation, Cost(usd=charged, calls=1.0, large_calls=float(is_large)))
        self.truncated += cut
        shown = env.feedback
        step = Step(
            task_id=self.task_id,
            index=len(self.steps),
            stage="execute",
            agent=env.agents[tier],
            decision=decision,
            input=env.table.queries[row],
            cost_usd=charged,
            status="failed" if shown and not ok else "ok",
            error="the step failed (logged outcome)" if shown and not ok else None,
            score=score if shown else None,
        )
        self.steps.append(step)
        self.attempts.append(step)
        self.tiers.append(tier)
        self._ok = ok
        return step

    def end_step(self) -> None:
        """Close the current step with its last attempt's outcome."""
        self.step_ok.append(self._ok)
        self.attempts = []
        self.t += 1
        if self.t >= self.env.steps:
            self.status = "done"

    def exhaust(self) -> None:
        self.status = "budget_exhausted"

    def play(self, router: Router) -> EpisodeResult:
        """Run ``router`` to the end of the task (the dispatcher's protocol)."""
        while not self.done:
            self.play_step(router.route, router.escalate, router.observe)
        task = self.as_task()
        if self.steps:
            router.observe(self.steps[-1], task)
        return self.result()

    def play_step(
        self,
        choose: Callable[[RouteContext], Decision],
        escalate: Callable[[RouteContext, Step], bool] | None = None,
        observe: Callable[[Step], None] | None = None,
    ) -> None:
        """Decide and run the current step (with escalations); ends the task when nothing fits."""
        while True:
            cands = self.candidates()
            if not cands:
                if self.attempts:
                    self.end_step()
                else:
                    self.exhaust()
                return
            ctx = self.context(cands)
            decision = choose(ctx)
            by_model = {self.env.tiers[k]: k for k in cands}
            chosen = [a for a in decision.agents if a.key in {c.key for c in ctx.candidates}]
            if not decision.agents or len(chosen) != len(decision.agents):
                raise ConfigurationError(
                    f"router {decision.router!r} chose {[a.key for a in decision.agents]} outside its candidates"
                )
            step = self.act(by_model[decision.agent.model], decision)
            if observe is not None:
                observe(step)
            if len(self.attempts) < self.env.max_attempts and escalate is not None and escalate(ctx, step):
                if self.candidates():
                    continue
            self.end_step()
            return

    def as_task(self) -> Task:
        result_ok = task_succeeds(self.step_ok, self.env.steps, self.env.success_rule)
        return Task(
            id=self.task_id,
            query=self.env.table.queries[self.rows[0]],
            graph="agentic-offline",
            budget=self.ledger.budget,
            status=self.status,
            cost_usd=sum(s.cost_usd for s in self.steps),
            score=float(result_ok and self.status == "done"),
        )

    def result(self) -> EpisodeResult:
        large = sum(1 for k in self.tiers if self.env.labels[k] == "large")
        success = self.status == "done" and task_succeeds(self.step_ok, self.env.steps, self.env.success_rule)
        return EpisodeResult(
            task_id=self.task.id,
            task_type=self.task.task_type,
            rollout=self.rollout,
            rows=self.rows,
            tiers=tuple(self.tiers),
            step_ok=tuple(self.step_ok),
            success=success,
            status=self.status,
            cost_usd=float(sum(s.cost_usd for s in self.steps)),
            large_calls=large,
            calls=len(self.tiers),
            budget=self.ledger.budget.limits(),
            truncated=self.truncated,
        )


def summarize(results: Sequence[EpisodeResult]) -> dict[str, float]:
    """Success rate, mean cost, mean large calls, budget violations and exhaustions of rollouts."""
    if not results:
        raise ConfigurationError("no episodes to summarize")
    return {
        "success_rate": float(np.mean([r.success for r in results])),
        "mean_cost": float(np.mean([r.cost_usd for r in results])),
        "mean_large_calls": float(np.mean([r.large_calls for r in results])),
        "mean_calls": float(np.mean([r.calls for r in results])),
        "budget_violations": int(sum(r.violation for r in results)),
        "budget_exhausted": int(sum(r.status == "budget_exhausted" for r in results)),
        "truncated_calls": int(sum(r.truncated for r in results)),
        "episodes": len(results),
    }

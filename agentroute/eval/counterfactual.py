"""Counterfactual evaluation from the memory: how would another router have done on the logged traffic?

Production logs are bandit feedback: each task holds the outcome of the agents that ran, not of
the others, and a router that explores logs the probability p(aₜ | xₜ) with which it chose each
agent (``Decision.evidence["propensity"]``; :class:`~agentroute.routers.explore.ExploreRouter`
logs it). The value of a candidate policy π on the logged contexts is then estimated without
running it (Dudík, Langford & Li, "Doubly Robust Policy Evaluation and Learning", arXiv 1103.4601;
Swaminathan & Joachims, "The Self-Normalized Estimator for Counterfactual Learning", NeurIPS 2015):

- importance weight of task i: wᵢ = Πₜ π(aᵢₜ | xᵢₜ) / p(aᵢₜ | xᵢₜ) over its routed steps
  (trajectory-wise; π is 1 on the candidate's choice for a deterministic router, or the
  ``probabilities`` its decision reports). The candidate is replayed on each logged step's context
  (query, step input, candidates, their worst-case costs, history); a step after the first
  mismatch has weight 0 anyway.
- IPS: V̂ = (1/n) Σᵢ wᵢ rᵢ — unbiased when every chosen agent had p > 0;
- SNIPS: V̂ = Σᵢ wᵢ rᵢ / Σᵢ wᵢ — self-normalised, lower variance, slightly biased;
- DR: V̂ = (1/n) Σᵢ [ Σₐ π(a | xᵢ) q̂(xᵢ, a) + wᵢ (rᵢ − q̂(xᵢ, aᵢ)) ] with a reward model q̂ fitted
  on the same logs (mean outcome per (task type, agent), shrunk toward the agent's own mean with
  ``shrinkage`` pseudo-counts); unbiased if either the propensities or q̂ are right. In a task
  with several routed steps, q̂ and π(· | xᵢ) are those of its first routed step and wᵢ stays the
  trajectory's weight (the later steps importance-weighted): unbiased for any q̂ when the
  propensities are right, q̂ then a control variate of the first decision.

A call that fails and is retried on another agent (the dispatcher's fallback) is a routed step of
its own, weighted by the re-route's logged propensity (the candidate is replayed on the agents
left). A routed step with one candidate (a fallback to the one agent left, a role given one model)
is no choice, weight 1 under every router: part of the decisions around it, not a routed step
(a task left with one routed step keeps DR). Logs written before the dispatcher recorded the re-route's decision
hold the fallback under the first decision: it is then part of that decision's outcome (exact with
one agent left; with more, the candidate is taken to fall back as the logging router did).

Each is computed for the task score rᵢ and, the same way, for the task cost, with a percentile
bootstrap interval over logged queries (``n_boot`` resamples of the distinct ``query_id``s (the query text where
none was sent), each with all its tasks: a query served twice is one draw, not two; ``level`` two-sided; q̂ refitted
on every resample, so DR's interval carries the reward model's uncertainty too). ``ess`` (Σw)²/Σw² says how many logged tasks the estimate effectively rests on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agentroute.errors import ConfigurationError
from agentroute.eval.metrics import check_bootstrap
from agentroute.outcomes import outage_steps
from agentroute.progress import bar, phase
from agentroute.routers.base import Router, check_pool
from agentroute.types import Agent, RouteContext, Step, Task, Trajectory

__all__ = [
    "CounterfactualEstimate",
    "LoggedTask",
    "RewardModel",
    "estimate_router",
    "evaluate_from_memory",
    "logged_tasks",
]


@dataclass
class LoggedStep:
    """One routed step as its router saw it, and what the logging policy did."""

    context: RouteContext
    chosen: str
    propensity: float
    probabilities: dict[str, float]


@dataclass
class LoggedTask:
    """A finished, scored task whose routed steps carry propensities."""

    task_id: str
    task_type: str | None
    score: float
    cost: float
    steps: list[LoggedStep]
    failed: bool = False
    """The task failed unscored, and counts with score 0."""
    every_agent_failed: bool = False
    """It failed after the call of every candidate of its failing stage failed (an outage): no
    router could have answered it."""
    error: str = ""
    """A failed task's last error."""


@dataclass
class CounterfactualEstimate:
    """IPS, SNIPS and DR estimates of one router's mean score and cost, with intervals."""

    router: str
    n: int
    matched: float
    """Share of logged tasks on which the candidate takes the logged path (weight > 0)."""
    ess: float
    score: dict[str, float | None] = field(default_factory=dict)
    cost: dict[str, float | None] = field(default_factory=dict)
    intervals: dict[str, list[float]] = field(default_factory=dict)
    """``score_ips``, ``cost_dr`` …: [low, high] at ``level``."""
    level: float = 0.95
    notes: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "router": self.router, "n": self.n, "matched": self.matched, "ess": self.ess, "score": self.score,
            "cost": self.cost, "intervals": self.intervals, "level": self.level, "notes": self.notes,
        }  # fmt: skip


def _agent(key: str) -> Agent:
    role, model, strategy = key.split(":", 2)
    return Agent(role=role, model=model, strategy=strategy)


def logged_tasks(
    trajectories: Iterable[Trajectory], *, cards: Mapping[str, Any] | None = None
) -> tuple[list[LoggedTask], dict[str, int]]:
    """Scored finished tasks (and failed ones without a score, as score 0) whose routed steps
    logged propensities and candidate probabilities, rebuilt as the contexts their router saw; and
    counts of what was skipped (and why)."""
    out: list[LoggedTask] = []
    skipped = {"unscored": 0, "no_propensity": 0, "zero_propensity": 0}
    cards = dict(cards or {})
    for trajectory in trajectories:
        task = trajectory.task
        # a task that failed (no answer) is the outcome of the choices that led to it: score 0, as
        # leaving it out would flatter the routers choosing the agents that fail
        failed = task.status == "failed" and task.score is None
        score = 0.0 if failed else task.score
        if score is None or not math.isfinite(score):
            skipped["unscored"] += 1
            continue
        steps: list[LoggedStep] = []
        history: list[Step] = []
        usable = True
        for step in trajectory.steps:
            decision = step.decision
            if decision is not None and step.agent.key not in {a.key for a in decision.agents}:
                # a fallback logged before the dispatcher recorded the re-route's decision (it ran under
                # the first one, whose evidence is the first choice's): part of that choice's outcome
                history.append(step)
                continue
            evidence = decision.evidence if decision is not None else {}
            if (
                not isinstance(evidence, dict)
                or "propensity" not in evidence
                or "probabilities" not in evidence
            ):
                if decision is not None:  # routed by a router that logs no propensity
                    usable = False
                    break
                history.append(step)
                continue
            probabilities = {str(k): float(v) for k, v in evidence["probabilities"].items()}
            keys = list(probabilities)
            context = RouteContext(
                query=task.query, candidates=[_agent(k) for k in keys], stage=step.stage, role=step.agent.role,
                step_input=step.input, task_id=task.id, step_index=step.index, history=list(history),
                costs={k: float(v) for k, v in (evidence.get("costs") or {}).items()}, cards=cards,
                query_id=task.metadata.get("query_id"), metadata=served_metadata(task),
            )  # fmt: skip
            steps.append(LoggedStep(context, step.agent.key, float(evidence["propensity"]), probabilities))
            history.append(step)
        if not usable or not steps:
            skipped["no_propensity"] += 1
            continue
        # a step with one candidate (a fallback to the one agent left, a role given one model) is no
        # choice: weight 1 under every router, part of the decisions around it (the task keeps DR)
        steps = [s for s in steps if len(s.probabilities) > 1] or steps[:1]
        if any(s.propensity <= 0 for s in steps):
            skipped["zero_propensity"] += 1  # a choice its logger gave no chance: no weight defined
            continue
        cost = task.cost_usd if task.cost_usd else sum(s.cost_usd for s in trajectory.steps)
        out.append(LoggedTask(task.id, task.task_type, float(score), float(cost), steps, failed))
        if failed:
            _describe_failure(out[-1], trajectory)
    return out, skipped


def served_metadata(task: Task) -> dict[str, Any]:
    """A logged task's metadata as its router saw it when served: without the memory's mark of its
    feedback (:data:`~agentroute.memory.codec.FEEDBACK_KEY`), which came after its outcome."""
    from agentroute.memory.codec import FEEDBACK_KEY

    return {k: v for k, v in task.metadata.items() if k != FEEDBACK_KEY}


def _describe_failure(task: LoggedTask, trajectory: Trajectory) -> None:
    """A failed task's last error, and whether its last failed call was an outage (every candidate
    of its decision failed: :func:`~agentroute.outcomes.outage_steps`, the rule the fits learn by)."""
    bad = [s for s in trajectory.steps if s.status != "ok"]
    if not bad:
        return
    task.error = f"{bad[-1].error}"
    task.every_agent_failed = bad[-1].id in outage_steps(trajectory)


class RewardModel:
    """q̂(x, a): mean logged score and cost per (task type, agent), shrunk toward the agent's own
    mean with ``shrinkage`` pseudo-counts (an agent never logged: the global mean), keyed by the
    agent of each task's first routed step (DR's control variate is that decision's). The agent's mean is not shrunk
    toward other agents': an agent's cost is its own (a constant per-call cost is then estimated
    exactly), and its score the data of its own calls. The rule is :func:`_shrunk_means`'s, which DR
    also refits on every bootstrap resample."""

    def __init__(self, *, shrinkage: float = 5.0):
        self.shrinkage = shrinkage

    def fit(self, tasks: Sequence[LoggedTask]) -> RewardModel:
        self.types_ = sorted({str(t.task_type) for t in tasks})
        self.agents_ = sorted({t.steps[0].chosen for t in tasks})
        cells = _Cells(tasks, self.types_, self.agents_)
        y = np.array([(t.score, t.cost) for t in tasks]).reshape(-1, 2)
        glob, agent, q = _shrunk_means(cells, y, np.ones((1, len(tasks))), self.shrinkage)
        self.global_, self.agent_, self.q_ = glob[0], agent[0], q[0]
        return self

    def predict(self, task_type: str | None, agent: str) -> np.ndarray:
        """[score, cost] expected of ``agent`` on a task of ``task_type``."""
        if agent not in self.agents_:
            return self.global_
        a = self.agents_.index(agent)
        if str(task_type) not in self.types_:
            return self.agent_[a]
        return self.q_[self.types_.index(str(task_type)), a]


class _Cells:
    """Each task's (task type, agent of its first routed step) cell, as indices into ``types`` and
    ``agents`` and as a one-hot matrix (n × types·agents): what :func:`_shrunk_means` sums over."""

    def __init__(self, tasks: Sequence[LoggedTask], types: list[str], agents: list[str]):
        col = {a: j for j, a in enumerate(agents)}
        row = {t: i for i, t in enumerate(types)}
        self.t = np.array([row[str(t.task_type)] for t in tasks], dtype=int)
        self.a = np.array([col[t.steps[0].chosen] for t in tasks], dtype=int)
        self.shape = (len(types), len(agents))
        self.onehot = np.zeros((len(tasks), len(types) * len(agents)))
        self.onehot[np.arange(len(tasks)), self.t * len(agents) + self.a] = 1.0


def _shrunk_means(
    cells: _Cells, y: np.ndarray, mult: np.ndarray, k: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reward model's rule, the one home of it, under task multiplicities ``mult`` (B × n: B
    draws at once): the global mean of ``y`` (n × [score, cost]), B × 2; each agent's own mean (the
    global one for an agent that holds no task), B × agents × 2; and each (type, agent) cell's mean
    shrunk toward its agent's with ``k`` pseudo-counts (an empty cell: its agent's mean),
    B × types × agents × 2."""
    (n_types, n_agents), n = cells.shape, len(y)
    total = mult.sum(axis=1)
    glob = np.divide(mult @ y, total[:, None], out=np.zeros((len(mult), 2)), where=total[:, None] > 0)
    shape = (len(mult), n_types, n_agents)
    s_c = (mult @ (cells.onehot[:, :, None] * y[:, None, :]).reshape(n, -1)).reshape(*shape, 2)
    n_c = (mult @ cells.onehot).reshape(shape)
    s_a, n_a = s_c.sum(axis=1), n_c.sum(axis=1)
    agent = np.where(n_a[..., None] > 0, s_a / np.maximum(n_a, 1)[..., None], glob[:, None, :])
    return glob, agent, (s_c + k * agent[:, None]) / (n_c + k)[..., None]


_BOOT_CELLS = 2_000_000
"""Bootstrap draws × tasks computed at once (a matrix of that many floats, 16 MB)."""


def _query_key(task: LoggedTask) -> str:
    """The logged query a task served (its ``query_id``, else its text: clients of ``serve`` rarely
    send an id): the unit the bootstrap resamples and the held-out split draws, so a query served
    twice is one draw, on one side."""
    context = task.steps[0].context
    return f"id:{context.query_id}" if context.query_id else f"text:{context.query}"


def _policy(router: Router, step: LoggedStep) -> dict[str, float]:
    """π(· | x) of the candidate on a logged context: its reported probabilities, else one-hot."""
    decision = router.route(step.context)
    reported = decision.evidence.get("probabilities") if isinstance(decision.evidence, dict) else None
    if isinstance(reported, dict) and reported:
        return {str(k): float(v) for k, v in reported.items()}
    return {decision.agent.key: 1.0}


def estimate_router(
    router: Router,
    tasks: Sequence[LoggedTask],
    *,
    name: str | None = None,
    reward_model: RewardModel | None = None,
    n_boot: int = 500,
    level: float = 0.95,
    seed: int = 0,
) -> CounterfactualEstimate:
    """IPS, SNIPS and DR estimates of ``router``'s mean score and cost on the logged ``tasks``.

    The router decides in the mode it is in (routers start in ``serve``; an exploring router in
    ``explore`` is evaluated as the stochastic policy its ``probabilities`` describe).
    ``reward_model`` gives the shrinkage of q̂, which is fitted on ``tasks`` (and refitted on every
    bootstrap resample).
    """
    if not tasks:
        raise ConfigurationError(
            "no logged tasks with propensities to estimate from (serve with an exploring router)"
        )
    check_bootstrap(n_boot, level, "percentile")  # each tail holds a resample: no interval from a handful
    shrinkage = reward_model.shrinkage if reward_model is not None else RewardModel().shrinkage
    n = len(tasks)
    w = np.ones(n)
    _embed_contexts_at_once(router, tasks)
    policies: list[dict[str, float]] = []  # π(· | x) at each task's first routed step, for DR
    for i, t in enumerate(tasks):
        for j, s in enumerate(t.steps):
            pi = _policy(router, s)
            w[i] *= pi.get(s.chosen, 0.0) / s.propensity
            if j == 0:
                policies.append(pi)
            if w[i] == 0.0:
                break
    y = np.array([[t.score, t.cost] for t in tasks])
    # per-cluster sums (a cluster: the tasks of one logged query), so that the bootstrap resamples
    # queries, not tasks: the same query served twice is not two independent draws. Clusters are
    # numbered in key order, so the same logs give the same intervals in whatever order they come
    # (tasks that finished concurrently are stored, and returned, in a different order each run)
    keys = [_query_key(t) for t in tasks]
    cluster_of = {key: i for i, key in enumerate(sorted(set(keys)))}
    ids = np.array([cluster_of[key] for key in keys])
    m = len(cluster_of)
    dr = _DoublyRobust(tasks, policies, y, w, shrinkage)

    def estimates(mult: np.ndarray) -> dict[str, np.ndarray]:
        """Each estimate (B × [score, cost]) under task multiplicities ``mult`` (B × n)."""
        total_n, total_w = mult.sum(axis=1)[:, None], (mult @ w)[:, None]
        wy = mult @ (w[:, None] * y)
        snips = np.divide(wy, total_w, out=np.full(wy.shape, np.nan), where=total_w > 0)
        dr_mean, dm_mean = dr(mult)
        return {"ips": wy / total_n, "snips": snips, "dr": dr_mean, "dm": dm_mean}

    point = {k: v[0] for k, v in estimates(np.ones((1, n))).items()}
    rng = np.random.default_rng(seed)
    boots: dict[str, list[np.ndarray]] = {k: [] for k in point}
    chunk = max(1, min(n_boot, _BOOT_CELLS // max(n, 1)))  # resamples computed at once, in matrix products
    with bar(n_boot, f"bootstrap {name or router.name}", unit="resample") as b:
        for start in range(0, n_boot, chunk):
            size = min(chunk, n_boot - start)
            # how often each task was drawn: its query's draws (drawn one resample at a time, as ever)
            counts = np.stack([np.bincount(rng.integers(0, m, m), minlength=m) for _ in range(size)])
            for k, v in estimates(counts[:, ids].astype(float)).items():
                boots[k].append(v)
            b.update(size)
    alpha = (1 - level) / 2
    intervals: dict[str, list[float]] = {}
    for k, values in boots.items():
        if not values:
            continue
        arr = np.concatenate(values)
        for j, what in enumerate(("score", "cost")):
            col = arr[:, j][np.isfinite(arr[:, j])]
            if len(col):
                intervals[f"{what}_{k}"] = [
                    float(np.quantile(col, alpha)),
                    float(np.quantile(col, 1 - alpha)),
                ]
    ess = float(w.sum() ** 2 / (w**2).sum()) if (w**2).sum() > 0 else 0.0
    return CounterfactualEstimate(
        router=name or router.name,
        n=n,
        matched=float((w > 0).mean()),
        ess=ess,
        score={k: _num(v[0]) for k, v in point.items()},
        cost={k: _num(v[1]) for k, v in point.items()},
        intervals=intervals,
        level=level,
        notes=_several_steps_note(tasks),
    )


def _embed_contexts_at_once(router: Router, tasks: Sequence[LoggedTask]) -> None:
    """Embed the logged contexts in one batch for a router that embeds each context it routes (its
    ``query_chars``: knn, mlp, logreg …): the embedder caches the vectors, which the replay then reads
    one decision at a time (1,000 logged tasks, cold: 16 s of one-by-one encoding → 9.6 s)."""
    if not hasattr(router, "query_chars"):
        return
    from agentroute.routers.utility import embed_contexts

    with phase(f"embedding the logged queries for {router.name}"):
        embed_contexts([s.context for t in tasks for s in t.steps], router.query_chars)


def _several_steps_note(tasks: Sequence[LoggedTask]) -> str:
    several = sum(len(t.steps) > 1 for t in tasks)
    if not several:
        return ""
    return (
        f"{several} of the {len(tasks)} tasks have several routed steps (a graph with several routed roles, or a "
        "failed call routed again among several agents): their weights are trajectory-wise, and DR's reward "
        "model is of their first routed step"
    )


class _DoublyRobust:
    """DR and DM means under task multiplicities ``mult``, the reward model (:class:`RewardModel`'s
    rule, :func:`_shrunk_means`) refitted on each draw: the bootstrap interval carries q̂'s
    uncertainty too."""

    def __init__(
        self,
        tasks: Sequence[LoggedTask],
        policies: list[dict[str, float]],
        y: np.ndarray,
        w: np.ndarray,
        k: float,
    ):
        agents = sorted({t.steps[0].chosen for t in tasks} | {a for pi in policies for a in pi})
        col = {a: j for j, a in enumerate(agents)}
        self.cells = _Cells(tasks, sorted({str(t.task_type) for t in tasks}), agents)
        self.pi = np.zeros((len(tasks), len(agents)))
        for i, pi in enumerate(policies):
            for a, p in pi.items():
                self.pi[i, col[a]] = p
        self.y, self.w, self.k = y, w, k
        n, (n_types, n_agents) = len(tasks), self.cells.shape
        # π(· | xᵢ) in task i's type's block of cells, and wᵢ in its logged cell: DM's and the
        # correction's sums are then matrix products with the draws' multiplicities
        pi_cells = np.zeros((n, n_types, n_agents))
        pi_cells[np.arange(n), self.cells.t] = self.pi
        self.pi_cells = pi_cells.reshape(n, -1)
        self.w_cells = self.cells.onehot * w[:, None]
        self.wy = w[:, None] * y

    def __call__(self, mult: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(DR, DM) means, each B × [score, cost], under multiplicities ``mult`` (B × n)."""
        q = _shrunk_means(self.cells, self.y, mult, self.k)[2].reshape(len(mult), -1, 2)  # (B, cells, 2)
        total = mult.sum(axis=1)[:, None]
        dm = np.einsum("bc,bcj->bj", mult @ self.pi_cells, q)
        logged = np.einsum("bc,bcj->bj", mult @ self.w_cells, q)
        return (dm + mult @ self.wy - logged) / total, dm / total


def _num(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def evaluate_from_memory(
    memory_url: str | None,
    routers: Sequence[str | Router],
    *,
    pool: Any = None,
    graph: str | None = None,
    n_boot: int = 500,
    level: float = 0.95,
    seed: int = 0,
    holdout: float = 0.5,
    progress: bool = True,
) -> dict[str, Any]:
    """Counterfactual estimates of each router in ``routers`` on the traffic logged in a memory.

    ``routers``: registered names (``name:key=value`` …), directories saved by ``train``, or
    instances. A trained directory whose agents are none of the logged candidates is a
    :class:`ConfigurationError` naming them; logged candidates it never saw are listed in
    ``warnings`` (:func:`~agentroute.routers.base.check_pool`).

    A router given by name that learns from data (its class has its own ``fit``) is fitted on the
    tasks of a seeded ``1 − holdout`` share of the logged queries (a query served twice is on one
    side; drawn by query id, so the same logs give the same split in whatever order they were
    stored; importance-weighted by their propensities,
    :attr:`~agentroute.outcomes.OutcomeTable.weights`) and every router is then estimated on the
    other share (stated in the result), so no router is judged on the queries it learned from.
    ``pool`` gives the model cards routers read (a YAML path or a :class:`ModelPool`; default: the
    local pool); ``graph`` keeps only that graph's tasks. ``progress``: a bar on stderr for each
    long phase (reading the memory, each fit, each router's bootstrap), as :mod:`agentroute.progress`
    shows them (``False``: none).
    """
    from pathlib import Path

    from agentroute.eval.harness import MIN_TEST_QUERIES, make_eval_router
    from agentroute.memory import open_memory
    from agentroute.pool import ModelPool

    cards = {card.id: card for card in (pool if isinstance(pool, ModelPool) else ModelPool.load(pool))}
    show = None if progress else False
    with phase("reading the memory", show=show), open_memory(memory_url) as store:
        trajectories = store.trajectories(graph=graph)  # unscored ones too: they are counted as skipped
        url = store.url
    if graph is not None and not trajectories:
        raise ConfigurationError(
            f"no tasks of graph {graph!r} in {url} (--graph takes the name a graph was compiled with)"
        )
    with phase("reading the logged decisions", show=show):
        tasks, skipped = logged_tasks(trajectories, cards=cards)
    # by task id: the same logs give the same split and the same sums whatever order the store returns
    # them in (tasks that finished concurrently are stored in a different order on each run)
    tasks.sort(key=lambda t: t.task_id)
    if not tasks:
        raise ConfigurationError(
            f"no scored tasks with logged propensities in {url} ({skipped}): serve traffic with an exploring "
            "router (e.g. --router explore) and score the tasks (feedback, or run --input with gold answers)"
        )
    built: list[tuple[str, Router]] = []
    needs_fit: list[Router] = []
    warnings: list[str] = []
    logged_agents = list(dict.fromkeys(a for t in tasks for s in t.steps for a in s.context.candidates))
    for spec in routers:
        if isinstance(spec, str) and Path(spec).is_dir():
            built.append((spec, Router.load(spec)))
            # a trained router must know the logged candidates (agentroute.routers.base.check_pool):
            # none of them is an error; some unseen ones are estimated all the same, with a warning
            warnings += check_pool(built[-1][1], logged_agents, allow_new_agents=True, source=spec)
            continue
        built.append(make_eval_router(spec, seed=seed))
        router = built[-1][1]
        router.check_agents(logged_agents, "the logged candidates")  # e.g. fixed:model=ID never offered
        if (
            isinstance(spec, str)
            and type(router).fit is not Router.fit
            and not getattr(router, "fitted_", False)
        ):
            needs_fit.append(router)  # a router by name that learns from data: fit it on held-out logs
    train_ids: set[str] = set()
    evaluated = tasks
    if needs_fit:
        # by logged query, not by task: a query served twice would otherwise be learned from on one
        # side and judged on the other (a router that remembers its training queries looks right)
        queries = sorted({_query_key(t) for t in tasks})
        order = np.random.default_rng(seed).permutation(len(queries))
        fit_queries = {queries[i] for i in order[: int(round((1 - holdout) * len(queries)))]}
        train_ids = {t.task_id for t in tasks if _query_key(t) in fit_queries}
        evaluated = [t for t in tasks if t.task_id not in train_ids]
        # failed calls are learned as scored 0, but for an outage (agentroute.outcomes.learned_scores)
        fit_on = [t for t in trajectories if t.task.id in train_ids]
        for router in needs_fit:
            with phase(f"fitting {router.name} on {len(fit_on)} logged tasks", show=show):
                router.fit(fit_on)
    q = RewardModel().fit(evaluated)
    with bar(len(built), "estimating", unit="router", show=show) as b:  # each router's bootstrap nested
        results = []
        for name, router in built:
            estimate = estimate_router(
                router, evaluated, name=name, reward_model=q, n_boot=n_boot, level=level, seed=seed
            )
            results.append(estimate.as_dict())
            b.update(1)
    logged = {
        "score": float(np.mean([t.score for t in evaluated])),
        "cost": float(np.mean([t.cost for t in evaluated])),
    }
    n_queries = len({_query_key(t) for t in evaluated})
    if n_queries < MIN_TEST_QUERIES:  # the bootstrap resamples queries: a handful gives no interval
        held = f" (the other {len(train_ids)} tasks fitted the learned routers)" if train_ids else ""
        warnings.append(
            f"only {n_queries} logged queries to estimate on{held}: one more or less moves a mean score by "
            f"{1 / n_queries:.2g}; estimates and intervals from fewer than {MIN_TEST_QUERIES} are not to be trusted"
        )
    warnings += _failed_warning(evaluated) + _outside_logged_range(results, evaluated)
    return {
        "memory": url,
        "tasks": len(tasks),
        "evaluated_on": len(evaluated),
        "fitted_on": len(train_ids),
        "skipped": skipped,
        "failed_scored_0": sum(t.failed for t in evaluated),
        "logged_policy": logged,
        "level": level,
        "routers": results,
        "warnings": warnings,
    }


def _failed_warning(tasks: Sequence[LoggedTask]) -> list[str]:
    """What the failed tasks scored 0 failed of: an outage (every candidate failed) lowers every
    router's estimate alike; a failure of some agents counts against the routers choosing them."""
    failed = [t for t in tasks if t.failed]
    if not failed:
        return []
    every = sum(t.every_agent_failed for t in failed)
    return [
        f"{len(failed)} failed tasks are scored 0 (no answer reached their users): {every} after every candidate "
        f"failed (an outage: no router could have answered them), {len(failed) - every} after the agents tried "
        f"failed; last error: {failed[-1].error}"
    ]


def _outside_logged_range(results: list[dict[str, Any]], tasks: Sequence[LoggedTask]) -> list[str]:
    """A warning per score estimate outside the range of the logged scores: IPS and DR are
    unbiased, not bounded, so a mean no router can reach says the log is thin for it (low ESS).
    (Costs have no such bound: a router may pay more than any logged task did.)"""
    lo, hi = min(t.score for t in tasks), max(t.score for t in tasks)
    out = []
    for r in results:
        outside = [
            f"{how.upper()} {v:.4g}" for how, v in r["score"].items() if v is not None and not lo <= v <= hi
        ]
        if outside:
            out.append(
                f"{r['router']}: score {', '.join(outside)} outside the logged scores' range [{lo:.4g}, {hi:.4g}] "
                f"(unbiased estimators are not bounded; ESS {r['ess']:.0f}): log more traffic, or explore more"
            )
    return out


def _skipped_text(skipped: Mapping[str, int]) -> str:
    """``3 unscored, 0 routed without propensities, 0 with a zero propensity``."""
    words = {
        "unscored": "unscored",
        "no_propensity": "routed without propensities",
        "zero_propensity": "with a zero propensity",
    }
    return ", ".join(f"{skipped.get(key, 0)} {text}" for key, text in words.items())


def print_counterfactual(result: Mapping[str, Any], console: Any = None) -> None:
    """A table of the estimates (what ``agentroute eval --from MEMORY_URL`` prints)."""
    from rich.console import Console
    from rich.table import Table

    from agentroute.cli.eval_cmd import print_whole

    console = console or Console()
    bootstrapped = any(r["intervals"] for r in result["routers"])  # none with --boot 0
    fitted = (
        f"; learned routers fitted on {result['fitted_on']} other logged tasks" if result["fitted_on"] else ""
    )
    console.print(
        f"[bold]{result['memory']}[/]: {result['evaluated_on']} logged tasks with propensities{fitted}; "
        f"skipped {_skipped_text(result['skipped'])}; {result.get('failed_scored_0', 0)} failed tasks scored 0; logging policy: score {result['logged_policy']['score']:.3f}, "
        f"cost ${result['logged_policy']['cost']:.6f}; "
        + (f"{100 * result['level']:.0f}% bootstrap intervals" if bootstrapped else "no intervals (--boot 0)")
    )
    table = Table(title="counterfactual estimates", title_justify="left")
    for col in ("router", "matched", "ESS", "score IPS", "score SNIPS", "score DR", "cost IPS", "cost DR"):
        table.add_column(col, justify="left" if col == "router" else "right")

    def cell(r: Mapping[str, Any], what: str, how: str, money: bool = False) -> str:
        value = r[what].get(how)
        if value is None:
            return "—"
        fmt = (lambda x: f"${x:.6f}") if money else (lambda x: f"{x:.3f}")
        bounds = r["intervals"].get(f"{what}_{how}")
        if bounds is None:  # no resamples (--boot 0), or none finite
            return fmt(value)
        return f"{fmt(value)} [{fmt(bounds[0])}, {fmt(bounds[1])}]"

    for r in result["routers"]:
        table.add_row(
            r["router"], f"{r['matched']:.2f}", f"{r['ess']:.0f}", cell(r, "score", "ips"), cell(r, "score", "snips"),
            cell(r, "score", "dr"), cell(r, "cost", "ips", True), cell(r, "cost", "dr", True),
        )  # fmt: skip
    print_whole(console, table)  # at its own width: no router name or figure cut to "…" in a pipe
    for note in dict.fromkeys(r["notes"] for r in result["routers"] if r.get("notes")):
        console.print(f"note: {note}")
    for warning in result.get("warnings", []):
        console.print(f"[yellow]warning:[/] {warning}")


def eval_from_memory_command(
    memory_url: str,
    routers: str,
    *,
    pool: str | None = None,
    graph: str | None = None,
    json_output: bool = False,
    seed: int = 0,
    n_boot: int = 500,
    level: float = 0.95,
) -> dict[str, Any]:
    """``agentroute eval --from MEMORY_URL --routers a,b``: print the estimates (or one JSON
    object); a bad input exits 2, as every command does."""
    import json

    import typer

    from agentroute.cli.errors import error_text, exit_code_for, print_error
    from agentroute.cli.memory_cmd import existing_memory_url
    from agentroute.errors import AgentrouteError

    names = [r.strip() for r in routers.split(",") if r.strip()]
    try:
        if not names:
            raise ConfigurationError("--routers is empty")
        result = evaluate_from_memory(
            existing_memory_url(memory_url),
            names,
            pool=pool,
            graph=graph,
            n_boot=n_boot,
            level=level,
            seed=seed,
            progress=not json_output,  # bars on a terminal's stderr ($AGENTROUTE_PROGRESS), none with --json
        )
    except AgentrouteError as exc:
        print_error(error_text(exc))  # a PostgreSQL URL that cannot be reached: one line
        raise typer.Exit(exit_code_for(exc)) from None
    if json_output:
        typer.echo(json.dumps(result))
    else:
        print_counterfactual(result)
    return result

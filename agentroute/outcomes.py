"""Logged outcomes as a table: queries × agents → score and cost.

The common form in which learned routers consume training data, whichever source it came from:
a logged-outcome dataset (:mod:`agentroute.eval`) or trajectories from the SQL memory.
Missing outcomes are ``nan`` and are never scored as 0.

**Columns are routing targets** (this module is the one home of the rule):

- trajectories from the memory give one column per **agent key** ``role:model:strategy``
  (:attr:`~agentroute.types.Agent.key`), so a one-model pool in three strategies is three targets and
  two roles played by the same ``model:strategy`` are two;
- logged-outcome datasets (RouterBench, RouteLLM, ``outcomes:`` files) have no roles: their columns
  are ``model`` (strategy ``direct``) or ``model:strategy`` (:func:`agent_column`), and such a column
  stands for that model and strategy in any role.

:func:`find_column` looks a candidate up in a router's columns — its agent key first, then the
role-free name — so routers trained from datasets, from the memory, or saved by older versions
(role-free columns) all route over agents.

**Bandit feedback.** A step routed by an exploring router logs the propensity p(a | x) of the agent
it ran (``Decision.evidence["propensity"]``). :meth:`OutcomeTable.from_trajectories` turns these into
per-cell importance weights (``weights``), which the learned routers use in their fits: see
:func:`propensity_weights`.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agentroute.errors import ConfigurationError
from agentroute.types import Agent, Step, Task, Trajectory

#: Default clip of the importance ratio 1/p (see :func:`propensity_weights`).
MAX_IMPORTANCE = 20.0


def agent_column(agent: Agent) -> str:
    """The role-free column of an agent, as datasets name it: its model, plus the strategy unless
    ``direct``.

    >>> agent_column(Agent(model="m", strategy="cot"))
    'm:cot'
    """
    return agent.model if agent.strategy == "direct" else f"{agent.model}:{agent.strategy}"


def column_names(agent: Agent) -> tuple[str, str]:
    """The columns that may hold an agent's outcomes, most specific first: its agent key
    (trajectories from the memory), then its role-free :func:`agent_column` (datasets, routers saved
    before agent keys).

    >>> column_names(Agent(role="planner", model="m", strategy="cot"))
    ('planner:m:cot', 'm:cot')
    """
    return agent.key, agent_column(agent)


def find_column(agent: Agent, columns: Mapping[str, int] | Sequence[str]) -> int | None:
    """The index of ``agent``'s column among ``columns`` (a list of column names, or a name → index
    mapping), by :func:`column_names`; ``None`` when the agent has none (unseen in training).

    >>> find_column(Agent(role="planner", model="m"), ["executor:m:direct", "planner:m:direct"])
    1
    >>> find_column(Agent(role="planner", model="m"), ["m", "m:cot"])
    0
    """
    index = columns if isinstance(columns, Mapping) else {c: j for j, c in enumerate(columns)}
    for name in column_names(agent):
        if name in index:
            return index[name]
    return None


def column_agent(column: str, role: str = "executor") -> Agent:
    """The agent a column stands for: ``role:model:strategy`` (two colons or more: the model is
    what lies between the first and the last), else ``model[:strategy]`` played by ``role``.

    >>> column_agent("planner:m:cot").key
    'planner:m:cot'
    >>> column_agent("m:cot").key
    'executor:m:cot'
    """
    if column.count(":") >= 2:
        head, _, strategy = column.rpartition(":")
        first, _, model = head.partition(":")
        return Agent(role=first, model=model, strategy=strategy or "direct")
    model, _, strategy = column.partition(":")
    return Agent(role=role, model=model, strategy=strategy or "direct")


def propensity_weights(
    propensity: np.ndarray,
    logged: np.ndarray | None = None,
    *,
    clip: float = MAX_IMPORTANCE,
    normalize: bool = True,
) -> np.ndarray:
    """Importance weights (n × m) of logged cells from their propensities p(a | x) (nan: none
    logged, read as p = 1 — a deterministic logging policy). ``logged`` marks the cells that hold
    an outcome (default: all); the others weigh 0.

    A cell's raw weight is 1/p clipped at ``clip`` (truncated importance sampling: Ionides, "Truncated
    Importance Sampling", JCGS 2008; Bottou et al., "Counterfactual Reasoning and Learning Systems",
    JMLR 2013, §4.5), so that no cell weighs more than ``clip`` cells logged with certainty. With
    ``normalize`` (the default) each column's weights are divided by their mean over the column's
    logged cells (self-normalised, Swaminathan & Joachims, "The Self-Normalized Estimator for
    Counterfactual Learning", NeurIPS 2015): a column keeps its number of observations as its
    effective count, and only the *relative* weights of its cells change. Fitting a score model on
    the cells an agent was logged on, with these weights, is importance-weighted regression
    (Bietti, Agarwal & Langford, "A Contextual Bandit Bake-off", JMLR 2021, §3: IWR): it undoes
    the shift between the contexts where the logging policy chose the agent and all contexts.

    >>> propensity_weights(np.array([[0.5], [0.1], [np.nan]]), clip=5.0).round(3).tolist()
    [[0.75], [1.875], [0.375]]
    """
    if not isinstance(clip, int | float) or not np.isfinite(clip) or clip < 1:
        raise ConfigurationError(f"the importance clip must be a number ≥ 1 (got {clip!r})")
    p = np.asarray(propensity, dtype=float)
    mask = np.ones(p.shape, dtype=bool) if logged is None else np.asarray(logged, dtype=bool)
    raw = np.where(np.isnan(p), 1.0, 1.0 / np.clip(np.nan_to_num(p, nan=1.0), 1.0 / clip, 1.0))
    raw = np.where(mask, raw, 0.0)
    if not normalize:
        return raw
    count = mask.sum(axis=0)
    mean = raw.sum(axis=0) / np.maximum(count, 1)
    return raw / np.where(mean > 0, mean, 1.0)


MAX_COST_USD = 1e9
"""The largest logged cost of one call (USD): beyond it a cell is a unit or export error (``1e308``),
and the figures derived from it (a model's price per token, a router's cost scale) overflow."""


def bad_costs(costs: Any) -> np.ndarray:
    """Where a logged cost breaks the rule of every outcome table and outcomes file: a number in
    [0, :data:`MAX_COST_USD`] (``nan``: not logged, allowed; ``inf`` and negatives are not)."""
    c = np.asarray(costs, dtype=float)
    return ~np.isnan(c) & ~((c >= 0) & (c <= MAX_COST_USD))


@dataclass
class OutcomeTable:
    """``scores[i, j]`` and ``costs[i, j]`` of agent column ``j`` on query ``i``.

    ``propensity[i, j]`` (optional; nan where none was logged) is the probability with which the
    logging router chose agent ``j`` on query ``i``; ``importance_clip`` is the clip of the
    importance ratio the fits use (``None``: no weighting). :attr:`weights` gives the per-cell
    weights every learned router fits with (:func:`propensity_weights`).
    """

    query_ids: list[str]
    queries: list[str]
    models: list[str]
    scores: np.ndarray
    costs: np.ndarray
    task_types: list[str | None] = field(default_factory=list)
    responses: list[list[str]] | None = None
    gold: list[str | None] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    propensity: np.ndarray | None = None
    importance_clip: float | None = MAX_IMPORTANCE

    def __post_init__(self) -> None:
        n, m = len(self.queries), len(self.models)
        if self.scores.shape != (n, m) or self.costs.shape != (n, m):
            raise ConfigurationError(
                f"outcome arrays must be {(n, m)} (got scores {self.scores.shape}, costs {self.costs.shape})"
            )
        if len(self.query_ids) != n:
            raise ConfigurationError(f"{len(self.query_ids)} query ids for {n} queries")
        self._check_costs()
        if not self.task_types:
            self.task_types = [None] * n
        if self.propensity is not None:
            self.propensity = np.asarray(self.propensity, dtype=float)
            if self.propensity.shape != (n, m):
                raise ConfigurationError(f"propensity must be {(n, m)} (got {self.propensity.shape})")
            if np.any(self.propensity[~np.isnan(self.propensity)] <= 0) or np.any(self.propensity > 1):
                raise ConfigurationError("propensities must lie in (0, 1]")

    def _check_costs(self) -> None:
        """A logged cost obeys :func:`bad_costs`' rule (nan: not logged). An infinite cost would give
        its model utility −∞ in every cost-aware router, which would then never route there without
        saying why; a negative one would pay a router for choosing it; a huge one overflows the
        prices derived from it."""
        bad = bad_costs(self.costs)
        if not bad.any():
            return
        i, j = (int(v) for v in np.argwhere(bad)[0])
        query = str(self.queries[i])
        raise ConfigurationError(
            f"outcome table: the cost of {self.models[j]!r} on query {self.query_ids[i]!r} (table row {i + 1}, "
            f"{query[:60]!r}{'…' if len(query) > 60 else ''}) is {float(self.costs[i, j])!r}: a cost must be a finite "
            f"number ≥ 0 in USD, at most {MAX_COST_USD:g} a call (nan: not logged); {int(bad.sum())} such cell(s) in all"
        )

    @property
    def weighted(self) -> bool:
        """Whether the fits weight cells: some propensity is logged and weighting is on."""
        return (
            self.propensity is not None
            and self.importance_clip is not None
            and bool(np.any(~np.isnan(self.propensity) & ~np.isnan(self.scores)))
        )

    @property
    def weights(self) -> np.ndarray:
        """Per-cell fit weights (n × m): 0 where no outcome is logged; 1 on every logged cell of a
        full-information table (or with ``importance_clip=None``); else the clipped,
        column-normalised importance weights of :func:`propensity_weights`."""
        logged = ~np.isnan(self.scores)
        if not self.weighted:
            return logged.astype(float)
        return propensity_weights(self.propensity, logged, clip=float(self.importance_clip))  # type: ignore[arg-type]

    def unweighted(self) -> OutcomeTable:
        """The same table with importance weighting off (every logged cell weighs 1)."""
        out = self.rows(np.arange(len(self)))
        out.importance_clip = None
        return out

    def __len__(self) -> int:
        return len(self.queries)

    def column(self, agent: Agent) -> int | None:
        """The column of ``agent`` (:func:`find_column`), ``None`` when it has none."""
        return find_column(agent, self.models)

    def rows(self, index: Sequence[int] | np.ndarray) -> OutcomeTable:
        idx = np.asarray(index, dtype=int)
        pick = lambda xs: [xs[i] for i in idx]  # noqa: E731
        return OutcomeTable(
            query_ids=pick(self.query_ids),
            queries=pick(self.queries),
            models=list(self.models),
            scores=self.scores[idx],
            costs=self.costs[idx],
            task_types=pick(self.task_types),
            responses=pick(self.responses) if self.responses is not None else None,
            gold=pick(self.gold) if self.gold is not None else None,
            metadata=dict(self.metadata),
            propensity=self.propensity[idx] if self.propensity is not None else None,
            importance_clip=self.importance_clip,
        )

    def columns(self, index: Sequence[int] | np.ndarray) -> OutcomeTable:
        """The table restricted to the agent columns ``index``, in that order."""
        idx = np.asarray(index, dtype=int)
        return OutcomeTable(
            query_ids=list(self.query_ids),
            queries=list(self.queries),
            models=[self.models[j] for j in idx],
            scores=self.scores[:, idx],
            costs=self.costs[:, idx],
            task_types=list(self.task_types),
            responses=[[r[j] for j in idx] for r in self.responses] if self.responses is not None else None,
            gold=list(self.gold) if self.gold is not None else None,
            metadata=dict(self.metadata),
            propensity=self.propensity[:, idx] if self.propensity is not None else None,
            importance_clip=self.importance_clip,
        )

    def split(self, fraction: float, *, seed: int = 0) -> tuple[OutcomeTable, OutcomeTable]:
        """A seeded random split into (first ``fraction``, rest), e.g. train → (train, validation)."""
        order = np.random.default_rng(seed).permutation(len(self))
        cut = int(round(fraction * len(self)))
        return self.rows(np.sort(order[:cut])), self.rows(np.sort(order[cut:]))

    # -- conversions ------------------------------------------------------------------------
    def to_trajectories(self, *, role: str = "executor", graph: str = "logged") -> list[Trajectory]:
        """One single-step trajectory per logged (query, agent) outcome."""
        out = []
        for i, query in enumerate(self.queries):
            for j, column in enumerate(self.models):
                if np.isnan(self.scores[i, j]):
                    continue
                task = Task(
                    query=query,
                    graph=graph,
                    task_type=self.task_types[i],
                    status="done",
                    cost_usd=float(self.costs[i, j]),
                    score=float(self.scores[i, j]),
                    metadata={"query_id": self.query_ids[i]},
                )
                step = Step(
                    task_id=task.id,
                    index=0,
                    stage="execute",
                    agent=column_agent(column, role),
                    input=query,
                    output=self.responses[i][j] if self.responses is not None else "",
                    cost_usd=float(self.costs[i, j]),
                    score=float(self.scores[i, j]),
                )
                out.append(Trajectory(task=task, steps=[step]))
        return out

    @classmethod
    def from_trajectories(
        cls, trajectories: Iterable[Trajectory], *, importance_clip: float | None = MAX_IMPORTANCE
    ) -> OutcomeTable:
        """Each step with a :func:`learned_scores` score (a failed call's 0 included) becomes a cell of its agent key's
        column (``role:model:strategy``) in its row (:func:`step_row`; a row without a query id takes
        its text's id, :func:`borrowed_query_ids`); repeated outcomes of a cell are averaged, as the
        outcomes file loader averages repeated rows. A step whose decision logged a ``propensity``
        (an exploring router's) gives its cell that propensity, so that the fits weight it
        (``importance_clip``; ``None``: no weighting)."""
        trajectories = list(trajectories)
        scored = [
            (traj, step, score)
            for traj in trajectories
            for step, score in learned_scores(traj)
            if score is not None
        ]
        places = [step_row(traj, step) for traj, step, _ in scored]
        ids = borrowed_query_ids([query_id for query_id, _ in places], [text for _, text in places])
        rows: dict[str, int] = {}
        queries: list[str] = []
        task_types: list[str | None] = []
        cols: dict[str, int] = {}
        cells: dict[tuple[int, int], list[tuple[float, float, float]]] = {}
        for (traj, step, score), (_, text), query_id in zip(scored, places, ids, strict=True):
            key = query_id or text
            if key not in rows:
                rows[key] = len(queries)
                queries.append(text)
                task_types.append(traj.task.task_type)
            col = cols.setdefault(step.agent.key, len(cols))
            cells.setdefault((rows[key], col), []).append(
                (float(score), float(step.cost_usd), _propensity(step))
            )
        if not cells:
            raise ConfigurationError(
                f"no scored steps in the {len(trajectories)} trajectories: nothing to learn from. Score tasks "
                "(`agentroute feedback TASK_ID --score X`, or `agentroute run --input` lines with answers; "
                "docs/learning.md), or train on a file of logged outcomes (docs/outcomes.md)"
            )
        shape = (len(queries), len(cols))
        scores, costs, propensity = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
        for (i, j), outcomes in cells.items():
            scores[i, j], costs[i, j], propensity[i, j] = _mean_outcome(outcomes)
        logged_p = bool(np.any(~np.isnan(propensity)))
        return cls(
            list(rows), queries, list(cols), scores, costs, task_types,
            propensity=propensity if logged_p else None, importance_clip=importance_clip,
        )  # fmt: skip


def ordered_steps(trajectory: Trajectory) -> list[Step]:
    """``trajectory``'s steps in the memory's step order (:data:`~agentroute.memory.queries.STEP_ORDER`:
    index, creation time, id), the same in every read, whichever way the trajectory came."""
    from agentroute.memory.queries import step_sort_key  # sqlalchemy, only once steps are ordered

    return sorted(trajectory.steps, key=step_sort_key)


def feedback_score(score: Any, *, name: str = "feedback score") -> float:
    """``score`` as a feedback score: a number in [0, 1] (1 = right), as routers learn scores; else
    a :class:`ConfigurationError` naming it as ``name``. The one home of the rule for
    ``memory.add_feedback`` and ``agentroute feedback --score``."""
    if (
        isinstance(score, bool) or not isinstance(score, numbers.Real) or not 0.0 <= float(score) <= 1.0
    ):  # nan too
        raise ConfigurationError(f"{name} must be a number in [0, 1], 1 = right (got {score!r})")
    return float(score)


def recorded_candidates(step: Step) -> set[str]:
    """The agent keys a step's decision records as its candidates (an exploring router's
    ``probabilities``, a ``candidates`` list); empty when it records none."""
    evidence = step.decision.evidence if step.decision is not None else None
    if not isinstance(evidence, dict):
        return set()
    given = evidence.get("probabilities") or evidence.get("candidates") or ()
    return {str(key) for key in given} if isinstance(given, dict | list | tuple) else set()


#: The evidence key of how many candidates a decision chose among (:func:`agentroute.routers.base.decide`).
OFFERED = "offered"


def _offered(step: Step) -> int:
    """How many candidates ``step``'s decision chose among, as it records (``0``: not recorded)."""
    evidence = step.decision.evidence if step.decision is not None else None
    count = evidence.get(OFFERED) if isinstance(evidence, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 0


def outage_steps(trajectory: Trajectory) -> set[str]:
    """The ids of ``trajectory``'s failed steps that are nobody's fault: an outage, where every
    candidate of the decision failed; and the last step of a task that ran out of budget or was
    stopped (``budget_exhausted``, ``interrupted``), a call cut short or never made.

    A decision is one routed step and its fallbacks: the steps of one stage on one input. When one
    of them answered (``ok``), its failed steps are their agents' failures. When none did, it is an
    outage if every candidate its decisions record (:func:`recorded_candidates`) failed, or, where
    they record only how many they chose among (``offered``, :func:`agentroute.routers.base.decide`),
    if that many agents failed; a decision that records neither (a custom router's own
    ``Decision``, logs older than ``offered``) is known by the agents it tried, so there a step
    whose every try failed is an outage too."""
    runs: dict[tuple[str, str], list[Step]] = {}
    for step in trajectory.steps:
        runs.setdefault((step.stage, step.input), []).append(step)
    out: set[str] = set()
    if trajectory.task.status in ("budget_exhausted", "interrupted") and trajectory.steps:
        last = ordered_steps(trajectory)[-1]
        if last.status == "failed":
            out.add(last.id)
    for steps in runs.values():
        failed = [s for s in steps if s.status == "failed"]
        if not failed or any(s.status == "ok" for s in steps):
            continue
        tried = {s.agent.key for s in failed}
        named = set().union(*(recorded_candidates(s) for s in steps))
        if named <= tried if named else len(tried) >= max(map(_offered, steps), default=0):
            out.update(s.id for s in failed)
    return out


def learned_scores(trajectory: Trajectory) -> list[tuple[Step, float | None]]:
    """Each of ``trajectory``'s steps (:func:`ordered_steps`) with the score it is learned and judged
    by (``None``: not learned):

    - a failed call scores 0 for the agent that made it, unless it is nobody's fault (an outage, a
      call cut by the task's budget or stop: :func:`outage_steps`, ``None``); a blocked step (no
      call) is ``None``;
    - the step the task's score judges takes that score: a one-step task's step, and the answer
      (the last ``ok`` step) of a task whose score is feedback (the memory's read marks it:
      :data:`agentroute.memory.codec.FEEDBACK_KEY`), over its own;
    - any other ``ok`` step, its own score, else its task's.

    So feedback judges the answer it was given on, a task with a fallback included, and a web
    episode's feedback beats its last step's own reward; without feedback a longer task's steps keep
    the scores they reported. The one home of the rule for :meth:`OutcomeTable.from_trajectories`
    (``train --from``, ``eval --from``'s fits) and the memory's ``outcomes`` export
    (:func:`agentroute.memory.export.outcome_rows`)."""
    from agentroute.memory.codec import FEEDBACK_KEY

    steps = ordered_steps(trajectory)
    task_score = trajectory.task.score
    answered = [s for s in steps if s.status == "ok"]
    judged: Step | None = None
    if len(steps) == 1 or FEEDBACK_KEY in trajectory.task.metadata:
        judged = answered[-1] if answered else None
    outage = outage_steps(trajectory) if len(answered) < len(steps) else set()
    out: list[tuple[Step, float | None]] = []
    for step in steps:
        if step.status == "failed":
            out.append((step, None if step.id in outage else 0.0))
        elif step.status != "ok":
            out.append((step, None))
        elif step is judged and task_score is not None:
            out.append((step, task_score))
        else:
            out.append((step, task_score if step.score is None else step.score))
    return out


def step_row(trajectory: Trajectory, step: Step) -> tuple[str | None, str]:
    """The table row a scored step's outcome belongs to, as ``(query_id, text)``: a one-step task's
    row is its query, named by the task's logged ``query_id`` when it has one; a step of a longer
    task is a row for its own input (else the task's query). ``query_id`` is ``None`` where the row
    is named by its text. The one home of the rule for :meth:`OutcomeTable.from_trajectories` and
    the memory's ``outcomes`` export (:func:`agentroute.memory.export.outcome_rows`)."""
    text = step.input or trajectory.task.query
    query_id = trajectory.task.metadata.get("query_id") if len(trajectory.steps) == 1 else None
    return (None if query_id is None else str(query_id)), text


def borrowed_query_ids(ids: Iterable[Any], texts: Sequence[Any]) -> list[str | None]:
    """Each row's query id, where a row without one (``None``, nan or blank) takes the id its query
    text has in the other rows when it has exactly one, else ``None`` (the row is named by its
    text). The one home of the rule for :meth:`OutcomeTable.from_trajectories` and the outcomes
    file loader, so that a log that names some rows of a query and not others (or a step of a
    longer task whose input is a one-step task's query) gives one row from the memory and from
    its export alike."""
    given = [None if q is None or q != q or not str(q).strip() else str(q) for q in ids]
    ids_of: dict[str, set[str]] = {}
    for query_id, text in zip(given, texts, strict=True):
        if query_id is not None:
            ids_of.setdefault(str(text), set()).add(query_id)
    borrowed = [next(iter(known)) if len(known := ids_of.get(str(t), set())) == 1 else None for t in texts]
    return [query_id or other for query_id, other in zip(given, borrowed, strict=True)]


def _mean_outcome(outcomes: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """A cell's (score, cost, propensity) from its repeated outcomes: their means, the propensity's
    over those that logged one (nan when none did)."""
    score, cost, propensity = np.array(outcomes).T
    logged = propensity[~np.isnan(propensity)]
    return float(score.mean()), float(cost.mean()), float(logged.mean()) if len(logged) else np.nan


def _propensity(step: Step) -> float:
    """The logged probability of the step's agent, nan when its router logged none."""
    evidence = step.decision.evidence if step.decision is not None else None
    value = evidence.get("propensity") if isinstance(evidence, dict) else None
    try:
        p = float(value) if value is not None else np.nan
    except (TypeError, ValueError):
        return np.nan
    return p if 0.0 < p <= 1.0 else np.nan


def as_outcome_table(data: Any) -> OutcomeTable:
    """Accept an :class:`OutcomeTable`, anything with ``.train`` (a dataset), or trajectories."""
    if isinstance(data, OutcomeTable):
        return data
    if hasattr(data, "train") and isinstance(data.train, OutcomeTable):
        return data.train
    return OutcomeTable.from_trajectories(data)

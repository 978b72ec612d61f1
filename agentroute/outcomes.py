"""Logged outcomes as a table: queries × agents → score and cost.

The common form in which learned routers consume training data, whichever source it came from:
a logged-outcome dataset (:mod:`agentroute.eval`) or trajectories from the SQL memory.
Missing outcomes are ``nan`` and are never scored as 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agentroute.errors import ConfigurationError
from agentroute.types import Agent, Step, Task, Trajectory


def agent_column(agent: Agent) -> str:
    """The outcome-table column of an agent: its model, plus the strategy unless ``direct``.

    >>> agent_column(Agent(model="m", strategy="cot"))
    'm:cot'
    """
    return agent.model if agent.strategy == "direct" else f"{agent.model}:{agent.strategy}"


def column_agent(column: str, role: str = "executor") -> Agent:
    model, _, strategy = column.partition(":")
    return Agent(role=role, model=model, strategy=strategy or "direct")


@dataclass
class OutcomeTable:
    """``scores[i, j]`` and ``costs[i, j]`` of agent column ``j`` on query ``i``."""

    query_ids: list[str]
    queries: list[str]
    models: list[str]
    scores: np.ndarray
    costs: np.ndarray
    task_types: list[str | None] = field(default_factory=list)
    responses: list[list[str]] | None = None
    gold: list[str | None] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n, m = len(self.queries), len(self.models)
        if self.scores.shape != (n, m) or self.costs.shape != (n, m):
            raise ConfigurationError(
                f"outcome arrays must be {(n, m)} (got scores {self.scores.shape}, costs {self.costs.shape})"
            )
        if len(self.query_ids) != n:
            raise ConfigurationError(f"{len(self.query_ids)} query ids for {n} queries")
        if not self.task_types:
            self.task_types = [None] * n

    def __len__(self) -> int:
        return len(self.queries)

    def column(self, agent: Agent) -> int | None:
        try:
            return self.models.index(agent_column(agent))
        except ValueError:
            return None

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
    def from_trajectories(cls, trajectories: Iterable[Trajectory]) -> OutcomeTable:
        """Each scored ok step becomes a cell (step score, else its task's score); later cells win."""
        rows: dict[str, int] = {}
        queries: list[str] = []
        task_types: list[str | None] = []
        cols: dict[str, int] = {}
        cells: list[tuple[int, int, float, float]] = []
        for traj in trajectories:
            for step in traj.steps:
                score = step.score if step.score is not None else traj.task.score
                if score is None or step.status != "ok":
                    continue
                text = step.input or traj.task.query
                key = str(traj.task.metadata.get("query_id", text)) if len(traj.steps) == 1 else text
                if key not in rows:
                    rows[key] = len(queries)
                    queries.append(text)
                    task_types.append(traj.task.task_type)
                col = cols.setdefault(agent_column(step.agent), len(cols))
                cells.append((rows[key], col, float(score), float(step.cost_usd)))
        if not cells:
            raise ConfigurationError("no scored steps in the trajectories: nothing to learn from")
        scores = np.full((len(queries), len(cols)), np.nan)
        costs = np.full((len(queries), len(cols)), np.nan)
        for i, j, s, c in cells:
            scores[i, j], costs[i, j] = s, c
        return cls(list(rows), queries, list(cols), scores, costs, task_types)


def as_outcome_table(data: Any) -> OutcomeTable:
    """Accept an :class:`OutcomeTable`, anything with ``.train`` (a dataset), or trajectories."""
    if isinstance(data, OutcomeTable):
        return data
    if hasattr(data, "train") and isinstance(data.train, OutcomeTable):
        return data.train
    return OutcomeTable.from_trajectories(data)


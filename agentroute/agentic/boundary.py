"""Boundary policies and the difficulty taxonomy of BoPO (arXiv:2602.21227).

The two *boundary policies* — always-small and always-large — bracket what any router can do on
a task. Rolling each out K = 5 times on every training task (paired: rollout r of both sees the
same resampled queries) sorts the tasks into

- **easy**: the small model succeeds (success rate ≥ ``threshold``),
- **hard**: only the large model succeeds (small below, large at or above ``threshold``),
- **intractable**: both fail (both below ``threshold``).

The paper states the classes in words; the majority reading of "succeeds" over K rollouts
(``threshold`` = 0.5) is ours **[default: our reading]**. The cached rollouts also give the
reference cost of a task (always-large's mean cost, the denominator of C_norm) and anchor BoPO's
reference-guided advantage.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

import numpy as np

from agentroute.agentic.env import AgenticEnv
from agentroute.agentic.rollout import Job, Trace, fixed_tier, rollout
from agentroute.budget import Budget
from agentroute.errors import ConfigurationError

Difficulty = Literal["easy", "hard", "intractable"]
DIFFICULTIES: tuple[Difficulty, ...] = ("easy", "hard", "intractable")


def classify(small_rate: float, large_rate: float, *, threshold: float = 0.5) -> Difficulty:
    """The difficulty class of a task from its boundary success rates.

    >>> classify(0.8, 1.0), classify(0.2, 0.6), classify(0.2, 0.4), classify(0.0, 0.0)
    ('easy', 'hard', 'intractable', 'intractable')
    """
    if not 0 < threshold <= 1:
        raise ConfigurationError(f"threshold must be in (0, 1] (got {threshold})")
    if small_rate >= threshold:
        return "easy"
    if large_rate >= threshold:
        return "hard"
    return "intractable"


@dataclass
class Boundary:
    """Cached boundary rollouts of every task of an environment and what they say about it.

    ``small[i]`` and ``large[i]`` hold the K traces of task ``i``; ``large_cost[i]`` is
    always-large's mean cost on it.
    """

    small: list[list[Trace]]
    large: list[list[Trace]]
    small_rate: np.ndarray
    large_rate: np.ndarray
    large_cost: np.ndarray
    difficulty: list[Difficulty]

    def counts(self) -> dict[str, int]:
        counts = Counter(self.difficulty)
        return {d: counts.get(d, 0) for d in DIFFICULTIES}

    def tasks_of(self, difficulty: Difficulty) -> list[int]:
        return [i for i, d in enumerate(self.difficulty) if d == difficulty]


def boundary_traces(
    env: AgenticEnv,
    tasks: list[int],
    draws: list[list[tuple[int, ...]]],
    *,
    ref_usd: float,
    budget: Budget | None = None,
) -> tuple[list[list[Trace]], list[list[Trace]]]:
    """Always-small and always-large traces of ``tasks`` on the given rows (``draws[i]`` per task)."""
    out = []
    for tier in (0, -1):
        jobs = [
            Job(i, rows, budget, r)
            for i, rows_list in zip(tasks, draws, strict=True)
            for r, rows in enumerate(rows_list)
        ]
        traces = rollout(env, jobs, fixed_tier(tier), ref_usd=ref_usd)
        grouped, pos = [], 0
        for rows_list in draws:
            grouped.append(traces[pos : pos + len(rows_list)])
            pos += len(rows_list)
        out.append(grouped)
    return out[0], out[1]


def boundary_rollouts(
    env: AgenticEnv,
    *,
    rollouts: int = 5,
    seed: int = 0,
    threshold: float = 0.5,
    ref_usd: float,
) -> Boundary:
    """Roll both boundary policies ``rollouts`` times over every task (paired) and classify them."""
    if rollouts < 1:
        raise ConfigurationError(f"boundary rollouts must be >= 1 (got {rollouts})")
    draws = env.draws(seed, rollouts)
    small, large = boundary_traces(env, list(range(len(env.tasks))), draws, ref_usd=ref_usd)
    small_rate = np.array([np.mean([t.result.success for t in ts]) for ts in small])
    large_rate = np.array([np.mean([t.result.success for t in ts]) for ts in large])
    large_cost = np.array([np.mean([t.result.cost_usd for t in ts]) for ts in large])
    difficulty = [classify(s, lg, threshold=threshold) for s, lg in zip(small_rate, large_rate, strict=True)]
    return Boundary(small, large, small_rate, large_rate, large_cost, difficulty)

"""Agentic tasks built from logged outcomes: k-step sequences of same-type queries and their variants.

A *task* is a sequence of ``steps`` logged queries of one task type (e.g. three ARC-Challenge
questions an agent must all answer). Each step also has *equivalent* queries: the anchor plus its
nearest same-type neighbours by embedding (``equivalence="neighbours"``) or any query of the type
(``"task_type"``). Resampling them gives stochastic variants of one task, so that the K rollouts of
the boundary policies in BoPO (Zhang et al., "Budget-Aware Agentic Routing via Boundary-Guided
Training", arXiv:2602.21227) differ while keeping the task's identity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from agentroute.checks import check_count
from agentroute.errors import ConfigurationError

Equivalence = Literal["neighbours", "task_type"]


@dataclass(frozen=True, slots=True)
class AgenticTask:
    """One k-step task: anchor rows of the outcome table and, per step, the equivalent rows.

    ``variants[t]`` always starts with ``rows[t]`` (the anchor).
    """

    id: str
    task_type: str | None
    rows: tuple[int, ...]
    variants: tuple[tuple[int, ...], ...]

    @property
    def steps(self) -> int:
        return len(self.rows)

    def draw(self, rng: np.random.Generator | None) -> tuple[int, ...]:
        """The rows of one rollout: the anchors when ``rng`` is None, else one variant per step."""
        if rng is None:
            return self.rows
        return tuple(int(v[rng.integers(len(v))]) for v in self.variants)


def build_tasks(
    task_types: Sequence[str | None],
    *,
    steps: int,
    variants: int = 1,
    equivalence: Equivalence = "neighbours",
    embeddings: np.ndarray | None = None,
    seed: int = 0,
    prefix: str = "task",
) -> tuple[list[AgenticTask], int]:
    """Group rows into tasks of ``steps`` same-type queries; returns (tasks, rows left over).

    Rows of each type are shuffled with ``seed`` and cut into consecutive chunks of ``steps``; a
    type's last incomplete chunk is left over. With ``variants`` > 1 each step gets ``variants``
    equivalent rows (itself first).

    >>> tasks, left = build_tasks(["a", "a", "b", "a", "b"], steps=2, equivalence="task_type")
    >>> [t.task_type for t in tasks], left
    (['a', 'b'], 1)
    """
    steps, variants = check_count(steps, "steps"), check_count(variants, "variants")
    if equivalence not in ("neighbours", "task_type"):
        raise ConfigurationError(f"equivalence must be 'neighbours' or 'task_type' (got {equivalence!r})")
    if variants > 1 and equivalence == "neighbours" and embeddings is None:
        raise ConfigurationError("equivalence='neighbours' with variants > 1 needs embeddings")
    if embeddings is not None and len(embeddings) != len(task_types):
        raise ConfigurationError(f"{len(embeddings)} embeddings for {len(task_types)} rows")
    rng = np.random.default_rng(seed)
    by_type: dict[str | None, list[int]] = {}
    for i, t in enumerate(task_types):
        by_type.setdefault(t, []).append(i)
    tasks: list[AgenticTask] = []
    left = 0
    for task_type in sorted(by_type, key=lambda t: (t is None, str(t))):
        members = np.array(by_type[task_type])
        equivalents = _equivalents(members, variants, equivalence, embeddings, rng)
        order = rng.permutation(len(members))
        n_full = len(members) // steps
        left += len(members) - n_full * steps
        for c in range(n_full):
            pos = order[c * steps : (c + 1) * steps]
            tasks.append(
                AgenticTask(
                    id=f"{prefix}-{task_type}-{c}",
                    task_type=task_type,
                    rows=tuple(int(members[p]) for p in pos),
                    variants=tuple(equivalents[int(p)] for p in pos),
                )
            )
    return tasks, left


def _equivalents(
    members: np.ndarray,
    variants: int,
    equivalence: Equivalence,
    embeddings: np.ndarray | None,
    rng: np.random.Generator,
) -> list[tuple[int, ...]]:
    """Per member (by position): itself followed by ``variants - 1`` equivalent rows of its type."""
    n = len(members)
    extra = min(variants, n) - 1
    if extra <= 0:
        return [(int(m),) for m in members]
    if equivalence == "task_type":
        out = []
        for p, m in enumerate(members):
            others = np.delete(np.arange(n), p)
            pick = rng.choice(others, size=extra, replace=False)
            out.append((int(m), *(int(members[q]) for q in pick)))
        return out
    assert embeddings is not None
    x = embeddings[members].astype(np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    nearest = np.argsort(-sims, axis=1, kind="stable")[:, :extra]
    return [(int(members[p]), *(int(members[q]) for q in nearest[p])) for p in range(n)]

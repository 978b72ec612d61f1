"""Rewards as plain functions (the TRL habit): keyword arguments in, ``list[float]`` out.

Each takes ``**kwargs`` so it survives new arguments, and several combine with weights through
:func:`combine_rewards`. BoPO's boundary-relative reward (Zhang et al., "Budget-Aware Agentic
Routing via Boundary-Guided Training", arXiv:2602.21227) is

.. math::  R = r_\\text{success} + r_\\text{hard} - \\lambda \\cdot C_\\text{norm},
           \\qquad C_\\text{norm} = \\text{cost} / \\text{cost}(\\text{always-large})

with :math:`r_\\text{hard}` a bonus for succeeding on a task only the large model solves, and the
normaliser the task's always-large cost from the cached boundary rollouts **[default: our
reading]**.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

RewardFunc = Callable[..., list[float]]


def success_reward(*, success: Sequence[bool], **kwargs: Any) -> list[float]:
    """1 for a successful episode, else 0.

    >>> success_reward(success=[True, False])
    [1.0, 0.0]
    """
    return [1.0 if s else 0.0 for s in success]


def hard_reward(*, success: Sequence[bool], difficulty: Sequence[str], **kwargs: Any) -> list[float]:
    """1 for succeeding on a *hard* task (only the large boundary policy solves it), else 0.

    >>> hard_reward(success=[True, True, False], difficulty=["hard", "easy", "hard"])
    [1.0, 0.0, 0.0]
    """
    return [1.0 if s and d == "hard" else 0.0 for s, d in zip(success, difficulty, strict=True)]


def cost_penalty(*, cost: Sequence[float], reference_cost: Sequence[float], **kwargs: Any) -> list[float]:
    """−C_norm: minus the episode's cost over the task's always-large cost (0 when that is 0).

    >>> cost_penalty(cost=[0.5, 2.0, 1.0], reference_cost=[2.0, 2.0, 0.0])
    [-0.25, -1.0, -0.0]
    """
    return [-(c / r) if r > 0 else -0.0 for c, r in zip(cost, reference_cost, strict=True)]


def boundary_reward(
    *,
    success: Sequence[bool],
    difficulty: Sequence[str],
    cost: Sequence[float],
    reference_cost: Sequence[float],
    lam: float = 0.3,
    hard_bonus: float = 0.5,
    **kwargs: Any,
) -> list[float]:
    """BoPO's boundary-relative reward R = r_success + hard_bonus·r_hard − λ·C_norm.

    >>> boundary_reward(success=[True, True, False], difficulty=["hard", "easy", "hard"],
    ...                 cost=[1.0, 0.1, 0.1], reference_cost=[2.0, 2.0, 2.0], lam=0.4)
    [1.3, 0.98, -0.02]
    """
    parts = (
        success_reward(success=success),
        hard_reward(success=success, difficulty=difficulty),
        cost_penalty(cost=cost, reference_cost=reference_cost),
    )
    return [round(s + hard_bonus * h + lam * c, 12) for s, h, c in zip(*parts, strict=True)]


def combine_rewards(
    funcs: Sequence[RewardFunc], weights: Sequence[float] | None = None, **kwargs: Any
) -> list[float]:
    """The weighted sum of several reward functions called with the same keyword arguments.

    >>> combine_rewards([success_reward, cost_penalty], [1.0, 0.5],
    ...                 success=[True, False], cost=[1.0, 1.0], reference_cost=[4.0, 4.0])
    [0.875, -0.125]
    """
    if not funcs:
        raise ValueError("combine_rewards needs at least one reward function")
    weights = list(weights) if weights is not None else [1.0] * len(funcs)
    if len(weights) != len(funcs):
        raise ValueError(f"{len(weights)} weights for {len(funcs)} reward functions")
    total: list[float] | None = None
    for func, w in zip(funcs, weights, strict=True):
        values = func(**kwargs)
        total = (
            [w * v for v in values]
            if total is None
            else [t + w * v for t, v in zip(total, values, strict=True)]
        )
    assert total is not None
    return total

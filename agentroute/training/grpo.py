"""GRPO-style group advantages and the clipped policy loss, shared by the RL trainers.

GRPO (Shao et al., DeepSeekMath, arXiv:2402.03300) replaces the critic by a group baseline: the
G rollouts of one prompt are scored and each advantage is its reward standardised within the
group. BoPO's *reference-guided advantage* (arXiv:2602.21227) adds the cached rollouts of the two
boundary policies to the group's baseline statistics (not to the gradient), so that an
always-small policy cannot look good on a hard task merely by failing cheaply alongside its
group **[default: our reading]**.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def group_advantages(
    rewards: Sequence[float] | np.ndarray,
    *,
    reference: Sequence[float] | np.ndarray | None = None,
    scale: bool = True,
    eps: float = 1e-6,
) -> np.ndarray:
    """Advantages of one group: (r − mean) / (std + eps) over the group plus ``reference`` rewards.

    >>> group_advantages([1.0, 0.0]).round(3).tolist()
    [1.0, -1.0]
    >>> group_advantages([0.0, 0.0]).tolist()  # a group that all fails learns nothing
    [0.0, 0.0]
    >>> group_advantages([0.0, 0.0], reference=[1.5, 1.5, 0.0, 0.0]).round(3).tolist()  # … unless anchored
    [-0.707, -0.707]
    """
    r = np.asarray(rewards, dtype=float)
    pool = (
        r
        if reference is None or len(reference) == 0
        else np.concatenate([r, np.asarray(reference, dtype=float)])
    )
    centred = r - pool.mean()
    return centred / (pool.std() + eps) if scale else centred


def clipped_policy_loss(logp: Any, old_logp: Any, advantages: Any, *, clip_eps: float = 0.2) -> Any:
    """PPO/GRPO clipped surrogate, averaged over decisions (torch tensors in, scalar tensor out)."""
    ratio = (logp - old_logp).exp()
    clipped = ratio.clamp(1 - clip_eps, 1 + clip_eps)
    return -(ratio * advantages).minimum(clipped * advantages).mean()


def kl_to_reference(logp_all: Any, ref_logp_all: Any, mask: Any) -> Any:
    """KL(π ‖ π_ref) per decision over the available actions, averaged (torch tensors)."""
    p = logp_all.exp()
    diff = (logp_all - ref_logp_all).masked_fill(~mask, 0.0)
    return (p.masked_fill(~mask, 0.0) * diff).sum(-1).mean()

"""Proximal Policy Optimisation pieces shared by the actor–critic routers.

PPO (Schulman et al., "Proximal Policy Optimization Algorithms", arXiv:1707.06347) with
generalised advantage estimation (Schulman et al., "High-Dimensional Continuous Control Using
Generalized Advantage Estimation", arXiv:1506.02438):

- **GAE.** With TD errors δ_t = r_t + γ·V(s_{t+1})·(1 − d_t) − V(s_t), the advantage is
  Â_t = δ_t + γλ·(1 − d_t)·Â_{t+1} and the value target is R_t = Â_t + V(s_t); ``d_t = 1`` marks
  the last decision of an episode, so nothing flows across episode boundaries.
- **Clipped policy loss.** ρ_t = exp(log π(a_t|s_t) − log π_old(a_t|s_t)),
  L_π = −mean(min(ρ_t·Â_t, clip(ρ_t, 1 − ε, 1 + ε)·Â_t)).
- **Value loss.** L_V = mean((V(s_t) − R_t)²), optionally clipped around the old values
  (``value_clip``): mean(max((V − R)², (V_old + clip(V − V_old, −c, c) − R)²)).
- **Minibatches.** Each PPO epoch visits every decision once, in seeded random minibatches.

:class:`PPOConfig` holds the hyperparameters; its defaults are the effective values of the
GraphPlanner reference code (lr 1e-4 policy / 2e-4 value, γ 0.98, GAE λ 0.85, clip 0.2,
minibatch 32). Everything here is plain numpy / torch with no environment assumptions, so any
router that collects (reward, value, done, log-prob) per decision can reuse it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np

from agentroute.errors import ConfigurationError
from agentroute.routers.base import out_of_range

__all__ = ["PPOConfig", "PPOLosses", "PPOOptionError", "gae", "minibatches", "normalize", "ppo_losses"]


class PPOOptionError(ConfigurationError):
    """PPO hyperparameters out of their ranges, all named in one line: ``field``, ``rule`` (what it
    must be) and ``value`` of the first, ``refusals`` (field, rule, value) of each; a router
    re-raises them under its own options' names."""

    def __init__(self, field: str, rule: str, value: object, *more: tuple[str, str, object]):
        self.field, self.rule, self.value = field, rule, value
        self.refusals: tuple[tuple[str, str, object], ...] = ((field, rule, value), *more)
        super().__init__("ppo: " + "; ".join(f"{f!r} must be {r} (got {v!r})" for f, r, v in self.refusals))


#: The range of each number field (:func:`~agentroute.routers.base.out_of_range`'s terms), in field order.
_RANGES: dict[str, dict[str, Any]] = {
    "lr_policy": {"low": 0, "low_open": True},
    "lr_value": {"low": 0, "low_open": True},
    "gamma": {"low": 0, "high": 1},
    "gae_lambda": {"low": 0, "high": 1},
    "clip": {"low": 0, "high": 1, "low_open": True, "high_open": True},
    "value_clip": {"low": 0, "low_open": True, "optional": True},
    "minibatch": {"low": 1, "integer": True},
    "epochs": {"low": 1, "integer": True},
    "entropy_coef": {"low": 0},
    "max_grad_norm": {"low": 0, "low_open": True, "optional": True},
}


@dataclass(frozen=True)
class PPOConfig:
    """PPO hyperparameters (checked when built).

    Args:
        lr_policy, lr_value: Adam learning rates of the actor and of the critic.
        gamma: discount γ.
        gae_lambda: GAE λ.
        clip: ε of the clipped ratio.
        value_clip: clip range of the value update around the old values (``None``: no clip).
        minibatch: decisions per gradient step.
        epochs: passes over one batch of rollouts.
        entropy_coef: weight of the entropy bonus (subtracted from the loss).
        max_grad_norm: gradient norm clip (``None``: none).
        normalize_advantages: standardise Â within each batch of rollouts.
    """

    lr_policy: float = 1e-4
    lr_value: float = 2e-4
    gamma: float = 0.98
    gae_lambda: float = 0.85
    clip: float = 0.2
    value_clip: float | None = None
    minibatch: int = 32
    epochs: int = 4
    entropy_coef: float = 0.01
    max_grad_norm: float | None = 1.0
    normalize_advantages: bool = True

    def __post_init__(self) -> None:
        refused = [
            (name, broken, value)
            for name, rule in _RANGES.items()
            if (broken := out_of_range(value := getattr(self, name), **rule)) is not None
        ]
        if refused:
            raise PPOOptionError(*refused[0], *refused[1:])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gae(
    rewards: np.ndarray | list[float],
    values: np.ndarray | list[float],
    dones: np.ndarray | list[bool],
    *,
    gamma: float,
    lam: float,
    last_value: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimates and value targets of a flat sequence of decisions.

    ``rewards[t]``, ``values[t]`` = V(s_t) and ``dones[t]`` (the episode ended after decision t)
    are in time order, episodes one after the other; ``last_value`` bootstraps a sequence whose
    last episode was cut off (its last ``done`` is False). Returns (advantages, returns).

    >>> adv, ret = gae([0.0, 1.0], [0.5, 0.5], [False, True], gamma=1.0, lam=1.0)
    >>> adv.tolist(), ret.tolist()
    ([0.5, 0.5], [1.0, 1.0])
    """
    r = np.asarray(rewards, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    d = np.asarray(dones, dtype=bool)
    if not (r.shape == v.shape == d.shape) or r.ndim != 1:
        raise ConfigurationError(
            f"gae: rewards, values and dones must be 1-d of one length (got {r.shape}, {v.shape}, {d.shape})"
        )
    adv = np.zeros_like(r)
    running = 0.0
    next_value = float(last_value)
    for t in range(len(r) - 1, -1, -1):
        live = 0.0 if d[t] else 1.0
        delta = r[t] + gamma * next_value * live - v[t]
        running = delta + gamma * lam * live * running
        adv[t] = running
        next_value = v[t]
    return adv, adv + v


def normalize(x: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """(x − mean) / (std + eps); a constant batch becomes zeros."""
    x = np.asarray(x, dtype=np.float64)
    return (x - x.mean()) / (x.std() + eps) if x.size else x


def minibatches(n: int, size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Seeded random index minibatches covering ``range(n)`` once (the last may be smaller)."""
    if size < 1:
        raise ConfigurationError(f"minibatch size must be ≥ 1 (got {size})")
    order = rng.permutation(n)
    for start in range(0, n, size):
        yield order[start : start + size]


class PPOLosses(NamedTuple):
    """The terms of one PPO minibatch (torch scalars) and diagnostics (floats)."""

    policy: Any
    value: Any
    entropy: Any
    approx_kl: float
    clip_fraction: float


def ppo_losses(
    logp: Any,
    old_logp: Any,
    advantages: Any,
    values: Any,
    returns: Any,
    *,
    clip: float = 0.2,
    old_values: Any = None,
    value_clip: float | None = None,
    entropy: Any = None,
) -> PPOLosses:
    """The clipped surrogate, the (optionally clipped) value loss and the mean entropy.

    All inputs are 1-d torch tensors over the minibatch's decisions; ``entropy`` (per decision) is
    optional. The caller combines them, e.g. ``policy + c_v·value − c_e·entropy``, or steps two
    optimisers (actor and critic) as GraphPlanner does.
    """
    ratio = (logp - old_logp).exp()
    clipped = ratio.clamp(1 - clip, 1 + clip)
    policy = -(ratio * advantages).minimum(clipped * advantages).mean()
    err = (values - returns) ** 2
    if value_clip is not None and old_values is not None:
        v_clipped = old_values + (values - old_values).clamp(-value_clip, value_clip)
        err = err.maximum((v_clipped - returns) ** 2)
    value = err.mean()
    ent = entropy.mean() if entropy is not None else values.new_zeros(())
    import torch

    with torch.no_grad():
        approx_kl = float((old_logp - logp).mean())
        clip_fraction = float(((ratio - 1).abs() > clip).float().mean())
    return PPOLosses(policy, value, ent, approx_kl, clip_fraction)

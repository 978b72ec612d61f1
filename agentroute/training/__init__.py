"""Shared RL pieces: GRPO-style group advantages, rewards as plain functions, config/trainer pairs.

``BoPOConfig`` (which reads the agentic environment and the pool) and ``BoPOTrainer`` (torch) load on
first use, so that importing this package (as mf and mlp do) stays light.
"""

from typing import TYPE_CHECKING, Any

from agentroute.training.grpo import group_advantages
from agentroute.training.rewards import (
    boundary_reward,
    combine_rewards,
    cost_penalty,
    hard_reward,
    success_reward,
)

if TYPE_CHECKING:
    from agentroute.training.bopo_config import BoPOConfig
    from agentroute.training.bopo_trainer import BoPOResult, BoPOTrainer

__all__ = [
    "BoPOConfig",
    "BoPOResult",
    "BoPOTrainer",
    "boundary_reward",
    "combine_rewards",
    "cost_penalty",
    "group_advantages",
    "hard_reward",
    "success_reward",
]


def __getattr__(name: str) -> Any:
    if name == "BoPOConfig":
        from agentroute.training import bopo_config

        return bopo_config.BoPOConfig
    if name in ("BoPOTrainer", "BoPOResult"):
        from agentroute.training import bopo_trainer

        return getattr(bopo_trainer, name)
    raise AttributeError(f"module 'agentroute.training' has no attribute {name!r}")

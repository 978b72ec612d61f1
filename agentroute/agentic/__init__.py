"""Offline agentic routing: k-step tasks from logged outcomes, boundary policies, BoSFT data.

The pieces of budget-aware agentic routing with boundary-guided training (BoPO; Zhang et al.,
"Budget-Aware Agentic Routing via Boundary-Guided Training", arXiv:2602.21227). Torch-free except
:mod:`agentroute.agentic.policy`.
"""

from agentroute.agentic.bosft import SFTData, cheapest_success, synthesize_bosft
from agentroute.agentic.boundary import Boundary, Difficulty, boundary_rollouts, classify
from agentroute.agentic.decoding import ordinal_choice
from agentroute.agentic.env import (
    AgenticEnv,
    Episode,
    EpisodeResult,
    SuccessRule,
    resolve_tiers,
    summarize,
    task_succeeds,
    worst_case_costs,
)
from agentroute.agentic.features import rung_of, scalar_features
from agentroute.agentic.rollout import Job, Trace, fixed_tier, random_mix, rollout
from agentroute.agentic.tasks import AgenticTask, build_tasks

__all__ = [
    "AgenticEnv",
    "AgenticTask",
    "Boundary",
    "Difficulty",
    "Episode",
    "EpisodeResult",
    "Job",
    "SFTData",
    "SuccessRule",
    "Trace",
    "boundary_rollouts",
    "build_tasks",
    "cheapest_success",
    "classify",
    "fixed_tier",
    "ordinal_choice",
    "random_mix",
    "resolve_tiers",
    "rollout",
    "rung_of",
    "scalar_features",
    "summarize",
    "synthesize_bosft",
    "task_succeeds",
    "worst_case_costs",
]

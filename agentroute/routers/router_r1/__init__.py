"""Router-R1 (Zhang et al., "Router-R1: Teaching LLMs Multi-Round Routing and Aggregation via
Reinforcement Learning", arXiv:2506.09033): a policy LM that thinks and routes in turns.

Torch and transformers load only when a policy is loaded or trained.
"""

from agentroute.routers.router_r1.agent import Episode, LoopSettings, ThinkRouteAgent, ThinkRouteLoop
from agentroute.routers.router_r1.graph import build_router_r1_graph, load_policy
from agentroute.routers.router_r1.rewards import (
    CostNormalizer,
    RouterR1Reward,
    exact_match,
    extract_answer,
    format_errors,
    format_reward,
    format_valid,
    outcome_reward,
    token_f1,
    total_reward,
)

__all__ = [
    "CostNormalizer",
    "Episode",
    "LoopSettings",
    "RouterR1Reward",
    "ThinkRouteAgent",
    "ThinkRouteLoop",
    "build_router_r1_graph",
    "exact_match",
    "extract_answer",
    "format_errors",
    "format_reward",
    "format_valid",
    "load_policy",
    "outcome_reward",
    "token_f1",
    "total_reward",
]

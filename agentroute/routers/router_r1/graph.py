"""The Router-R1 graph: one :class:`ThinkRouteAgent` node whose route actions are dispatcher steps."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from agentroute.graph import AgentGraph
from agentroute.routers.router_r1.agent import LoopSettings, ThinkRouteAgent
from agentroute.training.lm_policy import HFPolicy, LMPolicy, OpenAIPolicy


def load_policy(policy: str | Path | None = None, *, policy_url: str | None = None, api_key: str | None = None) -> LMPolicy:
    """The policy LM: a checkpoint directory, the default SmolLM2 (``None``), or a served one.

    With ``policy_url`` the model is served behind an OpenAI-compatible endpoint (``vllm serve``);
    its tokenizer is read from ``policy`` (the directory that was served) or is SmolLM2's.
    """
    if policy_url:
        tok = HFPolicy.load(policy).tokenizer if policy is None else _tokenizer(policy)
        return OpenAIPolicy(policy_url, tok, api_key=api_key or os.environ.get("VLLM_API_KEY"))
    return HFPolicy.load(policy)


def _tokenizer(path: str | Path) -> Any:
    import transformers

    return transformers.AutoTokenizer.from_pretrained(Path(path).expanduser())


def build_router_r1_graph(
    policy: LMPolicy | str | Path | None = None,
    *,
    policy_url: str | None = None,
    settings: LoopSettings | None = None,
) -> AgentGraph:
    """A graph with one ``think_route`` node (stage ``route``); the policy loads on first use."""
    agent = ThinkRouteAgent(
        policy if hasattr(policy, "generate") else (lambda: load_policy(policy, policy_url=policy_url)),  # type: ignore[arg-type]
        settings,
    )
    graph = AgentGraph("router_r1")
    graph.add_node("think_route", agent, stage="route")
    return graph


graph = build_router_r1_graph

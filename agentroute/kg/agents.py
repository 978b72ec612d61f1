"""Agent descriptors: the text an agent node is embedded from (model card + strategy)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentroute.errors import ConfigurationError
from agentroute.outcomes import agent_column
from agentroute.types import Agent

__all__ = ["agent_descriptor", "describe"]


def describe(model: str, description: str, strategy: str = "direct") -> str:
    """The descriptor of a model known by a free-text description.

    >>> describe("gpt-4", "OpenAI's largest model.", "cot")
    "gpt-4: OpenAI's largest model. Strategy cot."
    """
    return f"{model}: {description.strip()} Strategy {strategy}."


def agent_descriptor(
    agent: Agent,
    *,
    descriptors: Mapping[str, str] | None = None,
    cards: Mapping[str, Any] | None = None,
    fitted: Mapping[str, str] | None = None,
) -> str:
    """The text descriptor of ``agent``; the first source that knows it wins:

    1. ``descriptors`` (the router's parameter), by agent column (``model:strategy``) then model id;
    2. the model's card in ``cards`` (:meth:`~agentroute.pool.card.ModelCard.descriptor`, or a
       mapping with a ``description``);
    3. ``fitted``: the descriptors the router was trained with, by agent column.

    Raises:
        ConfigurationError: none of them describes the agent (the message names it).

    >>> agent_descriptor(Agent(model="m"), descriptors={"m": "a small model."})
    'm: a small model. Strategy direct.'
    """
    column = agent_column(agent)
    for key in (column, agent.model):
        if descriptors and descriptors.get(key):
            return describe(agent.model, descriptors[key], agent.strategy)
    card = (cards or {}).get(agent.model)
    if card is not None:
        if hasattr(card, "descriptor"):
            return str(card.descriptor(agent.strategy))
        if isinstance(card, Mapping) and card.get("description"):
            return describe(agent.model, str(card["description"]), agent.strategy)
    if fitted and fitted.get(column):
        return fitted[column]
    raise ConfigurationError(
        f"agent {agent.key!r} has no descriptor: give model {agent.model!r} a model card "
        f"(RouteContext.cards / the pool) or a description (descriptors={{{agent.model!r}: '...'}})"
    )

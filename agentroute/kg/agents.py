"""Agent descriptors: the text an agent node is embedded from (model card + strategy).

The inductive routers (``kg-gnn``, ``graph-router``) embed each agent from a descriptor, so a new
agent joins from its text alone. Where a descriptor comes from, first source first:

1. a recipe's free-text ``descriptors`` (optional override);
2. the model's :class:`~agentroute.pool.card.ModelCard` — given to ``fit``, a dataset's
   ``cards()``, the router's ``pool``, or the default pool — via :func:`card_descriptor`
   (description, tier, price per 1M tokens in/out, context window, strategy);
3. a card inferred from the log itself (:func:`log_cards`: the model's price tier and effective
   price from its logged calls), for models no pool knows.

:func:`training_cards` applies that chain to the training data and says which source described
each model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from agentroute.errors import ConfigurationError
from agentroute.outcomes import OutcomeTable, agent_column, column_agent, column_names
from agentroute.types import Agent, Trajectory

__all__ = ["agent_descriptor", "card_descriptor", "describe", "log_cards", "training_cards"]


def describe(model: str, description: str, strategy: str = "direct") -> str:
    """The descriptor of a model known by a free-text description.

    >>> describe("gpt-4", "OpenAI's largest model.", "cot")
    "gpt-4: OpenAI's largest model. Strategy cot."
    """
    return f"{model}: {description.strip()} Strategy {strategy}."


def card_descriptor(card: Any, strategy: str = "direct") -> str:
    """The descriptor of a model card: id, tier, price in/out per 1M tokens, context window,
    strategy, then the card's description.

    >>> from agentroute.pool.card import ModelCard
    >>> card_descriptor(ModelCard(id="m", input_price=1, output_price=2, tier="large", description="Big."), "cot")
    'm (large model, $1/$2 per 1M tokens, context window 8192 tokens, strategy cot). Big.'
    """
    if isinstance(card, Mapping):  # a plain mapping with a description (e.g. a log-inferred card)
        return describe(str(card.get("id", "")), str(card.get("description", "")), strategy)
    priced = (
        getattr(card, "input_price", None) is not None and getattr(card, "output_price", None) is not None
    )
    price = f"${card.input_price:g}/${card.output_price:g} per 1M tokens" if priced else "provider price"
    window = getattr(card, "context_window", None)
    facts = ", ".join(
        x for x in (f"{getattr(card, 'tier', 'small')} model", price, f"context window {window} tokens" if window else "",
                    f"strategy {strategy}") if x
    )  # fmt: skip
    return f"{card.id} ({facts}). {getattr(card, 'description', '')}".strip()


def agent_descriptor(
    agent: Agent,
    *,
    descriptors: Mapping[str, str] | None = None,
    cards: Mapping[str, Any] | None = None,
    fitted: Mapping[str, str] | None = None,
) -> str:
    """The text descriptor of ``agent``; the first source that knows it wins:

    1. ``descriptors`` (the router's parameter), by agent column (``model:strategy``) then model id;
    2. ``fitted``: the descriptor the router was trained with for this agent column (so that a
       trained agent is described at serving time exactly as in training);
    3. the model's card in ``cards`` (:func:`card_descriptor`; a ModelCard or a mapping with a
       ``description``).

    Raises:
        ConfigurationError: none of them describes the agent (the message names it).

    >>> agent_descriptor(Agent(model="m"), descriptors={"m": "a small model."})
    'm: a small model. Strategy direct.'
    """
    for key in (agent_column(agent), agent.model):
        if descriptors and descriptors.get(key):
            return describe(agent.model, descriptors[key], agent.strategy)
    for column in column_names(agent):  # the agent key (memory-trained), then the role-free column
        if fitted and fitted.get(column):
            return fitted[column]
    card = (cards or {}).get(agent.model)
    if card is not None:
        if isinstance(card, Mapping):
            if card.get("description"):
                return describe(agent.model, str(card["description"]), agent.strategy)
        else:
            return card_descriptor(card, agent.strategy)
    raise ConfigurationError(
        f"agent {agent.key!r} has no descriptor: give model {agent.model!r} a model card "
        f"(RouteContext.cards / the pool) or a description (descriptors={{{agent.model!r}: '...'}})"
    )


# -- cards for training ---------------------------------------------------------------------------
def _as_cards(found: Any) -> dict[str, Any]:
    """A mapping model id → card from a mapping, a ModelPool or any iterable of cards."""
    if found is None:
        return {}
    if isinstance(found, Mapping):
        return dict(found)
    return {card.id: card for card in found}


def log_cards(data: Any) -> dict[str, dict[str, Any]]:
    """A card per model inferred from the log alone (trajectories or an outcome table): its price
    tier among the logged models (thirds by mean cost per call: small, medium, large), its
    effective price per 1M tokens where the log counts tokens, and how many calls were logged.

    Only what the log says about price is used — never the logged scores — so the descriptor
    does not leak outcomes.
    """
    stats: dict[str, list[float]] = {}  # model → [calls, usd, tokens]
    if isinstance(data, OutcomeTable) or isinstance(getattr(data, "train", None), OutcomeTable):
        table = data if isinstance(data, OutcomeTable) else data.train
        for j, column in enumerate(table.models):
            costs = table.costs[:, j][~np.isnan(table.costs[:, j])]
            row = stats.setdefault(column_agent(column).model, [0.0, 0.0, 0.0])
            row[0] += len(costs)
            row[1] += float(costs.sum())
    else:
        for traj in data:
            for step in traj.steps if isinstance(traj, Trajectory) else ():
                row = stats.setdefault(step.agent.model, [0.0, 0.0, 0.0])
                row[0] += 1
                row[1] += float(step.cost_usd)
                row[2] += float(step.tokens_in + step.tokens_out)
    order = sorted(stats, key=lambda m: stats[m][1] / max(stats[m][0], 1.0))
    out: dict[str, dict[str, Any]] = {}
    for rank, model in enumerate(order):
        calls, usd, tokens = stats[model]
        tier = ("small", "medium", "large")[min(2, 3 * rank // max(1, len(order)))]
        price = (
            f"about ${usd / tokens * 1e6:.3g} per 1M tokens" if tokens > 0
            else f"about ${usd / max(calls, 1.0):.3g} per call"
        )  # fmt: skip
        out[model] = {
            "id": model,
            "tier": tier,
            "description": f"{tier} model by logged price, {price} ({int(calls)} logged calls).",
        }
    return out


def training_cards(
    data: Any, *, cards: Any = None, pool: Any = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The cards that describe the models of the training ``data``, and the source of each.

    First source that knows a model wins: ``cards`` (given to ``fit``: a mapping, a ModelPool or
    cards) → the data's own (a dataset's ``cards()``, a table's ``metadata["cards"]``) → ``pool``
    (a pool YAML, ``"default"``, or a ModelPool) → the default pool → :func:`log_cards`.
    Sources are named ``"cards"``, ``"dataset"``, ``"pool"``, ``"default pool"``, ``"log"``.
    """
    chain: list[tuple[str, Any]] = [
        ("cards", lambda: _as_cards(cards)),
        ("dataset", lambda: _data_cards(data)),
    ]
    if pool is not None:
        chain.append(("pool", lambda: _pool_cards(pool)))
    chain.append(("default pool", lambda: _pool_cards("default")))
    models = _models_of(data)
    found: dict[str, Any] = {}
    source: dict[str, str] = {}
    for name, get in chain:
        if all(m in found for m in models):
            break
        try:
            known = get()
        except Exception:  # a dataset that cannot price its models, a default pool that cannot load
            if name not in ("dataset", "default pool"):
                raise
            known = {}
        for model in models:
            if model not in found and model in known:
                found[model], source[model] = known[model], name
    missing = [m for m in models if m not in found]
    if missing:
        inferred = log_cards(data)
        for model in missing:
            if model in inferred:
                found[model], source[model] = inferred[model], "log"
    return found, source


def _models_of(data: Any) -> list[str]:
    if isinstance(data, OutcomeTable) or isinstance(getattr(data, "train", None), OutcomeTable):
        table = data if isinstance(data, OutcomeTable) else data.train
        return list(dict.fromkeys(column_agent(c).model for c in table.models))
    if isinstance(data, Iterable) and not isinstance(data, str | bytes):
        return list(dict.fromkeys(s.agent.model for t in data if isinstance(t, Trajectory) for s in t.steps))
    return []


def _data_cards(data: Any) -> dict[str, Any]:
    got = getattr(data, "cards", None)
    if callable(got):
        return _as_cards(got())
    table = data if isinstance(data, OutcomeTable) else getattr(data, "train", None)
    if isinstance(table, OutcomeTable) and isinstance(table.metadata.get("cards"), Mapping):
        return dict(table.metadata["cards"])
    return {}


def _pool_cards(pool: Any) -> dict[str, Any]:
    if isinstance(pool, str):
        from agentroute.pool.pool import ModelPool

        pool = ModelPool.load(pool)
    return _as_cards(pool)


def descriptor_summary(router: str, columns: int, sources: dict[str, str]) -> str:
    """One line saying which source described each training agent of an inductive router.

    >>> descriptor_summary("kg-gnn", 3, {"a": "cards", "b": "cards", "c": "log"})
    "kg-gnn: 3 agents described by cards ×2, log ×1; an agent unseen in training is scored from its card's descriptor"
    """
    counts: dict[str, int] = {}
    for source in sources.values():
        counts[source] = counts.get(source, 0) + 1
    return (
        f"{router}: {columns} agents described by "
        + ", ".join(f"{k} ×{v}" for k, v in sorted(counts.items()))
        + "; an agent unseen in training is scored from its card's descriptor"
    )

"""The prices a router was trained at, so that a pool repriced after training is served at its new prices.

A cost-aware router predicts each known agent's cost from what was logged in training. When the
pool's card for that model is repriced later (a provider's price cut, a self-hosted model now
billed), the logged cost is stale. :func:`training_prices` records, per model, one call at the
training price: the mean tokens in and out and the mean USD of the logged calls (trajectories from
the memory), or one token each way at the card's price (a dataset's or a table's cards). At routing,
:func:`price_factor` compares that call priced by the context's card with the recorded USD: the
predicted cost of the model is multiplied by the factor (1 when the card is unchanged, absent or
unpriced, or prices by the second).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from agentroute.outcomes import OutcomeTable, column_agent
from agentroute.types import Agent, RouteContext, Trajectory

#: model id → (tokens in, tokens out, USD of that call at the training price).
PriceRefs = dict[str, list[float]]


def training_prices(data: Any) -> PriceRefs:
    """Each trained model's reference call (module docstring) from trajectories (steps with tokens
    and a cost), else from the data's cards (``data.cards()`` of a dataset, a table's
    ``metadata["cards"]``); models with neither are left out (their costs are never repriced).

    >>> from agentroute.types import Step, Task
    >>> task = Task(query="q")
    >>> step = Step(task_id=task.id, index=0, stage="execute", agent=Agent(model="m"), tokens_in=100,
    ...             tokens_out=50, cost_usd=0.002)
    >>> training_prices([Trajectory(task=task, steps=[step])])
    {'m': [100.0, 50.0, 0.002]}
    """
    if isinstance(data, Iterable) and not isinstance(data, str | bytes | Mapping | OutcomeTable):
        sums: dict[str, list[float]] = {}
        for traj in data:
            for step in traj.steps if isinstance(traj, Trajectory) else ():
                if step.cost_usd > 0 and step.tokens_in + step.tokens_out > 0:
                    row = sums.setdefault(step.agent.model, [0.0, 0.0, 0.0, 0.0])
                    row[0] += step.tokens_in
                    row[1] += step.tokens_out
                    row[2] += step.cost_usd
                    row[3] += 1
        return {m: [t_in / n, t_out / n, usd / n] for m, (t_in, t_out, usd, n) in sums.items()}
    refs: PriceRefs = {}
    table = _table(data)
    models = {column_agent(c).model for c in table.models} if table is not None else set()
    for model, card in _data_cards(data).items():
        usd = card_usd(card, 1.0, 1.0)
        if model in models and usd is not None and usd > 0:
            refs[model] = [1.0, 1.0, usd]
    return refs


def card_usd(card: Any, tokens_in: float, tokens_out: float) -> float | None:
    """A call's USD at ``card``'s token prices (a ModelCard or a mapping); ``None`` when the card
    has no input and output price, or also bills by the second."""
    get = card.get if isinstance(card, Mapping) else (lambda key: getattr(card, key, None))
    p_in, p_out = get("input_price"), get("output_price")
    if p_in is None or p_out is None or get("price_per_second"):
        return None
    try:
        usd = (float(p_in) * tokens_in + float(p_out) * tokens_out) / 1e6
    except (TypeError, ValueError):
        return None
    return usd if math.isfinite(usd) and usd >= 0 else None


def price_factor(refs: Mapping[str, Sequence[float]], ctx: RouteContext, agent: Agent) -> float:
    """How much dearer ``agent``'s model is now (its card in ``ctx.cards``) than in training: the
    reference call at the card's prices over its training USD; 1 when either is unknown."""
    ref, card = refs.get(agent.model), ctx.cards.get(agent.model)
    if ref is None or card is None or ref[2] <= 0:
        return 1.0
    now = card_usd(card, ref[0], ref[1])
    if now is None:
        return 1.0
    factor = now / ref[2]
    return 1.0 if abs(factor - 1.0) < 1e-9 else factor  # rounding of the mean is no price change


def price_factors(
    refs: Mapping[str, Sequence[float]], ctxs: Sequence[RouteContext], agents: Sequence[Agent]
) -> np.ndarray:
    """:func:`price_factor` of every (context, agent): an n × k array (all ones without ``refs``)."""
    out = np.ones((len(ctxs), len(agents)))
    if refs:
        for i, ctx in enumerate(ctxs):
            for j, agent in enumerate(agents):
                out[i, j] = price_factor(refs, ctx, agent)
    return out


def _table(data: Any) -> OutcomeTable | None:
    table = data if isinstance(data, OutcomeTable) else getattr(data, "train", None)
    return table if isinstance(table, OutcomeTable) else None


def _data_cards(data: Any) -> Mapping[str, Any]:
    got = getattr(data, "cards", None)
    if callable(got):
        try:
            cards = got()
        except Exception:  # a dataset that cannot price its models: no reference prices
            return {}
        return cards if isinstance(cards, Mapping) else {}
    table = _table(data)
    cards = table.metadata.get("cards") if table is not None else None
    return cards if isinstance(cards, Mapping) else {}

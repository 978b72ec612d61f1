"""The prompts of Router-R1's think/route loop (arXiv:2506.09033), in agentroute's words.

The policy sees the question and the pool's agents (id, tier, price, description); it reasons in
``<think>``, routes with ``<route> agent-id: sub-query </route>`` (``<search>`` is accepted too),
reads the agent's answer in ``<information>``, and ends with ``<answer>``.
"""

from __future__ import annotations

from collections.abc import Iterable

from agentroute.pool.card import ModelCard

#: The system prompt of a routed agent answering a sub-query.
AGENT_PROMPT = "Answer the question accurately and briefly."

POLICY_PROMPT = (
    "Answer the question. Think inside <think> </think> first. If you need help, ask one agent a "
    "simple question with <route> agent-id: question </route>; its reply comes back inside "
    "<information> </information>. You may route up to {max_turns} times; routing costs money. "
    "Give the final short answer inside <answer> </answer>.\n"
    "Agents:\n{agents}\n"
    "Example: <think>I need the birth year.</think><route> {example}: When was X born? </route>"
)

#: Stop strings of a turn in which routing is allowed, and of the final turn.
ROUTE_STOPS = ("</route>", "</search>", "</answer>")
FINAL_STOPS = ("</answer>",)


def agent_line(card: ModelCard) -> str:
    """One line of the agent list: id, tier, output price, description.

    >>> agent_line(ModelCard(id="m", backend="replay", input_price=0.1, output_price=0.4, description="Small."))
    '- m: small model, $0.4 per 1M output tokens. Small.'
    """
    price = (
        f"${card.output_price:g} per 1M output tokens" if card.output_price is not None else "provider price"
    )
    return f"- {card.id}: {card.tier} model, {price}. {card.description}".strip()


def system_prompt(cards: Iterable[ModelCard], max_turns: int = 4) -> str:
    cards = list(cards)
    return POLICY_PROMPT.format(
        max_turns=max_turns, agents="\n".join(agent_line(c) for c in cards), example=cards[0].id
    )


def information(text: str) -> str:
    """How an agent's reply (or the loop's refusal) is appended to the rollout.

    >>> information("Paris")
    '\\n<information>Paris</information>\\n'
    """
    return f"\n<information>{text}</information>\n"

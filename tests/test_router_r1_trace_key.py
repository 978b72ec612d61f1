"""Router-R1's SFT trace cache is rebuilt when what decided the routed calls changes: a card's prices
or tier (whether a call fits the per-task budget) and the recipe's ``router:`` (which strategy ran)."""

from __future__ import annotations

from agentroute.budget import Budget
from agentroute.pool.card import ModelCard
from agentroute.routers.router_r1 import LoopSettings
from agentroute.routers.router_r1.sft import trace_inputs

ROWS = [{"question": "Who wrote Dune?", "answer": "Frank Herbert"}]
CARD = dict(id="smol-direct", backend="local", model="SmolLM2-135M-Instruct.Q4_1.gguf", input_price=0.05, output_price=0.20,
            max_tokens=48, strategies=["direct"])


def _key(**card: object) -> str:
    return trace_inputs(ROWS, [ModelCard(**{**CARD, **card})], 4, LoopSettings(), Budget(usd=0.0005))


def test_a_cards_prices_or_tier_change_the_key() -> None:
    """Was: the same key — traces whose calls fit $0.0005 at one price were reused at ten times it."""
    assert _key(input_price=0.5) != _key()
    assert _key(output_price=2.0) != _key()
    assert _key(tier="large") != _key()  # a large_calls budget counts it
    assert _key() == _key()


def test_the_recipes_router_changes_the_key() -> None:
    def key(router: str) -> str:
        return trace_inputs(ROWS, [ModelCard(**CARD)], 4, LoopSettings(), Budget(usd=0.0005), router=router)

    assert key("cheapest") != key("random")
    assert key("cheapest") == key("cheapest")

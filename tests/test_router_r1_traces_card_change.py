"""Router-R1's SFT trace cache is rebuilt when a card's model or reply length changes under the same id."""

from __future__ import annotations

import pytest

from agentroute.pool.card import ModelCard
from agentroute.routers.router_r1 import LoopSettings
from agentroute.routers.router_r1.sft import trace_inputs

ROWS = [{"question": "Who wrote Dune?", "answer": "Frank Herbert"}]
CARD = {"id": "smol-direct", "backend": "local", "model": "SmolLM2-135M-Instruct.Q4_1.gguf", "max_tokens": 8,
        "strategies": ["direct"], "input_price": 0.05, "output_price": 0.2}


def _key(**card):
    return trace_inputs(ROWS, [ModelCard(**{**CARD, **card})], 4, LoopSettings())


@pytest.mark.parametrize("changed", [{"max_tokens": 48}, {"model": "SmolLM2-360M-Instruct.Q4_1.gguf"}])
def test_a_card_that_replies_otherwise_under_the_same_id_changes_the_key(changed):
    """Was: keyed by the agent's id only — replies cut at 8 tokens were reused after max_tokens 48."""
    assert _key(**changed) != _key()


def test_a_price_change_rebuilds_the_traces():
    """Prices decide which routed calls fit the budget and what a cost-aware router picks, so traces
    made at one price are not reused at another (was: kept, before the budget joined the key)."""
    assert _key(input_price=0.5) != _key()


RECIPE = """
pool:
  - {id: smol-direct, backend: local, model: SmolLM2-135M-Instruct.Q4_1.gguf, input_price: 0.05,
     output_price: 0.20, max_tokens: MAX, strategies: [direct]}
data: {train: 50}
loop: {max_turns: 1, turn_tokens: 16, info_tokens: 48}
sft: {enabled: true, traces: 1, epochs: 1, batch_size: 1, direct_every: 0}
"""


@pytest.mark.slow
def test_train_rebuilds_the_traces_after_the_cards_max_tokens_changed(tmp_path, tiny_policy):
    """Was: 'sft: 1 traces from OUT/traces.jsonl' — the 4-token replies reused after max_tokens 24."""
    from agentroute.routers.router_r1.trainer import train_router_r1

    recipe, out = tmp_path / "recipe.yaml", tmp_path / "out"
    said: list[str] = []
    for max_tokens in (4, 24):
        recipe.write_text(RECIPE.replace("MAX", str(max_tokens)))
        train_router_r1(recipe, out, policy_dir=tiny_policy, sft_only=True, log=said.append)
    built = [line for line in said if line.startswith("sft: building the traces")]
    assert len(built) == 2, said

"""Router-R1's SFT trace cache is keyed by the per-task budget its routed calls ran under."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentroute.budget import Budget
from agentroute.routers.router_r1 import LoopSettings
from agentroute.routers.router_r1.sft import trace_inputs

ROWS = [{"question": "Who wrote Dune?", "answer": "Frank Herbert"}]


def _key(budget: Budget | None) -> str:
    return trace_inputs(ROWS, ["smol-direct", "smol-cot"], 4, LoopSettings(), budget)


def test_another_budget_changes_the_key_and_the_same_one_keeps_it() -> None:
    """Was: the budget was not in the key — traces made under $0.0005 a task were reused under $0.01."""
    assert _key(Budget(usd=0.0005)) != _key(Budget(usd=0.01))
    assert _key(Budget(usd=0.0005)) != _key(None)
    assert _key(Budget(usd=0.0005, large_calls=1)) != _key(Budget(usd=0.0005))
    assert _key(Budget(usd=0.0005)) == _key(Budget(usd=0.0005))


RECIPE = """
pool:
  - {id: smol-direct, backend: local, model: SmolLM2-135M-Instruct.Q4_1.gguf, input_price: 0.05,
     output_price: 0.20, max_tokens: 4, strategies: [direct]}
budget: {usd: USD}
data: {train: 50}
loop: {max_turns: 1, turn_tokens: 16, info_tokens: 16}
sft: {enabled: true, traces: 1, epochs: 1, batch_size: 1, direct_every: 0}
"""


@pytest.mark.slow
def test_train_rebuilds_the_traces_when_the_recipes_budget_changes(tmp_path: Path, tiny_policy: Path) -> None:
    """Was: 'sft: 1 traces from OUT/traces.jsonl' — the second run trained on the first budget's traces."""
    from agentroute.routers.router_r1.trainer import train_router_r1

    recipe, out = tmp_path / "recipe.yaml", tmp_path / "out"
    said: list[str] = []
    for usd in ("0.0005", "0.01", "0.01"):
        recipe.write_text(RECIPE.replace("USD", usd))
        train_router_r1(recipe, out, policy_dir=tiny_policy, sft_only=True, log=said.append)
    built = [line for line in said if line.startswith("sft: building the traces")]
    reused = [line for line in said if line.startswith("sft: 1 traces from")]
    assert (len(built), len(reused)) == (2, 1), said

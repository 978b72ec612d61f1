"""Router-R1 on the real local SmolLM2: the loop under a tiny budget; a 2-step GRPO smoke run on CPU
(real pool calls, the tiny policy) whose checkpoint ``agentroute ask --graph router_r1 --policy DIR`` then loads."""

from __future__ import annotations

import json

import pytest

from agentroute.budget import Budget
from agentroute.pool.pool import ModelPool
from agentroute.routers import make_router
from agentroute.routers.router_r1 import LoopSettings, build_router_r1_graph

pytestmark = pytest.mark.slow

SMOKE = """
pool:
  - {id: smol-direct, backend: local, model: SmolLM2-135M-Instruct.Q4_1.gguf, input_price: 0.05,
     output_price: 0.20, max_tokens: 8, strategies: [direct], description: answers at once.}
router: cheapest
budget: {usd: 0.0005}
data: {train: 50}
loop: {max_turns: 1, turn_tokens: 16, info_tokens: 8}
sft: {enabled: false}
grpo: {max_steps: 2, per_device_train_batch_size: 2, num_generations: 2}
"""


@pytest.fixture(scope="module")
def policy():
    from agentroute.training.lm_policy import HFPolicy

    return HFPolicy.load()


class Forced:
    """The real policy, but its first turn is a fixed route action (a 135M model rarely routes zero-shot)."""

    def __init__(self, real, first):
        self.real, self.first, self.tokenizer = real, list(first), real.tokenizer

    def generate(self, prompts, **kw):
        if self.first:
            from agentroute.training.lm_policy import cut_at_stop

            text = self.first.pop(0)
            return [cut_at_stop(self.tokenizer, self.tokenizer.encode(text, add_special_tokens=False), kw.get("stop", ()))]
        return self.real.generate(prompts, **kw)


def test_real_routes_within_a_tiny_budget(policy):
    from agentroute.pool.card import ModelCard

    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    pool = ModelPool([
        ModelCard(id="cheap", backend="local", model=gguf, input_price=0.05, output_price=0.2, max_tokens=16),
        ModelCard(id="pricey", backend="local", model=gguf, input_price=500, output_price=2000, max_tokens=16, tier="large"),
    ])
    forced = Forced(policy, [
        "<think>ask</think><route> pricey: What is the capital of France? </route>",
        "<think>cheaper</think><route> cheap: What is the capital of France? </route>",
        "<think>again</think><route> cheap: What is the capital of Italy? </route>",
    ])
    graph = build_router_r1_graph(forced, settings=LoopSettings(turn_tokens=16, route_max_tokens=16))
    # $1e-3 and two calls: pricey's worst case ($2000 × 16 / 1M = $0.032) is refused, cheap's is
    # dispatched once; then no call is left: "answer now", and the last route is a final turn (not run)
    app = graph.compile(pool=pool, router=make_router("cheapest"), budget=Budget(usd=1e-3, calls=1))
    result = app.run("What is the capital of France?")
    turns = result.state["context"]["router_r1"]["turns"]
    assert [t["kind"] for t in turns] == ["refused", "route", "final"]
    assert "pricey is over the remaining budget" in turns[0]["information"]
    assert "answer now" in turns[1]["information"]
    assert len(result.steps) == 1 and result.steps[0].agent.model == "cheap" and result.steps[0].output
    assert result.cost_usd <= 1e-3


def test_untrained_policy_terminates_and_never_overspends(policy):
    graph = build_router_r1_graph(policy, settings=LoopSettings(turn_tokens=24, route_max_tokens=16))
    app = graph.compile(pool=ModelPool.default(), router=make_router("cheapest"), budget=Budget(usd=1e-9))
    result = app.run("Who wrote Dune?")
    assert result.steps == [] and result.cost_usd == 0.0  # nothing is affordable: no call is made
    assert 1 <= len(result.state["context"]["router_r1"]["turns"]) <= 5


def test_grpo_smoke_writes_a_policy_that_ask_loads(tmp_path, tiny_policy):
    """``agentroute train router-r1`` (recipe SMOKE: 2 GRPO steps with real pool calls) writes a policy
    that ``agentroute ask --graph router_r1 --policy`` loads and routes with. GRPO starts from the tiny
    policy (SmolLM2's tokenizer and tied embeddings, 16 wide): the run's mechanics are the same as the
    135M's, at a blink instead of ~3 minutes of backward passes on a CPU; the real 135M policy is
    loaded by this module's ``policy`` fixture through the same ``HFPolicy.load`` that ``ask`` uses."""
    from typer.testing import CliRunner

    from agentroute.cli.app import app

    recipe = tmp_path / "smoke.yaml"
    recipe.write_text(SMOKE + f"policy: {tiny_policy}\n")
    trained = CliRunner().invoke(app, ["train", "router-r1", "--config", str(recipe), "--out", str(tmp_path / "run")])
    assert trained.exit_code == 0, trained.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["grpo"]["steps"] == 2 and summary["grpo_start"] == str(tiny_policy)
    rewards = [h["reward"] for h in summary["grpo"]["log_history"] if "reward" in h]
    assert len(rewards) == 2 and all(-1.0 <= r <= 1.0 for r in rewards)
    policy_dir = tmp_path / "run" / "policy"
    assert (policy_dir / "config.json").is_file()
    out = CliRunner().invoke(app, [
        "ask", "Who wrote Dune?", "--graph", "router_r1", "--policy", str(policy_dir), "--router", "cheapest",
        "--budget-usd", "0.0001", "--memory", f"sqlite:///{tmp_path / 'm.db'}", "--json",
    ])
    assert out.exit_code in (0, 1), out.output
    text = out.output  # progress bars of the model load may share the line
    data = json.loads(text[text.index('{"task_id"') :].splitlines()[0])
    assert data["status"] in ("done", "budget_exhausted", "failed") and data["cost_usd"] <= 0.0001

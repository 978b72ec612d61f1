"""`train_router_r1` called inside a running event loop (a Jupyter cell): the SFT traces' pool calls,
the GRPO rollouts and the pool's closing run as everywhere else in the SDK (was: `asyncio.run() cannot
be called from a running event loop` at the first trace, and the pool's close failed the same way)."""

from __future__ import annotations

import asyncio
import json

from tests.fixtures_reply_server import ReplyServer


def test_sft_traces_are_built_inside_a_running_loop(tmp_path, tiny_policy):
    from agentroute.routers.router_r1.trainer import train_router_r1

    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps({"question": f"Capital of country {i}?", "answer": "Paris"}) + "\n"
                                 for i in range(4)))
    with ReplyServer() as server:
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(
            f"pool:\n  - {{id: echo-a, backend: openai, model: echo-a, base_url: '{server.url}', input_price: 0.05,\n"
            "     output_price: 0.20, max_tokens: 8, strategies: [direct], timeout_s: 10}\n"
            f"data: {{path: '{questions}', train: 2}}\nloop: {{max_turns: 1, turn_tokens: 8, info_tokens: 8}}\n"
            "sft: {enabled: true, traces: 2, epochs: 1, batch_size: 2, direct_every: 0}\n"  # routed: real pool calls
        )

        async def cell() -> dict:  # what a notebook runs: the loop is running while the trainer is called
            return train_router_r1(recipe, tmp_path / "out", policy_dir=tiny_policy, sft_only=True, log=lambda _: None)

        summary = asyncio.run(cell())
        calls = len(server.requests)
    assert summary["sft"]["traces"] == 2 and (tmp_path / "out" / "sft" / "config.json").is_file(), summary
    assert calls == 2  # each routed trace called the pool's agent


def test_a_grpo_rollout_runs_inside_a_running_loop(tiny_policy):
    """TRL calls the rollout from synchronous code; in a notebook a loop is running there (was:
    `Cannot run the event loop while another loop is running`)."""
    from types import SimpleNamespace

    from agentroute.pool.card import ModelCard
    from agentroute.pool.pool import ModelPool
    from agentroute.routers import make_router
    from agentroute.routers.router_r1.agent import LoopSettings
    from agentroute.routers.router_r1.trainer import RouterR1Rollout
    from agentroute.training.lm_policy import HFPolicy

    policy = HFPolicy.load(tiny_policy)
    trainer = SimpleNamespace(  # what the rollout reads of TRL's GRPOTrainer (no vLLM)
        args=SimpleNamespace(temperature=1.0, top_p=1.0, use_vllm=False),
        accelerator=SimpleNamespace(unwrap_model=lambda model: model), model=policy.model,
        processing_class=policy.tokenizer,
    )
    with ReplyServer() as server:
        pool = ModelPool([ModelCard(id="echo-a", backend="openai", model="echo-a", base_url=server.url,
                                    input_price=0.05, output_price=0.2, max_tokens=8, timeout_s=10)])
        rollout = RouterR1Rollout(pool, make_router("cheapest"), LoopSettings(max_turns=1, turn_tokens=8, info_tokens=8), None)

        async def cell() -> dict:
            return rollout(["Who wrote Dune?", "Capital of France?"], trainer)

        out = asyncio.run(cell())
    assert len(out["completion_ids"]) == 2 and all(out["completion_ids"]) and len(out["env_mask"]) == 2

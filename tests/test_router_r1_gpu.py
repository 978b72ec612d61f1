"""Router-R1's vLLM path (needs CUDA and vLLM; skipped without them).

Run on a GPU machine inside the training venv of docs/router_r1.md (vLLM + TRL + agentroute):
``pytest -m gpu tests/test_router_r1_gpu.py``.
"""

from __future__ import annotations

import importlib.util

import pytest

pytestmark = pytest.mark.gpu


def _cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


needs_vllm = pytest.mark.skipif(
    not _cuda() or importlib.util.find_spec("vllm") is None, reason="needs CUDA and vLLM (see docs/router_r1.md)"
)


@needs_vllm
def test_grpo_two_steps_with_vllm_colocate(tmp_path):
    """The recipe's --gpu profile, shrunk: SFT-less GRPO whose rollouts generate with vLLM."""
    from agentroute.routers.router_r1.trainer import train_router_r1
    from agentroute.training.lm_policy import HFPolicy

    base = tmp_path / "base"
    p = HFPolicy.load()
    p.model.save_pretrained(base)
    p.tokenizer.save_pretrained(base)
    recipe = tmp_path / "gpu.yaml"
    recipe.write_text(
        "pool:\n"
        "  - {id: smol-direct, backend: local, model: SmolLM2-135M-Instruct.Q4_1.gguf, input_price: 0.05,"
        " output_price: 0.20, max_tokens: 16, strategies: [direct], description: answers at once.}\n"
        "router: cheapest\nbudget: {usd: 0.0005}\nloop: {max_turns: 2, turn_tokens: 32, info_tokens: 16}\n"
        "sft: {enabled: false}\ngrpo: {max_steps: 2, per_device_train_batch_size: 4, num_generations: 4}\n"
        "gpu:\n  grpo: {use_vllm: true, vllm_mode: colocate, vllm_gpu_memory_utilization: 0.2,"
        " vllm_max_model_length: 2048}\n"
    )
    summary = train_router_r1(recipe, tmp_path / "run", gpu=True, policy_dir=base)
    assert summary["grpo"]["steps"] == 2
    assert (tmp_path / "run" / "policy" / "config.json").is_file()
    print("GPU seconds per GRPO step (vLLM colocate):", summary["grpo"]["seconds_per_step"])

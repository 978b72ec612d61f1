"""Ctrl-C during GRPO names the checkpoint ``--resume`` continues from (real SmolLM2, real TRL)."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time

import pytest

SAVES_EVERY_STEP = """
pool:
  - {id: smol-direct, backend: local, model: SmolLM2-135M-Instruct.Q4_1.gguf, input_price: 0.05,
     output_price: 0.20, max_tokens: 8, strategies: [direct]}
data: {train: 50}
loop: {max_turns: 1, turn_tokens: 16, info_tokens: 8}
sft: {enabled: false}
grpo: {max_steps: 50, per_device_train_batch_size: 2, num_generations: 2, save_strategy: steps, save_steps: 1,
       save_total_limit: 1}
"""


def _interrupt_when_saved(checkpoint, deadline_s=600.0):
    """SIGINT to this process once TRL has finished writing ``checkpoint`` (its trainer_state.json is last)."""
    def watch():
        deadline = time.monotonic() + deadline_s
        while not (checkpoint / "trainer_state.json").is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, daemon=True).start()


@pytest.mark.slow
def test_ctrl_c_during_grpo_names_the_checkpoint_to_resume_from(tmp_path):
    """Was: 'this run saved no policy' — the GRPO checkpoint it had written, and --resume, unmentioned."""
    from agentroute.routers.router_r1.trainer import TrainingInterrupted, train_router_r1

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(SAVES_EVERY_STEP)
    out = tmp_path / "out"
    _interrupt_when_saved(out / "grpo" / "checkpoint-1")
    try:
        with pytest.raises(TrainingInterrupted) as stop:
            train_router_r1(recipe, out, log=lambda _: None)
        assert len(stop.value.saved) == 1
        assert stop.value.saved[0].startswith("grpo/checkpoint-") and "rerun with --resume" in stop.value.saved[0]
    finally:
        shutil.rmtree(out, ignore_errors=True)  # ~1.6 GB a checkpoint (weights and Adam state)

"""Ctrl-C during ``train router-r1`` on the real local SmolLM2, while the SFT traces' pool calls run."""

from __future__ import annotations

import os
import re
import shutil
import signal
import threading
import time

import pytest

from agentroute.routers.router_r1.trainer import save_atomically
from tests.fixtures_signals import ROUTER_R1_TRACES, signal_while_traces_are_built

SMOKE = """
pool:
  - {id: smol-direct, backend: local, model: SmolLM2-135M-Instruct.Q4_1.gguf, input_price: 0.05,
     output_price: 0.20, max_tokens: 8, strategies: [direct]}
data: {train: 50}
loop: {max_turns: 1, turn_tokens: 16, info_tokens: 8}
sft: {enabled: false}
grpo: {per_device_train_batch_size: 2, num_generations: 2, save_strategy: steps, save_steps: 1, save_total_limit: 1,
       beta: 0.0}
"""  # beta 0: no reference model to load and run (checkpoints and resume are the same; test_router_r1_slow keeps it)


@pytest.mark.slow
def test_ctrl_c_while_traces_are_built_exits_130_with_one_line(tmp_path, tiny_policy):
    """Was: the local model's generation thread was still running at exit and the process died
    of SIGABRT ("terminate called without an active exception"), with no line and no 130."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(ROUTER_R1_TRACES + f"policy: {tiny_policy}\n")
    out = tmp_path / "out"
    code, said = signal_while_traces_are_built(
        ["agentroute.cli.router_r1_cmd", "--config", str(recipe), "--out", str(out)], signal.SIGINT,
        cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert code == 130, said
    assert said == [f"interrupted: --out {out}: this run saved no policy\n"]
    assert not (out / "sft").exists() and not (out / "policy").exists()


def test_a_save_cut_short_leaves_the_previous_folder_whole(tmp_path):
    target = tmp_path / "policy"
    save_atomically(target, lambda folder: (folder.mkdir(), (folder / "weights").write_text("first")))

    def dies_half_way(folder):
        folder.mkdir()
        (folder / "weights").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save_atomically(target, dies_half_way)
    assert (target / "weights").read_text() == "first"  # not the half-written one
    save_atomically(target, lambda folder: (folder.mkdir(), (folder / "weights").write_text("second")))
    assert (target / "weights").read_text() == "second" and sorted(p.name for p in tmp_path.iterdir()) == ["policy"]


def test_resume_without_a_grpo_checkpoint_is_refused_before_anything_loads(tmp_path):
    from agentroute.errors import ConfigurationError
    from agentroute.routers.router_r1.trainer import train_router_r1

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(SMOKE)
    with pytest.raises(ConfigurationError, match=r"--resume: no GRPO checkpoint in .*grpo; .*save_strategy: steps"):
        train_router_r1(recipe, tmp_path / "out", resume=True, log=lambda _: None)


def _interrupt_when_saved(checkpoint, deadline_s=600.0):
    """SIGINT to this process once TRL has finished writing ``checkpoint`` (its trainer_state.json is last)."""
    def watch():
        deadline = time.monotonic() + deadline_s
        while not (checkpoint / "trainer_state.json").is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, daemon=True).start()


@pytest.mark.slow
def test_ctrl_c_during_grpo_names_the_checkpoint_and_resume_continues_from_it(tmp_path, tiny_policy):
    """Was: 'this run saved no policy' — the GRPO checkpoint it had written, and --resume, unmentioned;
    and before that, no way to continue a GRPO run (TRL's checkpoints, when the recipe saved them, were
    never read). One run serves both, as a user meets them: Ctrl-C after step 1's save, then --resume."""
    from agentroute.routers.router_r1.trainer import TrainingInterrupted, train_router_r1

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(SMOKE)
    out = tmp_path / "out"
    _interrupt_when_saved(out / "grpo" / "checkpoint-1")
    try:
        with pytest.raises(TrainingInterrupted) as stop:
            train_router_r1(recipe, out, policy_dir=tiny_policy, max_steps=50, log=lambda _: None)
        [saved] = stop.value.saved
        assert re.fullmatch(r"grpo/checkpoint-\d+ \(rerun with --resume to continue GRPO from it\)", saved), saved
        assert not (out / "policy").exists()
        done = int(saved.split()[0].split("-")[1])  # 1, unless the SIGINT came after the next save
        resumed = train_router_r1(recipe, out, policy_dir=tiny_policy, max_steps=done + 1, resume=True, log=lambda _: None)
        assert resumed["grpo"]["steps"] == done + 1
        assert len(resumed["grpo"]["rollout_seconds"]) == 1  # only the last step was rolled out and trained
        assert (out / "policy" / "config.json").is_file()
    finally:
        shutil.rmtree(out, ignore_errors=True)  # checkpoints (weights and Adam state)

"""A stop signal landing while a training checkpoint is written (a second Ctrl-C, a scheduler's SIGTERM
after the user's Ctrl-C) waits until the write is done: the checkpoint on disk is the run's last
finished state, whole; and the SIGTERM handler of ``agentroute train`` is the caller's again after it."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from agentroute.training import BoPOConfig, BoPOTrainer  # noqa: E402
from agentroute.training.checkpoint import checkpoint_done  # noqa: E402
from agentroute.training.rewards import boundary_reward  # noqa: E402
from agentroute.training.stopping import Terminated, terminate_as_interrupt  # noqa: E402

CONFIG = BoPOConfig(steps=2, tiers=("mistralai/mixtral-8x7b-chat", "gpt-4-1106-preview"), variants=2, boundary_rollouts=2,
                    sweep=2, sft_epochs=2, iterations=6, tasks_per_iteration=6, group_size=2, emb_proj=8, hidden=8)


def embed(texts: list[str]) -> np.ndarray:
    return np.stack([np.bincount(np.frombuffer(t.encode(), np.uint8) % 16, minlength=16) for t in texts]).astype(np.float32)


def stop_at(n: int):  # noqa: ANN201
    calls = [0]

    def reward(**kwargs):  # noqa: ANN003, ANN202
        calls[0] += 1
        if calls[0] == n:
            raise KeyboardInterrupt  # the user's Ctrl-C, a few iterations in
        return boundary_reward(**kwargs)

    return reward


@pytest.fixture(scope="module")
def table(data_dir: Path):
    from agentroute.eval.datasets import load_dataset
    from agentroute.outcomes import as_outcome_table

    return as_outcome_table(load_dataset(f"routerbench:{data_dir / 'routerbench'}", limit=60).train)


@pytest.mark.parametrize(("second", "raised"), [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)])
def test_a_second_signal_during_the_final_checkpoint_write_keeps_the_last_state(
        tmp_path: Path, table, monkeypatch: pytest.MonkeyPatch, second: int, raised: type) -> None:
    """Was: the second signal cut the final write short — the checkpoint on disk stayed the one after the
    warm-up (0 BoPO iterations), the iterations since lost."""
    real_save, saves = torch.save, []

    def save_and_get_a_signal(obj, f, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        saves.append(obj["done"])
        if len(saves) == 2:  # the write in the stop's `finally` (the first was the warm-up's)
            os.kill(os.getpid(), second)
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_and_get_a_signal)
    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(raised), terminate_as_interrupt():
        BoPOTrainer(CONFIG, reward_funcs=[stop_at(9)], embed=embed).train(table, checkpoint=checkpoint, checkpoint_every_s=3600)
    assert saves[0] == "0 BoPO iterations" and saves[1] != saves[0]
    assert checkpoint_done(checkpoint) == saves[1]  # whole, and the last finished state
    assert not checkpoint.with_name("checkpoint.pt.partial").exists()


def test_the_sigterm_handler_is_the_callers_again_after_the_block() -> None:
    def mine(signum, frame) -> None:  # noqa: ANN001
        pass

    before = signal.signal(signal.SIGTERM, mine)
    try:
        with terminate_as_interrupt():
            assert signal.getsignal(signal.SIGTERM) is not mine
        assert signal.getsignal(signal.SIGTERM) is mine
        with pytest.raises(Terminated), terminate_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, before)


def test_outside_the_main_thread_nothing_is_installed() -> None:
    seen: list[object] = []

    def worker() -> None:
        with terminate_as_interrupt():
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [before]


def test_a_ctrl_c_from_outside_waits_for_the_block_though_other_threads_run() -> None:
    """A process-directed SIGINT may be delivered to any thread (torch's, a progress bar's): it still
    waits for the block's end (a thread signal mask on the main thread alone would not hold it)."""
    import subprocess
    import time

    from agentroute._signals import signals_deferred

    threading.Thread(target=time.sleep, args=(5,), daemon=True).start()
    done = []
    with pytest.raises(KeyboardInterrupt):
        with signals_deferred():
            subprocess.Popen(["sh", "-c", f"sleep 0.2; kill -INT {os.getpid()}"])
            end = time.monotonic() + 1.5
            while time.monotonic() < end:
                pass
            done.append("block")
    assert done == ["block"]

"""A second Ctrl-C during ``train router-r1`` while the pool's workers stop (users press it again when
the first seems slow): the run still ends on the line naming what it saved.

Was: the second ``KeyboardInterrupt`` replaced the trainer's :class:`TrainingInterrupted`, so the
command said ``this run saved no policy`` although ``OUT/sft`` was saved."""

from __future__ import annotations

import json
import os
import signal

import pytest

from agentroute.pool.pool import ModelPool
from agentroute.routers.router_r1.trainer import TrainingInterrupted, train_router_r1


def _ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)  # a real SIGINT: Python's handler raises KeyboardInterrupt in the main thread


@pytest.mark.parametrize("first", [True, False], ids=["ctrl-c-then-ctrl-c", "ctrl-c-as-it-ends"])
def test_a_ctrl_c_while_the_workers_stop_still_names_what_was_saved(tmp_path, tiny_policy, monkeypatch, first):
    questions = tmp_path / "questions.jsonl"
    questions.write_text(json.dumps({"question": "Who wrote Dune?", "answer": "Frank Herbert"}) + "\n")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "pool:\n  - {id: plain, backend: openai, model: plain, base_url: 'http://127.0.0.1:9/v1', max_tokens: 8}\n"
        f"data: {{path: '{questions}', train: 1}}\nloop: {{max_turns: 1, turn_tokens: 8, info_tokens: 8}}\n"
        "sft: {enabled: true, traces: 1, epochs: 1, batch_size: 1, direct_every: 1}\n"  # a direct trace: no pool call
    )
    closing = ModelPool.aclose

    async def aclose_interrupted(pool: ModelPool) -> None:
        _ctrl_c()  # (sent from the pool's loop thread: it lands in the main thread, waiting for this close)
        await closing(pool)

    monkeypatch.setattr(ModelPool, "aclose", aclose_interrupted)

    def log(line: str) -> None:
        if first and line.startswith("sft: 1 traces ("):  # just after OUT/sft was saved
            _ctrl_c()

    with pytest.raises(TrainingInterrupted) as stopped:
        train_router_r1(recipe, tmp_path / "out", policy_dir=tiny_policy, sft_only=True, log=log)
    assert stopped.value.saved == ["sft/ (the SFT warm-up)"] and not stopped.value.terminated
    assert (tmp_path / "out" / "sft" / "config.json").is_file()

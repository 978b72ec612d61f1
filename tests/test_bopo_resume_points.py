"""BoPO stopped at any point — in the BoSFT warm-up, right after it, between iterations, mid-iteration,
twice in a row — and resumed trains exactly the policy an uninterrupted run trains, whatever the
caller's own random state; and training leaves the caller's torch random state as it found it."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from agentroute.training import BoPOConfig, BoPOTrainer  # noqa: E402
from agentroute.training.checkpoint import checkpoint_done  # noqa: E402
from tests.test_bopo_resume import StopAt, embed  # noqa: E402  (one fixed embedding, one stop rule)

CONFIG = BoPOConfig(steps=2, tiers=("mistralai/mixtral-8x7b-chat", "gpt-4-1106-preview"), variants=2, boundary_rollouts=2,
                    sweep=2, sft_epochs=3, iterations=5, tasks_per_iteration=6, group_size=2, emb_proj=8, hidden=8)


class StopInWarmUp(BoPOTrainer):
    """A Ctrl-C in the BoSFT warm-up's second epoch."""

    def sft(self, policy, data, E, *, progress=None):  # noqa: ANN001, ANN201
        class Bar:
            epochs = 0

            def update(self, n: int) -> None: ...

            def advance(self, text: str = "") -> None:
                Bar.epochs += 1
                if Bar.epochs == 2:
                    raise KeyboardInterrupt

        return super().sft(policy, data, E, progress=Bar())


@pytest.fixture(scope="module")
def table(data_dir: Path):
    from agentroute.eval.datasets import load_dataset
    from agentroute.outcomes import as_outcome_table

    return as_outcome_table(load_dataset(f"routerbench:{data_dir / 'routerbench'}", limit=60).train)


@pytest.fixture(scope="module")
def straight(table):
    return BoPOTrainer(CONFIG, reward_funcs=[StopAt(None)], embed=embed).train(table)


def _weights(result) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy() for k, v in result.policy.state_dict().items()}


def _same(result, straight) -> None:
    assert result.report["bopo"]["iterations"] == straight.report["bopo"]["iterations"]
    assert result.report["sft"]["final_loss"] == straight.report["sft"]["final_loss"]
    for name, value in _weights(straight).items():
        np.testing.assert_array_equal(_weights(result)[name], value, err_msg=name)


def _scramble_callers_random_state() -> None:
    """A caller's own draws before the resumed run: they must not matter."""
    torch.manual_seed(12345)
    torch.rand(7)
    np.random.seed(54321)
    random.seed(99)


@pytest.mark.parametrize("every_s", [0.0, 30.0])
@pytest.mark.parametrize("stops", [(1,), (2,), (5,), (9,), (3, 4), (2, 2, 2)])
def test_stopped_anywhere_in_bopo_and_resumed_trains_the_uninterrupted_policy(tmp_path: Path, table, straight, stops, every_s) -> None:
    checkpoint = tmp_path / "checkpoint.pt"
    for n in stops:
        with pytest.raises(KeyboardInterrupt):
            BoPOTrainer(CONFIG, reward_funcs=[StopAt(n)], embed=embed).train(table, checkpoint=checkpoint, checkpoint_every_s=every_s)
        assert (checkpoint_done(checkpoint) or "").endswith(" BoPO iterations")
        _scramble_callers_random_state()
    _same(BoPOTrainer(CONFIG, reward_funcs=[StopAt(None)], embed=embed).train(table, checkpoint=checkpoint), straight)


def test_stopped_in_the_warm_up_keeps_nothing_and_the_rerun_trains_the_same_policy(tmp_path: Path, table, straight) -> None:
    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(KeyboardInterrupt):
        StopInWarmUp(CONFIG, reward_funcs=[StopAt(None)], embed=embed).train(table, checkpoint=checkpoint)
    assert not checkpoint.exists()
    _scramble_callers_random_state()
    _same(BoPOTrainer(CONFIG, reward_funcs=[StopAt(None)], embed=embed).train(table, checkpoint=checkpoint), straight)


def test_training_leaves_the_callers_torch_random_state_alone(table) -> None:
    """Was: train() reseeded torch's global generator (torch.manual_seed(seed)), so a notebook's
    draws after a fit were the same in every session."""
    torch.manual_seed(2024)
    expected = torch.rand(3)
    torch.manual_seed(2024)
    BoPOTrainer(CONFIG.replace(iterations=1), reward_funcs=[StopAt(None)], embed=embed).train(table)
    assert torch.equal(torch.rand(3), expected)


def test_a_checkpoint_of_the_same_data_with_other_task_labels_is_refused(tmp_path: Path, table) -> None:
    """Was: resumed — task types group BoPO's tasks and cap their costs, yet were not in the run's key,
    so relabelled data went on from a checkpoint trained on other tasks."""
    import dataclasses

    from agentroute.errors import ConfigurationError

    checkpoint = tmp_path / "checkpoint.pt"
    config = CONFIG.replace(iterations=2)
    with pytest.raises(KeyboardInterrupt):
        BoPOTrainer(config, reward_funcs=[StopAt(3)], embed=embed).train(table, checkpoint=checkpoint)
    relabelled = dataclasses.replace(table, task_types=["one-type"] * len(table.queries))
    with pytest.raises(ConfigurationError, match="a checkpoint of another training run"):
        BoPOTrainer(config, reward_funcs=[StopAt(None)], embed=embed).train(relabelled, checkpoint=checkpoint)
    scores = np.array(table.scores, float)
    scores[0, 0] = 1.0 - scores[0, 0]  # the same queries, one outcome changed
    with pytest.raises(ConfigurationError, match="a checkpoint of another training run"):
        BoPOTrainer(config, reward_funcs=[StopAt(None)], embed=embed).train(dataclasses.replace(table, scores=scores),
                                                                            checkpoint=checkpoint)

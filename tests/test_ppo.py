"""The shared PPO pieces: GAE against hand-computed values, the clipped losses, minibatching."""

from __future__ import annotations

import numpy as np
import pytest

from agentroute.errors import ConfigurationError
from agentroute.training.ppo import PPOConfig, gae, minibatches, normalize, ppo_losses

torch = pytest.importorskip("torch")


def test_gae_hand_computed_two_episodes():
    # episode 1: t0, t1 (done); episode 2: t2 (done). γ = 0.9, λ = 0.5
    r = [0.0, 1.0, 2.0]
    v = [0.5, 0.4, 1.0]
    d = [False, True, True]
    adv, ret = gae(r, v, d, gamma=0.9, lam=0.5)
    # δ1 = 1 − 0.4 = 0.6, Â1 = 0.6;  δ0 = 0 + 0.9·0.4 − 0.5 = −0.14, Â0 = −0.14 + 0.45·0.6 = 0.13
    # δ2 = 2 − 1 = 1, Â2 = 1 (nothing flows from episode 2 into episode 1)
    assert adv == pytest.approx([0.13, 0.6, 1.0])
    assert ret == pytest.approx([0.63, 1.0, 2.0])


def test_gae_bootstraps_a_cut_episode():
    adv, ret = gae([1.0], [0.0], [False], gamma=0.5, lam=1.0, last_value=2.0)
    assert adv.tolist() == pytest.approx([2.0])  # 1 + 0.5·2 − 0
    assert ret.tolist() == pytest.approx([2.0])


def test_gae_lambda_zero_is_one_step_td_and_one_is_monte_carlo():
    r, v, d = [0.0, 0.0, 1.0], [0.2, 0.3, 0.6], [False, False, True]
    td, _ = gae(r, v, d, gamma=1.0, lam=0.0)
    assert td == pytest.approx([0.3 - 0.2, 0.6 - 0.3, 1.0 - 0.6])
    mc, ret = gae(r, v, d, gamma=1.0, lam=1.0)
    assert ret == pytest.approx([1.0, 1.0, 1.0])  # the episode's return at every step
    assert mc == pytest.approx([0.8, 0.7, 0.4])


def test_gae_rejects_mismatched_lengths():
    with pytest.raises(ConfigurationError, match="one length"):
        gae([1.0, 2.0], [0.0], [True], gamma=0.9, lam=0.9)


def test_clipped_policy_loss_by_hand():
    logp = torch.log(torch.tensor([1.5, 0.5]))  # ratios 1.5 and 0.5 against old log-prob 0
    old = torch.zeros(2)
    adv = torch.tensor([1.0, -1.0])
    values, returns = torch.tensor([0.0, 1.0]), torch.tensor([1.0, 1.0])
    out = ppo_losses(logp, old, adv, values, returns, clip=0.2)
    # t0: min(1.5·1, 1.2·1) = 1.2; t1: min(0.5·−1, 0.8·−1) = −0.8 → loss = −(1.2 − 0.8)/2
    assert float(out.policy) == pytest.approx(-0.2)
    assert float(out.value) == pytest.approx(0.5)
    assert out.clip_fraction == pytest.approx(1.0)


def test_value_clip_keeps_the_larger_error():
    z = torch.zeros(1)
    out = ppo_losses(z, z, z, torch.tensor([2.0]), torch.tensor([2.0]), old_values=torch.tensor([0.0]), value_clip=0.5)
    assert float(out.value) == pytest.approx(1.5**2)  # clipped value 0.5 is further from the target


def test_losses_have_gradients():
    logits = torch.zeros(3, requires_grad=True)
    logp = torch.log_softmax(logits, 0)
    out = ppo_losses(logp, logp.detach(), torch.tensor([1.0, 0.0, -1.0]), torch.zeros(3), torch.zeros(3))
    out.policy.backward()
    assert logits.grad is not None and float(logits.grad.abs().sum()) > 0


def test_minibatches_cover_every_index_once():
    batches = list(minibatches(10, 4, np.random.default_rng(0)))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(np.concatenate(batches).tolist()) == list(range(10))
    again = list(minibatches(10, 4, np.random.default_rng(0)))
    assert all((a == b).all() for a, b in zip(batches, again, strict=True))


def test_normalize_and_config_checks():
    assert normalize(np.array([1.0, 1.0])).tolist() == [0.0, 0.0]
    assert PPOConfig().gamma == 0.98 and PPOConfig().gae_lambda == 0.85 and PPOConfig().minibatch == 32
    with pytest.raises(ConfigurationError, match="'clip'"):
        PPOConfig(clip=1.5)
    with pytest.raises(ConfigurationError, match="'minibatch'"):
        PPOConfig(minibatch=0)

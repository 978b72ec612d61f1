"""Rewards as plain functions, GRPO group advantages, and the doctests of the BoPO modules."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest

from agentroute.training import grpo, rewards
from agentroute.training.grpo import group_advantages
from agentroute.training.rewards import (
    boundary_reward,
    combine_rewards,
    cost_penalty,
    hard_reward,
    success_reward,
)

DOCTEST_MODULES = [
    "agentroute.training.rewards",
    "agentroute.training.grpo",
    "agentroute.agentic.decoding",
    "agentroute.agentic.env",
    "agentroute.agentic.tasks",
    "agentroute.agentic.boundary",
    "agentroute.agentic.bosft",
    "agentroute.agentic.features",
]


@pytest.mark.parametrize("module", DOCTEST_MODULES)
def test_doctests(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    if module in ("agentroute.training.rewards", "agentroute.training.grpo"):
        assert result.attempted >= 3, "every reward and advantage function carries a doctest"


def test_every_reward_function_has_a_doctest():
    for func in (
        success_reward,
        hard_reward,
        cost_penalty,
        boundary_reward,
        combine_rewards,
        group_advantages,
    ):
        assert ">>>" in (func.__doc__ or ""), func.__name__


def test_rewards_return_float_lists_and_ignore_unknown_keyword_arguments():
    kwargs = {
        "success": [True, False, True],
        "difficulty": ["hard", "easy", "intractable"],
        "cost": [1.0, 0.2, 0.5],
        "reference_cost": [2.0, 2.0, 1.0],
        "prompts": ["unused"] * 3,
        "task_type": ["a", "b", "c"],
    }
    for func in (success_reward, hard_reward, cost_penalty, boundary_reward):
        out = func(**kwargs)
        assert isinstance(out, list) and len(out) == 3 and all(isinstance(x, float) for x in out)


def test_boundary_reward_is_the_weighted_sum_of_its_parts():
    kwargs = {"success": [True, True, False, False], "difficulty": ["hard", "easy", "hard", "easy"],
              "cost": [0.3, 0.05, 1.0, 0.05], "reference_cost": [1.0, 1.0, 1.0, 1.0]}  # fmt: skip
    combined = combine_rewards([success_reward, hard_reward, cost_penalty], [1.0, 0.7, 0.4], **kwargs)
    assert boundary_reward(**kwargs, lam=0.4, hard_bonus=0.7) == pytest.approx(combined)


def test_boundary_reward_orders_the_boundary_policies_as_the_paper_intends():
    """Hard task: always-large beats failing cheaply; easy task: always-small beats always-large."""
    hard = boundary_reward(
        success=[True, False], difficulty=["hard"] * 2, cost=[1.0, 0.05], reference_cost=[1.0] * 2
    )
    easy = boundary_reward(
        success=[True, True], difficulty=["easy"] * 2, cost=[1.0, 0.05], reference_cost=[1.0] * 2
    )
    assert hard[0] > hard[1] and easy[1] > easy[0]


def test_combine_rewards_checks_its_arguments():
    with pytest.raises(ValueError, match="at least one"):
        combine_rewards([])
    with pytest.raises(ValueError, match="2 weights for 1"):
        combine_rewards([success_reward], [1.0, 2.0], success=[True])


def test_group_advantages_centre_and_scale():
    adv = group_advantages([1.0, 2.0, 3.0, 4.0])
    assert adv.mean() == pytest.approx(0.0) and adv.std() == pytest.approx(1.0, abs=1e-4)
    raw = group_advantages([1.0, 3.0], scale=False)
    assert raw.tolist() == [-1.0, 1.0]


def test_reference_guided_advantage_punishes_a_group_that_fails_cheaply():
    """A group of cheap failures on a hard task: zero signal alone, negative once anchored."""
    group = boundary_reward(
        success=[False] * 4, difficulty=["hard"] * 4, cost=[0.05] * 4, reference_cost=[1.0] * 4
    )
    ref = boundary_reward(
        success=[False] * 5 + [True] * 5, difficulty=["hard"] * 10,
        cost=[0.05] * 5 + [1.0] * 5, reference_cost=[1.0] * 10,
    )  # fmt: skip
    assert np.allclose(group_advantages(group), 0.0)
    assert (group_advantages(group, reference=ref) < -0.5).all()


def test_module_docstrings_cite_the_paper():
    for module in (rewards, grpo):
        assert "2602.21227" in (module.__doc__ or "")

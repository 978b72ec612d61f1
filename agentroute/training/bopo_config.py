"""The configuration of boundary-guided training (BoSFT + BoPO), checked when it is built.

Values marked **[paper]** follow Zhang et al., "Budget-Aware Agentic Routing via Boundary-Guided
Training" (arXiv:2602.21227); the rest are agentroute defaults **[default]**, chosen on the
RouterBench subset and easy to change (``training/bopo.yaml``).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agentroute.agentic.env import SuccessRule, task_succeeds
from agentroute.agentic.tasks import Equivalence
from agentroute.checks import check_count
from agentroute.errors import ConfigurationError

#: The annotations of BoPOConfig's number fields, and the type their values must have.
_NUMBER_FIELDS: dict[str, type] = {"int": numbers.Integral, "int | None": numbers.Integral, "float": numbers.Real}


@dataclass(frozen=True)
class BoPOConfig:
    """Every knob of :class:`~agentroute.training.bopo_trainer.BoPOTrainer`.

    Environment (:class:`~agentroute.agentic.env.AgenticEnv`):
        steps: k, steps per task **[default 3]**.
        tiers: models of the ladder, cheapest first; None: (cheapest, best-scoring).
        success_rule: ``all`` | ``majority`` | ``any`` | ``last`` | a fraction.
        variants: equivalent queries per step for stochastic rollouts **[default 4]**.
        equivalence: ``neighbours`` (by embedding) or ``task_type``.
        score_threshold: logged score at which a step succeeds.
        cost_margin: worst case = largest train cost × margin.
        feedback: show step outcomes to the policy (an agent environment that reports a failed
            action); False: outcomes are known only at the end of the task.
        max_attempts: calls allowed per step; > 1 lets the policy escalate a failed step (needs
            ``feedback``).
    Boundary and BoSFT:
        boundary_rollouts: K rollouts of each boundary policy **[paper: 5]**.
        difficulty_threshold: success rate that counts as "succeeds" **[default 0.5]**.
        sweep: N, the P(large) = j/N sweep for hard tasks **[paper: 10–20]**.
        stratify: equal total weight per difficulty class in SFT.
        sft_epochs, sft_lr, batch_size: the imitation stage.
    BoPO:
        iterations, tasks_per_iteration, group_size (G), inner_epochs, lr, clip_eps: GRPO-style updates.
        kl_coef: KL(π ‖ π_SFT) weight; entropy_coef: entropy bonus.
        lam: λ on C_norm; hard_bonus: weight of r_hard **[paper form; values default]**.
        reference_guided: anchor advantages on the cached boundary rollouts **[paper]**.
        reference_weight: the boundary rollouts also enter the loss as off-policy guidance with
            their (pooled) advantages scaled by this weight; 0 keeps them in the baseline only
            **[default: our reading]**.
        budget_prob: share of training groups run under a sampled hard budget (large-call caps
            1 … k−1, or USD caps at ``usd_fractions`` of always-large's mean task cost), so the
            policy learns to use the remaining budget in its state.
    Policy:
        tail_chars: characters of a step's text embedded (its end); emb_proj, hidden: widths.
        seed: everything random is seeded from it.
    """

    steps: int = 3
    tiers: tuple[str, ...] | None = None
    success_rule: SuccessRule = "all"
    variants: int = 4
    equivalence: Equivalence = "neighbours"
    score_threshold: float = 0.5
    cost_margin: float = 1.1
    feedback: bool = False
    max_attempts: int = 1
    boundary_rollouts: int = 5
    difficulty_threshold: float = 0.5
    sweep: int = 10
    stratify: bool = True
    sft_epochs: int = 40
    sft_lr: float = 3e-3
    batch_size: int = 256
    iterations: int = 200
    tasks_per_iteration: int = 64
    group_size: int = 8
    inner_epochs: int = 2
    lr: float = 2e-3
    clip_eps: float = 0.2
    kl_coef: float = 0.02
    entropy_coef: float = 0.01
    lam: float = 0.3
    hard_bonus: float = 0.5
    reference_guided: bool = True
    reference_weight: float = 0.5
    advantage_scale: Literal["group", "batch", "none"] = "batch"
    budget_prob: float = 0.5
    usd_fractions: tuple[float, ...] = (0.25, 0.5, 0.75)
    tail_chars: int | None = 512
    emb_proj: int = 32
    hidden: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.tiers is not None:
            object.__setattr__(self, "tiers", tuple(self.tiers))
        object.__setattr__(self, "usd_fractions", tuple(float(f) for f in self.usd_fractions))
        self._check_number_types()
        ints = {
            "steps": self.steps, "variants": self.variants, "boundary_rollouts": self.boundary_rollouts,
            "sweep": self.sweep, "batch_size": self.batch_size, "tasks_per_iteration": self.tasks_per_iteration,
            "inner_epochs": self.inner_epochs, "emb_proj": self.emb_proj, "hidden": self.hidden,
            "max_attempts": self.max_attempts,
        }  # fmt: skip
        for name, value in ints.items():
            check_count(value, f"BoPOConfig.{name}")
        for name in ("sft_epochs", "iterations", "seed"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"BoPOConfig.{name} must be an integer >= 0 (got {getattr(self, name)})")
        for name in ("lr", "sft_lr"):  # NaN and ∞ fail both comparisons
            if not 0 < getattr(self, name) < math.inf:
                raise ConfigurationError(f"BoPOConfig.{name} must be a finite number > 0 (got {getattr(self, name)}); "
                                         "the defaults are lr 2e-3, sft_lr 3e-3")
        for name in ("kl_coef", "entropy_coef", "lam", "hard_bonus", "reference_weight"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ConfigurationError(f"BoPOConfig.{name} must be a finite number >= 0 (got {getattr(self, name)})")
        if not math.isfinite(self.score_threshold):
            raise ConfigurationError(f"BoPOConfig.score_threshold must be a finite score (got {self.score_threshold})")
        task_succeeds([True] * self.steps, self.steps, self.success_rule)
        if self.group_size < 2:
            raise ConfigurationError(
                f"BoPOConfig.group_size must be >= 2 (got {self.group_size}): a GRPO group of one has no "
                "baseline to compare with; use 4-16"
            )
        if self.tiers is not None and (len(self.tiers) < 2 or len(set(self.tiers)) != len(self.tiers)):
            raise ConfigurationError(
                f"BoPOConfig.tiers must name >= 2 distinct models, cheapest first (got {self.tiers})"
            )
        if self.variants == 1 and self.boundary_rollouts > 1:
            raise ConfigurationError(
                f"BoPOConfig: boundary_rollouts={self.boundary_rollouts} with variants=1 gives identical "
                "rollouts (the logged outcomes are deterministic), so the taxonomy would rest on one draw; "
                "set variants >= 2 (resample equivalent queries) or boundary_rollouts=1"
            )
        if not 0 < self.difficulty_threshold <= 1:
            raise ConfigurationError(
                f"BoPOConfig.difficulty_threshold must be in (0, 1] (got {self.difficulty_threshold})"
            )
        if not 0 <= self.budget_prob <= 1:
            raise ConfigurationError(f"BoPOConfig.budget_prob must be in [0, 1] (got {self.budget_prob})")
        if any(not 0 < f <= 1 for f in self.usd_fractions):
            raise ConfigurationError(
                f"BoPOConfig.usd_fractions must lie in (0, 1] (got {self.usd_fractions})"
            )
        if self.budget_prob > 0 and self.steps == 1 and not self.usd_fractions:
            raise ConfigurationError(
                "BoPOConfig: budget_prob > 0 with steps=1 and no usd_fractions leaves no budget to sample "
                "(large-call caps run 1 … k−1); add usd_fractions or set budget_prob=0"
            )
        if self.max_attempts > 1 and not self.feedback:
            raise ConfigurationError(
                f"BoPOConfig: max_attempts={self.max_attempts} without feedback never retries (a step's "
                "failure is not shown, so there is nothing to escalate on); set feedback=True or max_attempts=1"
            )
        if self.advantage_scale not in ("group", "batch", "none"):
            raise ConfigurationError(
                f"BoPOConfig.advantage_scale must be group, batch or none (got {self.advantage_scale!r})"
            )
        if self.reference_weight > 0 and not self.reference_guided:
            raise ConfigurationError(
                f"BoPOConfig: reference_weight={self.reference_weight} needs reference_guided=True (the boundary "
                "rollouts it weighs are the reference group); set reference_weight=0 or reference_guided=True"
            )
        if not 0 < self.clip_eps < 1:
            raise ConfigurationError(f"BoPOConfig.clip_eps must be in (0, 1) (got {self.clip_eps})")
        if not 1 <= self.cost_margin < math.inf:
            raise ConfigurationError(
                f"BoPOConfig.cost_margin must be >= 1 (got {self.cost_margin}): a worst case below the largest logged cost cuts calls off"
            )
        if self.tail_chars is not None and self.tail_chars < 16:
            raise ConfigurationError(f"BoPOConfig.tail_chars must be >= 16 or None (got {self.tail_chars})")

    def _check_number_types(self) -> None:
        """An ``int`` field holds an integer, a ``float`` field a number (bools are neither), before any
        range is compared: a text or a fraction was a TypeError traceback from the first comparison."""
        for f in dataclasses.fields(self):
            kind = _NUMBER_FIELDS.get(str(f.type))
            value = getattr(self, f.name)
            if kind is None or (value is None and "None" in str(f.type)):
                continue
            if isinstance(value, bool) or not isinstance(value, kind):
                what = "an integer" if kind is numbers.Integral else "a number"
                raise ConfigurationError(f"BoPOConfig.{f.name} must be {what} (got {value!r})")

    # -- conversions ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["tiers"] = list(self.tiers) if self.tiers is not None else None
        out["usd_fractions"] = list(self.usd_fractions)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> BoPOConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigurationError(f"BoPOConfig: unknown fields {unknown}; known: {sorted(known)}")
        return cls(**dict(values))

    @classmethod
    def from_yaml(cls, path: str | Path, section: str | None = "bopo") -> BoPOConfig:
        """Read a recipe file: a training recipe (``training/bopo.yaml``: the fields under
        ``params: config:``), or a mapping of the fields, under ``section`` when it has that key."""
        from agentroute.training.recipe_file import read_recipe_file

        data = read_recipe_file(path)
        if isinstance(data, dict) and "params" in data:
            data = recipe_config(data, path)
        elif section and isinstance(data, dict) and section in data:
            data = data[section]
        if not isinstance(data, dict):
            raise ConfigurationError(f"{path}: expected a mapping of BoPOConfig fields")
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> BoPOConfig:
        return dataclasses.replace(self, **changes)


def recipe_config(recipe: Mapping[str, Any], path: str | Path | None) -> dict[str, Any]:
    """The BoPOConfig fields of a training recipe for ``bopo``: its ``params: config:`` mapping
    (``{}`` when absent); a recipe for another router, or a config that is not a mapping, is an error."""
    router = recipe.get("router", "bopo")
    if router != "bopo":
        raise ConfigurationError(f"recipe {path} is for router {router!r}, not 'bopo'")
    params = recipe.get("params") or {}
    config = (params.get("config") or {}) if isinstance(params, dict) else None
    if not isinstance(config, dict):
        raise ConfigurationError(f"recipe {path}: params.config must be a mapping of BoPOConfig fields")
    return dict(config)

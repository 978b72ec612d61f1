"""The configuration of boundary-guided training (BoSFT + BoPO), checked when it is built.

Values marked **[paper]** follow Zhang et al., "Budget-Aware Agentic Routing via Boundary-Guided
Training" (arXiv:2602.21227); the rest are agentroute defaults **[default]**, chosen on the
RouterBench subset and easy to change (``training/bopo.yaml``).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from agentroute.agentic.env import SuccessRule, check_success_rule, check_tier_names
from agentroute.agentic.tasks import Equivalence
from agentroute.errors import ConfigurationError
from agentroute.routers.base import out_of_range

_COUNT, _NATURAL = {"low": 1, "integer": True}, {"low": 0, "integer": True}
_RATE, _WEIGHT, _SHARE = {"low": 0, "low_open": True}, {"low": 0}, {"low": 0, "high": 1}
#: The range of each number field (:func:`~agentroute.routers.base.out_of_range`'s terms).
_RANGES: dict[str, dict[str, Any]] = {
    "steps": _COUNT, "variants": _COUNT, "score_threshold": {}, "cost_margin": {"low": 1}, "max_attempts": _COUNT,
    "boundary_rollouts": _COUNT, "difficulty_threshold": {**_SHARE, "low_open": True}, "sweep": _COUNT,
    "sft_epochs": _NATURAL, "sft_lr": _RATE, "batch_size": _COUNT, "iterations": _NATURAL,
    "tasks_per_iteration": _COUNT, "group_size": {"low": 2, "integer": True}, "inner_epochs": _COUNT, "lr": _RATE,
    "clip_eps": {**_SHARE, "low_open": True, "high_open": True}, "kl_coef": _WEIGHT, "entropy_coef": _WEIGHT,
    "lam": _WEIGHT, "hard_bonus": _WEIGHT, "reference_weight": _WEIGHT, "budget_prob": _SHARE,
    "tail_chars": {"low": 16, "integer": True, "optional": True}, "emb_proj": _COUNT, "hidden": _COUNT, "seed": _NATURAL,
}  # fmt: skip
#: What a refused field's message adds.
_HINTS = {
    "lr": "the default is 2e-3",
    "sft_lr": "the default is 3e-3",
    "group_size": "a GRPO group of one has no baseline to compare with (4-16 is usual)",
    "cost_margin": "a worst case below the largest logged cost cuts calls off",
}
#: The choices of each text field.
_CHOICES: dict[str, tuple[str, ...]] = {
    "equivalence": typing.get_args(Equivalence),
    "advantage_scale": ("group", "batch", "none"),
}


def _refusal(check: Callable[[Any, str], object], value: Any, name: str) -> str | None:
    """The one-line :class:`ConfigurationError` ``check(value, name)`` raises, or ``None``."""
    try:
        check(value, name)
    except ConfigurationError as exc:
        return str(exc)
    return None


def field_refusals(values: Mapping[str, Any]) -> dict[str, str]:
    """What is wrong with each :class:`BoPOConfig` field of ``values`` that is refused on its own
    (field → ``"'lr' must be a finite number > 0 (got -1)…"``, the ranges in the routers' one wording,
    :func:`~agentroute.routers.base.out_of_range`), in field order; fields not given are not checked."""
    said: dict[str, str] = {}
    for name, value in values.items():
        if name in _RANGES and (broken := out_of_range(value, **_RANGES[name])) is not None:
            hint = f" — {_HINTS[name]}" if name in _HINTS else ""
            said[name] = f"{name!r} must be {broken} (got {value!r}){hint}"
        elif name in ("feedback", "stratify", "reference_guided") and not isinstance(value, bool | np.bool_):
            said[name] = f"{name!r} must be true or false (got {value!r})"
        elif name in _CHOICES and value not in _CHOICES[name]:
            said[name] = f"{name!r} must be {' or '.join(_CHOICES[name])} (got {value!r})"
        elif name == "success_rule" and (broke := _refusal(check_success_rule, value, "'success_rule'")):
            said[name] = broke
        elif name == "tiers" and value is not None:  # a text is one name, not its letters
            tiers = tuple(value) if isinstance(value, list | tuple) else [value]
            if broke := _refusal(check_tier_names, tiers, "'tiers'"):
                said[name] = broke
        elif name == "usd_fractions" and (
            not isinstance(value, list | tuple)
            or any(out_of_range(f, low=0, high=1, low_open=True) for f in value)
        ):
            said[name] = f"'usd_fractions' must be shares in (0, 1] (got {value!r})"
    order = [f.name for f in dataclasses.fields(BoPOConfig)]
    return {name: said[name] for name in order if name in said}


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
        if isinstance(self.tiers, list | tuple):
            object.__setattr__(self, "tiers", tuple(self.tiers))
        said = field_refusals({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        refused = list(said.values()) + self._clashes(said)
        if refused:
            raise ConfigurationError("BoPOConfig: " + "; ".join(refused))
        object.__setattr__(self, "usd_fractions", tuple(float(f) for f in self.usd_fractions))

    def _clashes(self, refused: Mapping[str, str]) -> list[str]:
        """The combinations of fields that cannot work (of fields not ``refused`` on their own)."""

        def valid(*names: str) -> bool:
            return not set(names) & set(refused)

        clashes = []
        if valid("variants", "boundary_rollouts") and self.variants == 1 and self.boundary_rollouts > 1:
            clashes.append(
                f"boundary_rollouts={self.boundary_rollouts} with variants=1 gives identical rollouts (the logged "
                "outcomes are deterministic), so the taxonomy would rest on one draw: set variants ≥ 2 (resample "
                "equivalent queries) or boundary_rollouts=1"
            )
        if (
            valid("budget_prob", "steps", "usd_fractions")
            and self.budget_prob > 0
            and self.steps == 1
            and not self.usd_fractions
        ):
            clashes.append(
                "budget_prob > 0 with steps=1 and no usd_fractions leaves no budget to sample (large-call caps run "
                "1 … k−1): add usd_fractions or set budget_prob=0"
            )
        if valid("max_attempts", "feedback") and self.max_attempts > 1 and not self.feedback:
            clashes.append(
                f"max_attempts={self.max_attempts} without feedback never retries (a step's failure is not shown, "
                "so there is nothing to escalate on): set feedback=True or max_attempts=1"
            )
        if (
            valid("reference_weight", "reference_guided")
            and self.reference_weight > 0
            and not self.reference_guided
        ):
            clashes.append(
                f"reference_weight={self.reference_weight} needs reference_guided=True (the boundary rollouts it "
                "weighs are the reference group): set reference_weight=0 or reference_guided=True"
            )
        return clashes

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
        if unknown:  # with the known fields refused, so that one run names every mistake
            refused = "".join(f"; {said}" for said in field_refusals(values).values())
            raise ConfigurationError(f"BoPOConfig: unknown fields {unknown}; known: {sorted(known)}{refused}")
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
        try:
            return cls.from_dict(data)
        except ConfigurationError as exc:  # the file named, as recipe_config's refusals name it
            raise ConfigurationError(f"recipe {path}: {exc}") from None

    def replace(self, **changes: Any) -> BoPOConfig:
        return dataclasses.replace(self, **changes)


def recipe_config(recipe: Mapping[str, Any], path: str | Path | None) -> dict[str, Any]:
    """The BoPOConfig fields of a training recipe for ``bopo``: its ``params: config:`` mapping
    (``{}`` when absent); a recipe for another router, a config that is not a mapping, or a field
    refused on its own (:func:`field_refusals`: all of them, in one line) is an error."""
    router = recipe.get("router", "bopo")
    if router != "bopo":
        raise ConfigurationError(f"recipe {path} is for router {router!r}, not 'bopo'")
    params = recipe.get("params") or {}
    config = (params.get("config") or {}) if isinstance(params, dict) else None
    if not isinstance(config, dict):
        raise ConfigurationError(f"recipe {path}: params.config must be a mapping of BoPOConfig fields")
    refused = field_refusals(config)  # each bad field, before any data is read
    if refused:
        raise ConfigurationError(f"recipe {path}: BoPOConfig: " + "; ".join(refused.values()))
    return dict(config)

"""BoPO: budget-aware agentic routing with boundary-guided training, as a normal Router.

Zhang et al., "Budget-Aware Agentic Routing via Boundary-Guided Training", arXiv:2602.21227.
At every step the router picks a model tier (cheapest … dearest) from the legal, affordable
candidates the dispatcher hands it. ``fit`` runs the full recipe of
:class:`~agentroute.training.bopo_trainer.BoPOTrainer` — boundary rollouts and difficulty
taxonomy, BoSFT, then BoPO — in the offline agentic environment built from the logged outcomes;
from a log (the memory) only the queries explored on every tier count
(:mod:`agentroute.training.bopo_logs`), and :meth:`BoPORouter.fit_summary` says how many tasks fell
in each class.
``route`` computes the policy's state from the context (query embedding, step index, remaining
budget as a fraction and in absolute terms, history of tiers and outcomes;
:mod:`agentroute.agentic.features`) and decodes it under the budget: the preferred rung is the
highest one whose upper-tail probability reaches ``threshold`` (the knob; for two tiers, large
when P(large) ≥ threshold); when the ledger has masked it, the cheapest candidate.

Where step outcomes are shown (a failed step has status ``failed``) and the dispatcher allows a
second attempt, :meth:`BoPORouter.escalate` redoes a failed step with an untried tier when the
policy, in the state after the failure, puts at least ``threshold`` on it; a policy trained with
``feedback: true, max_attempts: 2`` has learnt when that pays.

Candidates map to the trained ladder by model id, else by their card's tier (``small`` → the
bottom rung, ``large`` → the top), so a policy trained on logged outcomes also routes the local
tiers of a live graph.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import numpy as np

from agentroute._optional import require_installed
from agentroute.agentic.decoding import ordinal_choice
from agentroute.agentic.features import (
    available_mask,
    n_scalar_features,
    rung_of,
    scalar_features,
)
from agentroute.embed import context_text
from agentroute.errors import ConfigurationError
from agentroute.outcomes import as_outcome_table
from agentroute.routers.base import (
    Router,
    check_each,
    check_fit_data,
    check_range,
    decide,
    require_candidates,
)
from agentroute.routers.baselines import cost_order
from agentroute.training.bopo_config import BoPOConfig
from agentroute.types import Decision, RouteContext, Step

log = logging.getLogger(__name__)


class BoPORouter(Router):
    """Budget-aware tier router trained with BoSFT + BoPO.

    Args:
        config: a :class:`BoPOConfig` or a mapping of its fields (default: ``BoPOConfig()``).
        threshold: the serving knob: the policy probability at which a dearer rung is taken.
        seed: replaces ``config.seed`` (training is deterministic for a seed).
    """

    name = "bopo"
    learned = True
    knob = "threshold"
    knob_grid = tuple(float(x) for x in np.round(np.linspace(0.05, 0.95, 19), 2))

    def __init__(
        self, *, config: BoPOConfig | Mapping[str, Any] | None = None, threshold: float = 0.5, seed: int = 0
    ):
        require_installed("torch")  # its policy needs it: said when built, not at fit
        self.config = config
        self.threshold = threshold
        self.seed = seed

    # -- training -----------------------------------------------------------------------------
    def resolved_config(self) -> BoPOConfig:
        config = self.config
        if config is None:
            config = BoPOConfig()
        elif isinstance(config, Mapping):
            config = BoPOConfig.from_dict(config)
        elif not isinstance(config, BoPOConfig):
            raise ConfigurationError(
                f"bopo: config must be a BoPOConfig or a mapping (got {type(config).__name__})"
            )
        return config.replace(seed=self.seed)

    def fit(
        self, data: Any, *, checkpoint: str | Path | None = None, checkpoint_every_s: float = 30.0
    ) -> Self:
        """Train on logged outcomes (an OutcomeTable, a dataset — its train split — or trajectories).

        ``checkpoint``: a file the training state is kept in (after the BoSFT warm-up, every
        ``checkpoint_every_s`` seconds of BoPO, on Ctrl-C — on SIGTERM within
        :func:`~agentroute.training.stopping.terminate_as_interrupt` — and at the end); a fit given an
        existing one resumes from it — the same policy as an uninterrupted run — when the config
        (but ``iterations``) and data are the same. Delete it once the router is saved.

        Trajectories (the memory) and tables most of whose queries lack a tier are read as a log:
        only the queries on which every tier ran train the policy
        (:func:`~agentroute.training.bopo_logs.paired_explorations`; an error says how to log
        them when there are none), and ``report_["from_logs"]`` counts them and their classes.
        """
        from agentroute.training.bopo_logs import is_log, paired_explorations, role_free
        from agentroute.training.bopo_trainer import BoPOTrainer

        self._check_threshold()
        config = self.resolved_config()
        data = check_fit_data(self, data)
        table = role_free(as_outcome_table(data))
        if len(table.models) < 2:
            raise ConfigurationError(
                f"bopo: routes between two or more models; the table has {len(table.models)} "
                f"({', '.join(table.models) or 'none'})"
            )
        from_logs = None
        if is_log(data, table, config.tiers):
            table, from_logs = paired_explorations(
                table, config.tiers, score_threshold=config.score_threshold, steps=config.steps
            )
        result = BoPOTrainer(config).train(
            table, checkpoint=checkpoint, checkpoint_every_s=checkpoint_every_s
        )  # with its bar
        if from_logs is not None:
            result.report["from_logs"] = from_logs
        self.config_ = config
        self.policy_ = result.policy
        self.ladder_ = tuple(result.ladder)
        self.ref_usd_ = float(result.ref_usd)
        self.report_ = result.report
        self._embeddings: dict[str, np.ndarray] = {}
        self.fitted_ = True
        log.info("%s", self.fit_summary())
        return self

    def fit_summary(self) -> str:
        """What training found: the ladder, the logged explorations and the boundary taxonomy."""
        self.check_fitted()
        report = self.report_
        lines = [f"bopo: tiers {' < '.join(report.get('tiers', self.ladder_))}"]
        logs = report.get("from_logs")
        if logs:
            classes = ", ".join(f"{k} {v}" for k, v in logs["classes"].items())
            lines.append(
                f"  from the log: {logs['paired']} of {logs['queries']} logged queries ran on every tier "
                f"(per tier: {logs['logged_per_tier']}); their classes: {classes}"
            )
        taxonomy = report.get("taxonomy", {})
        steps = self.config_.steps
        lines.append(
            f"  boundary taxonomy of the {report.get('tasks', '?')} training tasks ({steps} step(s) each, "
            f"{self.config_.boundary_rollouts} rollouts per boundary policy): "
            + ", ".join(f"{k} {v}" for k, v in taxonomy.items())
        )
        return "\n".join(lines)

    def _check_params(self) -> None:
        """The threshold and every :class:`BoPOConfig` field, when the router is built (before any data is read)."""
        super()._check_params()
        # the config's own fields last (a key outside the signature sorts last), so that what follows
        # "BoPOConfig: …" in the one line is BoPOConfig's, not the router's 'threshold'
        check_each(self, {"threshold": self._check_threshold, "BoPOConfig": self.resolved_config})

    def _check_threshold(self) -> None:
        check_range(self, "threshold", low=0, high=1, low_open=True)

    # -- routing ------------------------------------------------------------------------------
    def probabilities(self, ctx: RouteContext) -> np.ndarray:
        """The unmasked policy's probability of each rung of the ladder in this context."""
        from agentroute.routers.base import import_torch

        torch = import_torch()
        text = context_text(ctx, self.config_.tail_chars, word_start=False)
        emb = self._embed(text)
        scal = scalar_features(ctx, self.ladder_, self.ref_usd_)
        with torch.no_grad():
            logits = self.policy_(torch.as_tensor(emb[None]), torch.as_tensor(scal[None]))
            return torch.softmax(logits, -1)[0].numpy().astype(float)

    def _embed(self, text: str) -> np.ndarray:
        cache = self.__dict__.setdefault("_embeddings", {})
        if text not in cache:
            from agentroute.embed import default_embedder

            cache[text] = default_embedder().embed([text])[0].astype(np.float32)
        return cache[text]

    def route(self, ctx: RouteContext) -> Decision:
        self.check_fitted()
        require_candidates(self, ctx)
        self._check_threshold()
        probs = self.probabilities(ctx)
        available = available_mask(ctx, self.ladder_)
        rung = ordinal_choice(probs, available, self.threshold)
        at_rung = [
            i for i in cost_order(ctx) if rung_of(ctx.candidates[i].model, ctx.cards, self.ladder_) == rung
        ]
        index = at_rung[0] if at_rung else cost_order(ctx)[0]
        masked = rung != ordinal_choice(probs, np.ones_like(available), self.threshold)
        why = f"rung {rung + 1}/{len(self.ladder_)} (P={probs[rung]:.2f})" + (
            " — preferred rung unaffordable: cheapest" if masked else ""
        )
        scores = {f"p_rung{r}": float(p) for r, p in enumerate(probs)}
        return decide(self, ctx, index, why=why, scores=scores)

    def escalate(self, ctx: RouteContext, step: Step) -> bool:
        """Redo a failed step with an untried tier when the policy, in the state after the failure,
        puts at least ``threshold`` on the untried tiers (with the failed tier meaning "accept").

        Only a step whose failure is shown (status ``failed``) is ever escalated.
        """
        self.check_fitted()
        if step.status != "failed":
            return False
        tried = {s.agent.key for s in ctx.attempts} | {step.agent.key}
        untried = [a for a in ctx.candidates if a.key not in tried]
        if not untried:
            return False
        seen = {s.id for s in ctx.history}
        retry = dataclasses.replace(
            ctx,
            candidates=untried,
            attempts=[*ctx.attempts, step],
            history=[*ctx.history, step] if step.id not in seen else list(ctx.history),
        )
        probs = self.probabilities(retry)
        allowed = available_mask(retry, self.ladder_)
        failed = rung_of(step.agent.model, ctx.cards, self.ladder_)
        allowed[failed] = True
        p = np.where(allowed, probs, 0.0)
        return bool(1.0 - p[failed] / max(p.sum(), 1e-12) >= self.threshold)

    # -- persistence --------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        return {
            "config": self.config_.to_dict(),
            "ladder": list(self.ladder_),
            "ref_usd": self.ref_usd_,
            "dims": self.policy_.dims(),
            "report": _jsonable_report(self.report_),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        from agentroute.agentic.policy import TierPolicy

        self.config_ = BoPOConfig.from_dict(state["config"])
        self.ladder_ = tuple(state["ladder"])
        self.ref_usd_ = float(state["ref_usd"])
        self.report_ = state.get("report", {})
        dims = dict(state["dims"])
        if dims["n_scalar"] != n_scalar_features(len(self.ladder_)):
            raise ConfigurationError(
                f"bopo: saved policy has {dims['n_scalar']} state features, this version computes "
                f"{n_scalar_features(len(self.ladder_))}: retrain"
            )
        self.policy_ = TierPolicy(
            dims["n_scalar"],
            dims["n_tiers"],
            emb_dim=dims["emb_dim"],
            emb_proj=dims["emb_proj"],
            hidden=dims["hidden"],
        ).eval()
        self._embeddings = {}

    def get_arrays(self) -> dict[str, np.ndarray]:
        return {f"policy.{k}": v.detach().numpy().copy() for k, v in self.policy_.state_dict().items()}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        from agentroute.routers.base import import_torch

        torch = import_torch()
        state = {
            k.removeprefix("policy."): torch.as_tensor(v)
            for k, v in arrays.items()
            if k.startswith("policy.")
        }
        self.policy_.load_state_dict(state)
        self.policy_.eval()


def _jsonable_report(report: dict[str, Any]) -> dict[str, Any]:
    """The training report without its per-iteration log (kept small in ``router.json``)."""
    out = dict(report)
    if "bopo" in out:
        out["bopo"] = {k: v for k, v in out["bopo"].items() if k != "iterations"} | {
            "last_iteration": (out["bopo"].get("iterations") or [{}])[-1]
        }
    return out

"""Batched rollouts of tier policies in an :class:`~agentroute.agentic.env.AgenticEnv`.

Many episodes advance in lockstep so that a torch policy decides a whole batch of steps in one
forward pass. Every call still goes through each episode's :class:`~agentroute.budget.Ledger`
(masking, reserve, settle), and the state of each decision is recorded with the same
:func:`~agentroute.agentic.features.scalar_features` that the router uses when serving.
One call per step (the policies here do not escalate).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from agentroute.agentic.env import AgenticEnv, Episode, EpisodeResult
from agentroute.agentic.features import available_mask, scalar_features
from agentroute.budget import Budget
from agentroute.types import RouteContext


@dataclass(frozen=True, slots=True)
class Job:
    """One episode to roll out: a task (by index), its rows, its budget and a rollout number."""

    task: int
    rows: tuple[int, ...]
    budget: Budget | None = None
    rollout: int = 0


@dataclass
class StepBatch:
    """The decisions to make now: one per active episode."""

    episodes: list[Episode]
    contexts: list[RouteContext]
    rows: np.ndarray
    scalars: np.ndarray
    masks: np.ndarray


@dataclass
class Trace:
    """An episode's result with the state, mask, action and log-probability of each decision."""

    job: Job
    result: EpisodeResult
    rows: list[int] = field(default_factory=list)
    scalars: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    logps: list[float] = field(default_factory=list)


Chooser = Callable[[StepBatch], tuple[np.ndarray, np.ndarray]]
"""Maps a batch of states to (tier index per episode, log-probability of that choice)."""


def rollout(env: AgenticEnv, jobs: Sequence[Job], choose: Chooser, *, ref_usd: float) -> list[Trace]:
    """Run every job to its end with ``choose`` deciding each step; returns one trace per job.

    With ``env.feedback`` and ``env.max_attempts`` > 1 a failed step may be redone: at such a
    *retry state* the mask holds the untried affordable tiers plus the tier that just failed, and
    choosing the failed tier again means "accept the failure" (no call) — so the decision to
    escalate is the policy's, as :meth:`~agentroute.routers.base.Router.escalate` is at serving time.
    """
    episodes = [env.episode(j.task, rows=j.rows, budget=j.budget, rollout=j.rollout) for j in jobs]
    records: list[tuple[list[int], list[np.ndarray], list[np.ndarray], list[int], list[float]]] = [
        ([], [], [], [], []) for _ in jobs
    ]
    while True:
        active, contexts, masks = [], [], []
        for i, ep in enumerate(episodes):
            pending = _pending(ep)
            if pending is None:
                continue
            ctx = ep.context(pending)
            mask = available_mask(ctx, env.tiers)
            if ep.attempts:
                mask[ep.tiers[-1]] = True  # the failed tier again: accept the failure
            active.append(i)
            contexts.append(ctx)
            masks.append(mask)
        if not active:
            break
        scalars = np.stack([scalar_features(c, env.tiers, ref_usd) for c in contexts])
        mask_arr = np.stack(masks)
        rows = np.array([episodes[i].row for i in active])
        batch = StepBatch([episodes[i] for i in active], contexts, rows, scalars, mask_arr)
        actions, logps = choose(batch)
        for b, i in enumerate(active):
            action = int(actions[b])
            if not mask_arr[b, action]:
                raise ValueError(f"the chooser picked tier {action}, which the ledger masked")
            rec = records[i]
            rec[0].append(int(rows[b]))
            rec[1].append(scalars[b])
            rec[2].append(mask_arr[b])
            rec[3].append(action)
            rec[4].append(float(logps[b]))
            ep = episodes[i]
            if ep.attempts and action == ep.tiers[-1]:
                ep.end_step()  # no escalation
                continue
            step = ep.act(action)
            if not (env.feedback and step.status == "failed" and len(ep.attempts) < env.max_attempts):
                ep.end_step()
    return [
        Trace(job, ep.result(), *rec)  # type: ignore[arg-type]
        for job, ep, rec in zip(jobs, episodes, records, strict=True)
    ]


def _pending(ep: Episode) -> list[int] | None:
    """The candidate tiers of the episode's next decision (None when it has ended)."""
    while not ep.done:
        cands = ep.candidates()
        if ep.attempts and not cands:
            ep.end_step()  # nothing left to escalate to
            continue
        if not cands:
            ep.exhaust()
            return None
        return cands
    return None


def fixed_tier(tier: int) -> Chooser:
    """A boundary policy: always ``tier`` (``0`` always-small, ``-1`` always-large); when the ledger
    masks it, the cheapest affordable tier (budget-constrained decoding)."""

    def choose(batch: StepBatch) -> tuple[np.ndarray, np.ndarray]:
        n = batch.masks.shape[1]
        want = tier % n
        actions = np.where(batch.masks[:, want], want, batch.masks.argmax(axis=1))
        return actions, np.zeros(len(actions))

    return choose


def random_mix(p_large: float, rng: np.random.Generator) -> Chooser:
    """Top tier with probability ``p_large`` (when affordable), else the cheapest affordable tier."""

    def choose(batch: StepBatch) -> tuple[np.ndarray, np.ndarray]:
        n = batch.masks.shape[1]
        cheapest = batch.masks.argmax(axis=1)
        draw = rng.random(len(cheapest)) < p_large
        actions = np.where(draw & batch.masks[:, n - 1], n - 1, cheapest)
        logp = np.where(actions == n - 1, np.log(max(p_large, 1e-12)), np.log(max(1 - p_large, 1e-12)))
        return np.asarray(actions), np.asarray(logp, dtype=float)

    return choose

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
    """Run every job to its end with ``choose`` deciding each step; returns one trace per job."""
    episodes = [env.episode(j.task, rows=j.rows, budget=j.budget, rollout=j.rollout) for j in jobs]
    records: list[tuple[list[int], list[np.ndarray], list[np.ndarray], list[int], list[float]]] = [
        ([], [], [], [], []) for _ in jobs
    ]
    while True:
        active, contexts = [], []
        for i, ep in enumerate(episodes):
            if ep.done:
                continue
            cands = ep.candidates()
            if not cands:
                ep.exhaust()
                continue
            active.append(i)
            contexts.append(ep.context(cands))
        if not active:
            break
        scalars = np.stack([scalar_features(c, env.tiers, ref_usd) for c in contexts])
        masks = np.stack([available_mask(c, env.tiers) for c in contexts])
        rows = np.array([episodes[i].row for i in active])
        batch = StepBatch([episodes[i] for i in active], contexts, rows, scalars, masks)
        actions, logps = choose(batch)
        for b, i in enumerate(active):
            action = int(actions[b])
            if not masks[b, action]:
                raise ValueError(f"the chooser picked tier {action}, which the ledger masked")
            rec = records[i]
            rec[0].append(int(rows[b]))
            rec[1].append(scalars[b])
            rec[2].append(masks[b])
            rec[3].append(action)
            rec[4].append(float(logps[b]))
            episodes[i].act(action)
            episodes[i].end_step()
    return [
        Trace(job, ep.result(), *rec)  # type: ignore[arg-type]
        for job, ep, rec in zip(jobs, episodes, records, strict=True)
    ]


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
        return actions, logp

    return choose

"""Boundary-guided SFT data synthesis (BoSFT) of BoPO (arXiv:2602.21227).

- **easy** and **intractable** tasks are labelled with the always-small trajectory: succeed
  cheaply, or fail cheaply;
- **hard** tasks: sweep P(large) = j/N for j = 0 … N over N + 1 stochastic rollouts (fresh query
  variants each), add the cached boundary rollouts, and keep the *cheapest successful*
  trajectory (ties: fewer large calls, then the earlier one);
- **stratified**: each difficulty class present gets the same total weight in the SFT loss, so
  that a few hard tasks are not drowned by many easy ones **[default: our reading of "stratified
  sampling"]**; ``stratify=False`` weighs every task alike.

A training set with no hard task is not an error: a warning says so, and the data hold what there
is (always-small on easy and intractable tasks).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from agentroute.agentic.boundary import Boundary, Difficulty
from agentroute.agentic.env import AgenticEnv
from agentroute.agentic.features import RETRY_FLAG
from agentroute.agentic.rollout import Job, Trace, random_mix, rollout
from agentroute.errors import ConfigurationError

log = logging.getLogger(__name__)


@dataclass
class SFTData:
    """Imitation examples: one row per decision, with the state, the action and a weight."""

    rows: np.ndarray
    scalars: np.ndarray
    masks: np.ndarray
    actions: np.ndarray
    weights: np.ndarray
    tasks: dict[str, int] = field(default_factory=dict)
    chosen: dict[int, Trace] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.actions)


def cheapest_success(traces: list[Trace]) -> Trace | None:
    """The successful trace of least cost (ties: fewer large calls, then the first); None if none.

    >>> from agentroute.agentic.env import EpisodeResult
    >>> def tr(ok, cost, large):
    ...     return Trace(None, EpisodeResult("t", None, 0, (), (), (), ok, "done", cost, large, 1))
    >>> cheapest_success([tr(True, 3.0, 1), tr(False, 0.1, 0), tr(True, 1.0, 2)]).result.cost_usd
    1.0
    """
    wins = [(t.result.cost_usd, t.result.large_calls, k) for k, t in enumerate(traces) if t.result.success]
    return traces[min(wins)[2]] if wins else None


def sweep_hard(
    env: AgenticEnv, tasks: list[int], *, sweep: int, seed: int, ref_usd: float
) -> dict[int, list[Trace]]:
    """For each task, N + 1 rollouts with P(large) = j/N (j = 0 … N), each on fresh query variants."""
    if sweep < 1:
        raise ConfigurationError(f"the BoSFT sweep needs N >= 1 rollouts (got {sweep})")
    out: dict[int, list[Trace]] = {i: [] for i in tasks}
    for j in range(sweep + 1):
        rng = np.random.default_rng([seed, 7919, j])
        jobs = [
            Job(i, env.tasks[i].draw(np.random.default_rng([seed, 104729, i, j])), None, j) for i in tasks
        ]
        for trace in rollout(env, jobs, random_mix(j / sweep, rng), ref_usd=ref_usd):
            out[trace.job.task].append(trace)
    return out


def synthesize_bosft(
    env: AgenticEnv,
    boundary: Boundary,
    *,
    sweep: int = 10,
    stratify: bool = True,
    seed: int = 0,
    ref_usd: float,
) -> SFTData:
    """The BoSFT imitation set of ``env``'s tasks (see the module docstring)."""
    hard = boundary.tasks_of("hard")
    messages: list[str] = []
    per_task: dict[int, tuple[Difficulty, list[Trace]]] = {}
    for difficulty in ("easy", "intractable"):
        for i in boundary.tasks_of(difficulty):  # type: ignore[arg-type]
            per_task[i] = (difficulty, boundary.small[i])  # type: ignore[assignment]
    chosen: dict[int, Trace] = {}
    if hard:
        swept = sweep_hard(env, hard, sweep=sweep, seed=seed, ref_usd=ref_usd)
        for i in hard:
            best = cheapest_success(swept[i] + boundary.large[i] + boundary.small[i])
            if best is not None:
                chosen[i] = best
                per_task[i] = ("hard", [best])
    else:
        counts = boundary.counts()
        msg = (
            f"BoSFT: no hard task among the {len(env.tasks)} training tasks (easy {counts['easy']}, "
            f"intractable {counts['intractable']}): the large model never succeeds where the small one "
            "fails, so SFT imitates always-small on what there is. More or harder tasks, or a stronger "
            "large tier, give BoPO something to learn."
        )
        log.warning(msg)
        messages.append(msg)
    if not per_task:
        raise ConfigurationError("BoSFT: no trajectory to imitate (no task in the training environment)")
    present = sorted({d for d, _ in per_task.values()})
    tasks_in: dict[str, int] = {d: sum(1 for dd, _ in per_task.values() if dd == d) for d in present}
    rows, scalars, masks, actions, weights = [], [], [], [], []
    for _i, (difficulty, traces) in sorted(per_task.items()):
        # the boundary policies decide no escalations: their "accept the failure" at a retry
        # state (feedback environments) is not imitated, so BoPO is free to learn when to escalate
        keep = [
            [d for d in range(len(t.actions)) if difficulty == "hard" or not t.scalars[d][RETRY_FLAG]]
            for t in traces
        ]
        n_decisions = sum(len(k) for k in keep)
        if n_decisions == 0:
            continue
        task_weight = 1.0 / (len(present) * tasks_in[difficulty]) if stratify else 1.0 / len(per_task)
        for trace, kept in zip(traces, keep, strict=True):
            rows += [trace.rows[d] for d in kept]
            scalars += [trace.scalars[d] for d in kept]
            masks += [trace.masks[d] for d in kept]
            actions += [trace.actions[d] for d in kept]
            weights += [task_weight / n_decisions] * len(kept)
    w = np.asarray(weights, dtype=np.float32)
    return SFTData(
        rows=np.asarray(rows, dtype=int),
        scalars=np.stack(scalars).astype(np.float32),
        masks=np.stack(masks),
        actions=np.asarray(actions, dtype=int),
        weights=w / w.mean(),
        tasks=tasks_in,
        chosen=chosen,
        messages=messages,
    )

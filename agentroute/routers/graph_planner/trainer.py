"""Rollouts in the offline environment and GraphPlanner's PPO loop.

Each episode is one training query, a budget drawn at random (none half of the time, else
``cost_scale × u`` with u log-uniform in [0.02, 4]) and a historical memory of a random size
(none, a few percent, all rows): the policy learns to act under masks and with or without memory.
A query's own logged rows are never in its memory (leave-one-out), so memory cannot leak outcomes.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agentroute.errors import ConfigurationError, StateFileError
from agentroute.routers.base import import_torch
from agentroute.routers.graph_planner.env import OfflineEnv, decision_features, legal_mask, memory_view
from agentroute.routers.graph_planner.mdp import Workflow
from agentroute.routers.graph_planner.memory import HistoryMemory
from agentroute.routers.graph_planner.policy import PlannerNet, collate
from agentroute.training.checkpoint import TrainingCheckpoint
from agentroute.training.ppo import PPOConfig, gae, minibatches, normalize, ppo_losses

import_torch()  # one thread per process, or a clear error naming the install command
import torch  # noqa: E402


@dataclass
class Episode:
    """One episode's outcome and, when training, its decisions."""

    score: float
    cost: float
    reward: float
    exhausted: bool
    masked: int  # legal actions masked by the budget, summed over decisions
    legal: int  # legal actions, summed over decisions
    workflow: Workflow
    decisions: list[dict[str, np.ndarray]] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    logps: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


def run_episode(
    net: PlannerNet,
    env: OfflineEnv,
    i: int,
    *,
    query_emb: np.ndarray,
    agent_id: np.ndarray,
    history: HistoryMemory | None,
    rows: tuple[np.ndarray, np.ndarray] | None,
    budget: float | None,
    cost_weight: float,
    cost_scale: float,
    k: int,
    tau: float,
    greedy: bool,
    rng: np.random.Generator | None = None,
    keep: bool = False,
) -> Episode:
    """Roll one episode of query ``i`` with the policy (sampled, or greedy)."""
    wf = env.new(i)
    g = len(env.agents)
    costs = env.action_cost(i)
    available = np.tile(env.available[i], 3)
    q = query_emb[i]
    view = memory_view(history, q, k, tau, exclude=env.table.query_ids[i], rows=rows)
    spent, masked, legal_n, exhausted = 0.0, 0, 0, False
    ep = Episode(0.0, 0.0, 0.0, False, 0, 0, wf)
    while not wf.done:
        legal = legal_mask(wf, g) & available
        remaining = None if budget is None else budget - spent
        mask = legal if remaining is None else legal & (costs <= remaining + 1e-12)
        legal_n += int(legal.sum())
        masked += int(legal.sum() - mask.sum())
        if not mask.any():
            exhausted = True
            break
        feats = decision_features(
            wf,
            node_emb=q,
            query_emb=q,
            history=history,
            view=view,
            agents=env.agents,
            action_cost=costs,
            available=mask,
            remaining=remaining,
            budget=budget,
            cost_scale=cost_scale,
        )
        started = time.perf_counter()
        with torch.no_grad():
            logits, value = net(collate([feats], agent_id))
            logp_all = torch.log_softmax(logits[0], -1)
        if greedy:
            a = int(torch.argmax(logits[0]))
        else:
            assert rng is not None
            p = logp_all.exp().numpy().astype(np.float64)
            p = np.where(mask, p, 0.0)
            a = int(rng.choice(len(p), p=p / p.sum()))
        ep.latencies.append(time.perf_counter() - started)
        if keep:
            feats["agent_id"] = agent_id
            ep.decisions.append(feats)
            ep.actions.append(a)
            ep.logps.append(float(logp_all[a]))
            ep.values.append(float(value[0]))
        spent += env.step(wf, i, a)
    ep.score = env.score(wf)
    ep.cost, ep.exhausted, ep.masked, ep.legal = spent, exhausted, masked, legal_n
    ep.reward = ep.score - cost_weight * spent / cost_scale
    return ep


def precompute_neighbors(
    emb: np.ndarray, history: HistoryMemory, query_ids: list[str], k: int, chunk: int = 256
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each query's ``k`` nearest history rows, its own rows left out: (index, sims) per query."""
    out = []
    codes = {
        q: i for i, q in enumerate(dict.fromkeys(history.query))
    }  # ids compared as integers, not strings
    own = np.fromiter((codes[q] for q in history.query), dtype=np.int64, count=len(history.query))
    mine = [codes.get(q, -1) for q in query_ids]
    for start in range(0, len(emb), chunk):
        sims = emb[start : start + chunk] @ history.emb.T
        for r in range(sims.shape[0]):
            s = np.where(own == mine[start + r], -np.inf, sims[r])
            kk = min(k, len(s))
            top = np.argpartition(-s, kk - 1)[:kk]
            top = top[np.argsort(-s[top], kind="stable")]
            top = top[np.isfinite(s[top])]
            out.append((top, s[top].astype(np.float32)))
    return out


@dataclass
class TrainState:
    """Where PPO training stands after an update: enough to resume it exactly (a checkpoint)."""

    episodes: int
    log: list[dict[str, Any]]
    net: dict[str, Any]
    opt_pi: dict[str, Any]
    opt_v: dict[str, Any]
    rng: dict[str, Any]  # the numpy generator's bit_generator.state


def train(
    net: PlannerNet,
    env: OfflineEnv,
    *,
    query_emb: np.ndarray,
    history: HistoryMemory,
    config: PPOConfig,
    episodes: int,
    episodes_per_update: int,
    cost_weight: float,
    cost_scale: float,
    k: int,
    tau: float,
    memory_fractions: tuple[float, ...],
    unlimited_share: float,
    id_dropout: float,
    seed: int,
    progress: Callable[[dict[str, Any]], None] | None = None,
    resume: TrainState | None = None,
    on_update: Callable[[TrainState], None] | None = None,
) -> list[dict[str, Any]]:
    """PPO over offline episodes; returns one log row per update.

    ``resume`` continues from a :class:`TrainState` (net, optimisers, random state, episodes done)
    exactly as the run that saved it would have gone on; ``on_update`` gets one after every update."""
    rng = np.random.default_rng(seed)
    g = len(env.agents)
    neighbors = precompute_neighbors(query_emb, history, env.table.query_ids, 8 * k) if len(history) else None
    opt_pi = torch.optim.Adam(net.actor_parameters(), lr=config.lr_policy)
    opt_v = torch.optim.Adam(net.critic_parameters(), lr=config.lr_value)
    log: list[dict[str, Any]] = []
    done_episodes = 0
    if resume is not None:
        net.load_state_dict(resume.net)
        opt_pi.load_state_dict(resume.opt_pi)
        opt_v.load_state_dict(resume.opt_v)
        rng.bit_generator.state = resume.rng
        log, done_episodes = list(resume.log), resume.episodes
    while done_episodes < episodes:
        n_ep = min(episodes_per_update, episodes - done_episodes)
        fraction = float(rng.choice(memory_fractions))
        keep_rows = rng.random(len(history)) < fraction if len(history) else None
        batch: list[Episode] = []
        for i in rng.integers(0, len(env), size=n_ep):
            agent_id = np.where(rng.random(g) < id_dropout, g, np.arange(g))
            rows = None
            if neighbors is not None and keep_rows is not None:
                idx, sims = neighbors[i]
                sel = keep_rows[idx]
                rows = (idx[sel][:k], sims[sel][:k])
            budget = (
                None
                if rng.random() < unlimited_share
                else float(cost_scale * np.exp(rng.uniform(np.log(0.02), np.log(4.0))))
            )
            ep = run_episode(
                net,
                env,
                int(i),
                query_emb=query_emb,
                agent_id=agent_id,
                history=history if fraction > 0 else None,
                rows=rows,
                budget=budget,
                cost_weight=cost_weight,
                cost_scale=cost_scale,
                k=k,
                tau=tau,
                greedy=False,
                rng=rng,
                keep=True,
            )
            batch.append(ep)
        done_episodes += n_ep
        if not any(ep.decisions for ep in batch):
            continue
        stats = ppo_update(net, opt_pi, opt_v, batch, config, rng)
        row = {
            "episodes": done_episodes,
            "reward": float(np.mean([ep.reward for ep in batch])),
            "score": float(np.mean([ep.score for ep in batch])),
            "cost": float(np.mean([ep.cost for ep in batch])),
            "mask_rate": float(sum(ep.masked for ep in batch) / max(1, sum(ep.legal for ep in batch))),
            "steps": float(np.mean([len(ep.actions) for ep in batch])),
            "memory_fraction": fraction,
            "policy_loss": float(np.mean([s[0] for s in stats])) if stats else 0.0,
            "value_loss": float(np.mean([s[1] for s in stats])) if stats else 0.0,
            "entropy": float(np.mean([s[2] for s in stats])) if stats else 0.0,
        }
        log.append(row)
        if on_update is not None:
            on_update(_snapshot(done_episodes, log, net, opt_pi, opt_v, rng))
        if progress is not None:
            progress(row)
    return log


def _snapshot(
    episodes: int,
    log: list[dict[str, Any]],
    net: PlannerNet,
    opt_pi: torch.optim.Optimizer,
    opt_v: torch.optim.Optimizer,
    rng: np.random.Generator,
) -> TrainState:
    """A :class:`TrainState` that later updates do not change: copies of the weights and optimiser
    states; the log's rows are never changed once written, so only the list is copied (a deep copy of
    6,000 rows took 29 ms an update)."""
    weights, policy_optimiser, value_optimiser = copy.deepcopy(
        (net.state_dict(), opt_pi.state_dict(), opt_v.state_dict())
    )
    return TrainState(
        episodes, list(log), weights, policy_optimiser, value_optimiser, dict(rng.bit_generator.state)
    )


def ppo_update(
    net: PlannerNet,
    opt_pi: torch.optim.Optimizer,
    opt_v: torch.optim.Optimizer,
    batch: list[Episode],
    config: PPOConfig,
    rng: np.random.Generator,
) -> list[tuple[float, float, float, float]]:
    """One PPO update (``config.epochs`` passes of minibatches) over the decisions of ``batch``
    (episodes rolled with ``keep``; the reward comes at each episode's last decision).
    Returns (policy loss, value loss, entropy, approx KL) per minibatch. Shared by the offline and
    the live trainers."""
    feats = [d for ep in batch for d in ep.decisions]
    actions = torch.tensor([a for ep in batch for a in ep.actions])
    old_logp = torch.tensor([x for ep in batch for x in ep.logps])
    old_v = np.array([x for ep in batch for x in ep.values])
    rewards = np.concatenate([np.r_[np.zeros(len(ep.actions) - 1), ep.reward] for ep in batch if ep.actions])
    dones = np.concatenate([np.r_[np.zeros(len(ep.actions) - 1, bool), True] for ep in batch if ep.actions])
    adv, ret = gae(rewards, old_v, dones, gamma=config.gamma, lam=config.gae_lambda)
    if config.normalize_advantages:
        adv = normalize(adv)
    adv_t, ret_t = torch.tensor(adv, dtype=torch.float32), torch.tensor(ret, dtype=torch.float32)
    old_v_t = torch.tensor(old_v, dtype=torch.float32)
    stats = []
    for _ in range(config.epochs):
        for mb in minibatches(len(feats), config.minibatch, rng):
            o = torch.as_tensor(mb)
            b = collate([feats[j] for j in mb])  # each decision with its own agent-id rows
            logits, v = net(b)
            lp = torch.log_softmax(logits, -1)
            p = lp.exp() * b.mask
            entropy = -(p * lp.masked_fill(~b.mask, 0.0)).sum(-1)
            out = ppo_losses(
                lp.gather(1, actions[o].unsqueeze(1)).squeeze(1),
                old_logp[o],
                adv_t[o],
                v,
                ret_t[o],
                clip=config.clip,
                old_values=old_v_t[o],
                value_clip=config.value_clip,
                entropy=entropy,
            )
            loss = out.policy - config.entropy_coef * out.entropy + out.value
            opt_pi.zero_grad()
            opt_v.zero_grad()
            loss.backward()
            if config.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(net.parameters(), config.max_grad_norm)
            opt_pi.step()
            opt_v.step()
            stats.append((out.policy.item(), out.value.item(), out.entropy.item(), out.approx_kl))
    return stats


class Checkpoint(TrainingCheckpoint):
    """A training run's :class:`TrainState` in a file, to resume it (:class:`TrainingCheckpoint`: written
    atomically at most every ``every_s`` seconds and on :meth:`write`, after a Ctrl-C or SIGTERM the
    last finished update's; read back only for the same run — ``run_key``: the parameters but
    ``episodes`` and the data it was trained with)."""

    def __init__(self, path: Path, run_key: str, every_s: float = 30.0):
        super().__init__(path, run_key, what="graph-planner", length="episodes", every_s=every_s)

    def load(self, episodes: int) -> TrainState | None:  # type: ignore[override]
        """The saved state (``None``: no file); another run's, or one past ``episodes``, is a :class:`ConfigurationError`."""
        saved = super().load()
        if saved is None:
            return None
        try:
            state = TrainState(**saved)
        except TypeError as exc:
            raise StateFileError(
                self.path, f"not a graph-planner checkpoint ({exc}); delete it to train from the start"
            ) from None
        if state.episodes > episodes:
            raise ConfigurationError(
                f"{self.path}: a checkpoint after {state.episodes} episodes, more than the {episodes} asked for (the "
                f"router would not be the one asked for): set episodes to {state.episodes} or more to finish from it, "
                "or delete it to start over"
            )
        return state

    def update(self, state: TrainState) -> None:  # type: ignore[override]
        fields = {
            name: getattr(state, name) for name in TrainState.__dataclass_fields__
        }  # no copy: a snapshot already
        super().update(fields, f"{state.episodes} episodes")


def checkpoint_episodes(path: Path) -> int | None:
    """Episodes done in the checkpoint at ``path`` (``None``: none there, or unreadable)."""
    try:
        return int(torch.load(path, weights_only=True)["state"]["episodes"])
    except Exception:
        return None

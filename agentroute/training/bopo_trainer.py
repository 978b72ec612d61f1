"""Boundary-guided training of a budget-aware tier policy: BoSFT warm start, then BoPO.

Zhang et al., "Budget-Aware Agentic Routing via Boundary-Guided Training" (arXiv:2602.21227):

1. **Boundary rollouts** — always-small and always-large, K times per task (paired draws):
   the difficulty taxonomy and the reference cost of each task (:mod:`agentroute.agentic.boundary`).
2. **BoSFT** — imitate always-small on easy and intractable tasks and the cheapest successful
   trajectory of a P(large) sweep on hard ones, strata weighted alike (:mod:`agentroute.agentic.bosft`).
3. **BoPO** — GRPO-style: per task a group of G rollouts of the current policy (fresh query
   variants, one shared budget), rewards from the reward functions (default
   :func:`~agentroute.training.rewards.boundary_reward`), advantages standardised over the group
   *and* the cached boundary rollouts of the same task under the same budget (reference-guided),
   the clipped surrogate, a KL pull towards the BoSFT policy and an entropy bonus.

With ``feedback`` and ``max_attempts`` > 1 the rollouts include *retry states* after a shown
failure, where the policy chooses between an untried tier (escalate) and the failed one (accept);
BoSFT does not imitate the boundary policies' "accept" there, so that BoPO learns when to escalate.

Groups are trained under sampled hard budgets (``budget_prob``), so the policy's state — which
holds the remaining budget — matters; the ledger masks unaffordable tiers in training exactly as
at inference.

Usage::

    trainer = BoPOTrainer(BoPOConfig(steps=3, tiers=("mistralai/mixtral-8x7b-chat", "gpt-4-1106-preview")))
    result = trainer.train(dataset.train)      # an OutcomeTable, a dataset or trajectories
    result.policy, result.report
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agentroute._optional import torch_module
from agentroute.agentic.bosft import SFTData, synthesize_bosft
from agentroute.agentic.boundary import Boundary, boundary_rollouts, boundary_traces
from agentroute.agentic.decoding import ordinal_choice
from agentroute.agentic.env import AgenticEnv, summarize
from agentroute.agentic.features import n_scalar_features
from agentroute.agentic.policy import TierPolicy
from agentroute.agentic.rollout import Chooser, Job, StepBatch, Trace, rollout
from agentroute.budget import Budget
from agentroute.embed import text_tail
from agentroute.errors import ConfigurationError
from agentroute.outcomes import OutcomeTable, as_outcome_table
from agentroute.progress import fit_bar
from agentroute.training.bopo_config import BoPOConfig
from agentroute.training.checkpoint import TrainingCheckpoint, run_key
from agentroute.training.grpo import clipped_policy_loss, group_advantages, kl_to_reference
from agentroute.training.rewards import RewardFunc, boundary_reward, combine_rewards

log = logging.getLogger(__name__)
torch = torch_module()

Embed = Callable[[list[str]], np.ndarray]


def default_embed(texts: list[str]) -> np.ndarray:
    """MiniLM sentence embeddings (cached on disk) of ``texts``."""
    from agentroute.embed import default_embedder

    return default_embedder().embed(texts)


def _name(func: Any) -> str:
    """A function's (or a callable object's class's) qualified name: the same in every run."""
    return f"{func.__module__}.{getattr(func, '__qualname__', type(func).__qualname__)}"


@dataclass
class BoPOResult:
    """A trained policy, its tier ladder, the USD scale of its budget features and a report."""

    policy: TierPolicy
    ladder: tuple[str, ...]
    ref_usd: float
    report: dict[str, Any] = field(default_factory=dict)


class BoPOTrainer:
    """Trains a :class:`~agentroute.agentic.policy.TierPolicy` with BoSFT then BoPO.

    Args:
        args: the configuration (checked when built).
        reward_funcs: reward functions (``list[float]`` from keyword arguments ``success``,
            ``difficulty``, ``cost``, ``reference_cost``, ``large_calls``, ``task_type``, ``lam``,
            ``hard_bonus``); default BoPO's boundary reward.
        reward_weights: one weight per reward function (default 1 each).
        embed: maps texts to embeddings; default MiniLM.
    """

    def __init__(
        self,
        args: BoPOConfig | None = None,
        *,
        reward_funcs: Sequence[RewardFunc] | None = None,
        reward_weights: Sequence[float] | None = None,
        embed: Embed | None = None,
    ):
        self.args = args or BoPOConfig()
        self.reward_funcs = list(reward_funcs or [boundary_reward])
        self.reward_weights = list(reward_weights) if reward_weights is not None else None
        self.embed = embed or default_embed

    # -- the whole recipe ---------------------------------------------------------------------
    def train(
        self, data: Any, *, checkpoint: str | Path | None = None, checkpoint_every_s: float = 30.0
    ) -> BoPOResult:
        """Train on ``data`` (an OutcomeTable, a dataset or trajectories).

        ``checkpoint``: a file the run's state is kept in — after the BoSFT warm-up, then every
        ``checkpoint_every_s`` seconds of BoPO iterations, and when training stops (Ctrl-C, a SIGTERM
        within :func:`~agentroute.training.stopping.terminate_as_interrupt`, the end). Given one, training resumes from it and ends with the policy an uninterrupted run
        trains, when the config (but ``iterations``) and data are the same; another run's is refused."""
        args = self.args
        t0 = time.perf_counter()
        table = as_outcome_table(data)
        saver = None
        resume = None
        if checkpoint is not None:
            saver = TrainingCheckpoint(
                Path(checkpoint),
                self._run_key(table),
                what="bopo",
                length="iterations",
                every_s=checkpoint_every_s,
            )
            resume = saver.load()
            if resume is not None and int(resume["iteration"]) > args.iterations:
                raise ConfigurationError(
                    f"{checkpoint}: a checkpoint after {resume['iteration']} BoPO iterations, more than the "
                    f"{args.iterations} asked for: set iterations to {resume['iteration']} or more to finish from it, "
                    "or delete it to start over"
                )
        env, emb = self.build_env(table)
        ref_usd = float(np.mean([env.cap(env.large, r) for task in env.tasks for r in task.rows]))
        with (
            fit_bar(args.sft_epochs + args.iterations, "bopo: boundary rollouts", unit="step") as b,
            torch.random.fork_rng(devices=[]),  # the caller's torch draws go on as they were
        ):
            torch.manual_seed(args.seed)  # the policy's start
            try:
                return self._train(env, emb, ref_usd, t0, b, saver=saver, resume=resume)
            finally:  # the end, a Ctrl-C or a SIGTERM: the last finished stage is kept
                if saver is not None:
                    saver.write()

    def _run_key(self, table: OutcomeTable) -> str:
        """What a checkpoint must have been trained with to be resumed: the config (but ``iterations``),
        the reward functions and embedder, and the data (queries, models, scores, costs, and the task
        types that group the tasks and cap their costs)."""
        config = {k: v for k, v in self.args.to_dict().items() if k != "iterations"}
        funcs = [_name(f) for f in (*self.reward_funcs, self.embed)]
        outcomes = [np.asarray(values, float).tolist() for values in (table.scores, table.costs)]
        return run_key(
            config,
            funcs,
            self.reward_weights,
            table.query_ids,
            table.queries,
            table.models,
            outcomes,
            [None if t is None else str(t) for t in table.task_types],
        )

    def _train(
        self,
        env: AgenticEnv,
        emb: np.ndarray,
        ref_usd: float,
        t0: float,
        b: Any,
        *,
        saver: TrainingCheckpoint | None = None,
        resume: dict[str, Any] | None = None,
    ) -> BoPOResult:
        """:meth:`train` after the environment: boundary rollouts, BoSFT, BoPO; ``b`` the fit's bar
        (its steps: the BoSFT epochs, then the BoPO iterations). ``resume``: a checkpoint's state
        (the BoSFT policy is loaded, not trained again)."""
        args = self.args
        boundary = boundary_rollouts(
            env,
            rollouts=args.boundary_rollouts,
            seed=args.seed,
            threshold=args.difficulty_threshold,
            ref_usd=ref_usd,
        )
        sft = synthesize_bosft(
            env, boundary, sweep=args.sweep, stratify=args.stratify, seed=args.seed, ref_usd=ref_usd
        )
        policy = TierPolicy(
            n_scalar_features(len(env.tiers)), len(env.tiers), emb_dim=emb.shape[1],
            emb_proj=args.emb_proj, hidden=args.hidden,
        )  # fmt: skip
        E = torch.as_tensor(emb, dtype=torch.float32)
        b.set_description_str("bopo: BoSFT", refresh=False)
        if resume is None:
            sft_loss = self.sft(policy, sft, E, progress=b)
        else:  # the warm-up is done: its policy is the checkpoint's reference
            policy.load_state_dict(resume["reference"])
            sft_loss = float(resume["sft_loss"])
            b.update(args.sft_epochs)
        report: dict[str, Any] = {
            "tasks": len(env.tasks),
            "rows_left_over": env.left_over,
            "tiers": list(env.tiers),
            "taxonomy": boundary.counts(),
            "boundary": {
                "always_small_success": float(boundary.small_rate.mean()),
                "always_large_success": float(boundary.large_rate.mean()),
                "always_large_cost": float(boundary.large_cost.mean()),
            },
            "sft": {"examples": len(sft), "tasks": sft.tasks, "final_loss": sft_loss},
            "messages": list(sft.messages),
        }
        report["sft"]["train"] = self.evaluate(policy, env, E, ref_usd)
        reference = copy.deepcopy(policy).eval()
        for p in reference.parameters():
            p.requires_grad_(False)
        b.set_description_str("bopo: BoPO", refresh=False)
        keep = None
        if saver is not None:

            def keep(iteration: int, state: dict[str, Any]) -> None:
                saver.update(
                    {
                        **state,
                        "iteration": iteration,
                        "reference": reference.state_dict(),
                        "sft_loss": sft_loss,
                    },
                    f"{iteration} BoPO iterations",
                )
                if iteration == 0:  # the warm-up is done: kept at once
                    saver.write()

        report["bopo"] = self.bopo(
            policy, reference, env, boundary, E, ref_usd, progress=b, keep=keep, resume=resume
        )
        report["bopo"]["train"] = self.evaluate(policy, env, E, ref_usd)
        report["seconds"] = round(time.perf_counter() - t0, 2)
        policy.eval()
        return BoPOResult(policy, env.tiers, ref_usd, report)

    def build_env(self, table: OutcomeTable) -> tuple[AgenticEnv, np.ndarray]:
        args = self.args
        texts = [text_tail(q, args.tail_chars, word_start=False) for q in table.queries]
        emb = np.asarray(self.embed(texts), dtype=np.float32)
        env = AgenticEnv(
            table, steps=args.steps, tiers=args.tiers, success_rule=args.success_rule, variants=args.variants,
            equivalence=args.equivalence, embeddings=emb, score_threshold=args.score_threshold,
            cost_margin=args.cost_margin, feedback=args.feedback, max_attempts=args.max_attempts,
            seed=args.seed,
        )  # fmt: skip
        return env, emb

    # -- BoSFT ---------------------------------------------------------------------------------
    def sft(self, policy: TierPolicy, data: SFTData, E: Any, *, progress: Any = None) -> float:
        """Weighted imitation of the BoSFT actions; returns the last epoch's mean loss.
        ``progress``: a :class:`~agentroute.progress.FitBar`, advanced by one per epoch."""
        args = self.args
        if args.sft_epochs == 0 or len(data) == 0:
            if progress is not None:
                progress.update(args.sft_epochs)
            return float("nan")
        rng = np.random.default_rng([args.seed, 17])
        opt = torch.optim.Adam(policy.parameters(), lr=args.sft_lr)
        rows = torch.as_tensor(data.rows)
        scal = torch.as_tensor(data.scalars)
        mask = torch.as_tensor(data.masks)
        act = torch.as_tensor(data.actions)
        w = torch.as_tensor(data.weights)
        last = float("nan")
        policy.train()
        for _ in range(args.sft_epochs):
            order = torch.as_tensor(rng.permutation(len(data)))
            total, seen = 0.0, 0.0
            for start in range(0, len(data), args.batch_size):
                idx = order[start : start + args.batch_size]
                logits = policy(E[rows[idx]], scal[idx], mask[idx])
                nll = -torch.log_softmax(logits, -1).gather(1, act[idx, None]).squeeze(1)
                loss = (w[idx] * nll).sum() / w[idx].sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
                seen += len(idx)
            last = total / max(seen, 1)
            if progress is not None:
                progress.advance(f"loss {last:.4f}")
        return last

    # -- BoPO ----------------------------------------------------------------------------------
    def budgets(self, env: AgenticEnv, boundary: Boundary) -> list[Budget]:
        """The hard budgets training groups are drawn from: large-call caps 1 … k−1 and USD caps."""
        args = self.args
        mean_large = float(boundary.large_cost.mean())
        out = [Budget(large_calls=c) for c in range(1, env.steps)]
        out += [Budget(usd=f * mean_large) for f in args.usd_fractions if f * mean_large > 0]
        return out

    def rewards(self, traces: Sequence[Trace], boundary: Boundary) -> np.ndarray:
        tasks = [t.job.task for t in traces]
        kwargs = {
            "success": [t.result.success for t in traces],
            "difficulty": [boundary.difficulty[i] for i in tasks],
            "cost": [t.result.cost_usd for t in traces],
            "reference_cost": [float(boundary.large_cost[i]) for i in tasks],
            "large_calls": [t.result.large_calls for t in traces],
            "task_type": [t.result.task_type for t in traces],
            "lam": self.args.lam,
            "hard_bonus": self.args.hard_bonus,
        }
        return np.asarray(combine_rewards(self.reward_funcs, self.reward_weights, **kwargs), dtype=float)

    def bopo(
        self,
        policy: TierPolicy,
        reference: TierPolicy,
        env: AgenticEnv,
        boundary: Boundary,
        E: Any,
        ref_usd: float,
        *,
        progress: Any = None,
        keep: Callable[[int, dict[str, Any]], None] | None = None,
        resume: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The BoPO stage; returns per-iteration metrics. ``progress``: a
        :class:`~agentroute.progress.FitBar`, advanced by one per iteration. ``keep`` gets the
        iterations done and a copy of the state (policy, optimiser, random state, metrics) before
        the first iteration and after each; ``resume``: such a state, continued from."""
        args = self.args
        history: list[dict[str, float]] = []
        rng = np.random.default_rng([args.seed, 31337])
        opt = torch.optim.Adam(policy.parameters(), lr=args.lr)
        start = 0
        if resume is not None:
            policy.load_state_dict(resume["policy"])
            opt.load_state_dict(resume["opt"])
            rng.bit_generator.state = resume["rng"]
            history, start = [dict(row) for row in resume["history"]], int(resume["iteration"])
            if progress is not None:
                progress.update(start)

        def snapshot() -> dict[str, Any]:  # copies: later updates must not change a kept state
            weights, optimiser = copy.deepcopy((policy.state_dict(), opt.state_dict()))
            return {
                "policy": weights,
                "opt": optimiser,
                "rng": dict(rng.bit_generator.state),
                "history": list(history),
            }

        if keep is not None:
            keep(start, snapshot())
        if args.iterations == 0:
            return {"iterations": history}
        budgets = self.budgets(env, boundary)
        draws = env.draws(args.seed, args.boundary_rollouts)
        ref_cache: dict[tuple[int, int], tuple[np.ndarray, list[Trace]]] = {}
        n_tasks = len(env.tasks)
        for it in range(start, args.iterations):
            tasks = rng.choice(n_tasks, size=min(args.tasks_per_iteration, n_tasks), replace=False)
            which = [
                int(rng.integers(len(budgets))) + 1 if budgets and rng.random() < args.budget_prob else 0
                for _ in tasks
            ]
            jobs = [
                Job(int(i), env.tasks[int(i)].draw(np.random.default_rng([args.seed, it, int(i), g])),
                    budgets[b - 1] if b else None, g)
                for i, b in zip(tasks, which, strict=True)
                for g in range(args.group_size)
            ]  # fmt: skip
            policy.eval()
            traces = rollout(env, jobs, self.sampler(policy, E, rng), ref_usd=ref_usd)
            rewards = self.rewards(traces, boundary)
            if args.reference_guided:
                self._fill_reference(
                    ref_cache, env, boundary, draws, list(zip(tasks, which, strict=True)), budgets, ref_usd
                )
            summary = summarize([t.result for t in traces])
            adv = np.zeros(len(traces))
            extra: list[Trace] = []
            extra_adv: list[float] = []
            for gi, (i, b) in enumerate(zip(tasks, which, strict=True)):
                sl = slice(gi * args.group_size, (gi + 1) * args.group_size)
                scale = args.advantage_scale == "group"
                if not args.reference_guided:
                    adv[sl] = group_advantages(rewards[sl], scale=scale)
                    continue
                ref_rewards, ref_traces = ref_cache[(int(i), b)]
                adv[sl] = group_advantages(rewards[sl], reference=ref_rewards, scale=scale)
                if args.reference_weight > 0:
                    extra += ref_traces
                    extra_adv += list(
                        args.reference_weight
                        * group_advantages(ref_rewards, reference=rewards[sl], scale=scale)
                    )
            if args.advantage_scale == "batch":
                spread = float(np.concatenate([adv, np.asarray(extra_adv)]).std()) + 1e-6
                adv, extra_adv = adv / spread, [a / spread for a in extra_adv]
            if extra:
                traces = list(traces) + self._relabel(policy, extra, E)
                adv = np.concatenate([adv, np.asarray(extra_adv)])
            stats = self._update(policy, reference, opt, traces, adv, E)
            stats.update(
                reward=float(rewards.mean()),
                success=summary["success_rate"],
                large_share=summary["mean_large_calls"] / max(summary["mean_calls"], 1e-9),
            )
            history.append({k: round(v, 5) for k, v in stats.items()})
            if keep is not None:
                keep(it + 1, snapshot())
            if progress is not None:
                progress.advance(
                    f"loss {stats['loss']:.4f}, reward {stats['reward']:.3f}, success {stats['success']:.2f}"
                )
        return {"iterations": history, "budgets": [b.limits() for b in budgets]}

    def _fill_reference(
        self,
        cache: dict[tuple[int, int], tuple[np.ndarray, list[Trace]]],
        env: AgenticEnv,
        boundary: Boundary,
        draws: list[list[tuple[int, ...]]],
        keys: list[tuple[Any, int]],
        budgets: list[Budget],
        ref_usd: float,
    ) -> None:
        """Rewards and traces of the boundary rollouts of each (task, budget) needed (cached; K draws each)."""
        missing: dict[int, list[int]] = {}
        for i, b in keys:
            if (int(i), b) not in cache:
                missing.setdefault(b, []).append(int(i))
        for b, tasks in missing.items():
            tasks = sorted(set(tasks))
            if b == 0:
                small = [boundary.small[i] for i in tasks]
                large = [boundary.large[i] for i in tasks]
            else:
                small, large = boundary_traces(
                    env, tasks, [draws[i] for i in tasks], ref_usd=ref_usd, budget=budgets[b - 1]
                )
            for i, sm, lg in zip(tasks, small, large, strict=True):
                traces = list(sm) + list(lg)
                cache[(i, b)] = (self.rewards(traces, boundary), traces)

    @staticmethod
    def _relabel(policy: TierPolicy, traces: list[Trace], E: Any) -> list[Trace]:
        """Boundary traces with the current policy's log-probabilities as their "old" ones.

        They enter the loss as off-policy guidance (advantage-weighted, ratio 1 at the first
        inner epoch, clipped after), pushing the policy towards the boundary policy that beat
        its group and away from the one that lost.
        """
        decisions = [(k, d) for k, t in enumerate(traces) for d in range(len(t.actions))]
        if not decisions:
            return traces
        rows = torch.as_tensor(np.asarray([traces[k].rows[d] for k, d in decisions]))
        scal = torch.as_tensor(np.stack([traces[k].scalars[d] for k, d in decisions]))
        mask = torch.as_tensor(np.stack([traces[k].masks[d] for k, d in decisions]))
        act = torch.as_tensor(np.asarray([traces[k].actions[d] for k, d in decisions]))
        with torch.no_grad():
            logp = (
                torch.log_softmax(policy(E[rows], scal, mask), -1).gather(1, act[:, None]).squeeze(1).numpy()
            )
        out, pos = [], 0
        for t in traces:
            n = len(t.actions)
            out.append(dataclasses.replace(t, logps=[float(x) for x in logp[pos : pos + n]]))
            pos += n
        return out

    def _update(
        self,
        policy: TierPolicy,
        reference: TierPolicy,
        opt: Any,
        traces: Sequence[Trace],
        adv: np.ndarray,
        E: Any,
    ) -> dict[str, float]:
        args = self.args
        rows, scal, mask, act, old, a = [], [], [], [], [], []
        for trace, advantage in zip(traces, adv, strict=True):
            rows += trace.rows
            scal += trace.scalars
            mask += trace.masks
            act += trace.actions
            old += trace.logps
            a += [advantage] * len(trace.actions)
        if not act:
            return {"loss": 0.0, "kl": 0.0, "entropy": 0.0}
        rows_t = torch.as_tensor(np.asarray(rows))
        scal_t = torch.as_tensor(np.stack(scal))
        mask_t = torch.as_tensor(np.stack(mask))
        act_t = torch.as_tensor(np.asarray(act))
        old_t = torch.as_tensor(np.asarray(old), dtype=torch.float32)
        adv_t = torch.as_tensor(np.asarray(a), dtype=torch.float32)
        emb = E[rows_t]
        with torch.no_grad():
            ref_logp = torch.log_softmax(reference(emb, scal_t, mask_t), -1)
        policy.train()
        out: dict[str, float] = {}
        for _ in range(args.inner_epochs):
            logp_all = torch.log_softmax(policy(emb, scal_t, mask_t), -1)
            logp = logp_all.gather(1, act_t[:, None]).squeeze(1)
            probs = logp_all.exp().masked_fill(~mask_t, 0.0)
            entropy = -(probs * logp_all.masked_fill(~mask_t, 0.0)).sum(-1).mean()
            kl = kl_to_reference(logp_all, ref_logp, mask_t)
            loss = (
                clipped_policy_loss(logp, old_t, adv_t, clip_eps=args.clip_eps)
                + args.kl_coef * kl
                - args.entropy_coef * entropy
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            out = {"loss": loss.item(), "kl": kl.item(), "entropy": entropy.item()}
        return out

    # -- choosers ------------------------------------------------------------------------------
    @staticmethod
    def sampler(policy: TierPolicy, E: Any, rng: np.random.Generator) -> Chooser:
        """Sample tiers from the masked policy (numpy draws: seeded and reproducible)."""

        def choose(batch: StepBatch) -> tuple[np.ndarray, np.ndarray]:
            with torch.no_grad():
                logits = policy(
                    E[torch.as_tensor(batch.rows)],
                    torch.as_tensor(batch.scalars),
                    torch.as_tensor(batch.masks),
                )
                probs = torch.softmax(logits, -1).numpy().astype(float)
            cum = probs.cumsum(axis=1)
            u = rng.random(len(probs))[:, None] * cum[:, -1:]
            actions = (u > cum).sum(axis=1)
            actions = np.minimum(actions, probs.shape[1] - 1)
            bad = ~batch.masks[np.arange(len(actions)), actions]
            actions[bad] = batch.masks[bad].argmax(axis=1)
            logp = np.log(np.maximum(probs[np.arange(len(actions)), actions], 1e-12))
            return actions, logp

        return choose

    @staticmethod
    def greedy(policy: TierPolicy, E: Any, threshold: float = 0.5) -> Chooser:
        """The serving rule: the highest rung whose upper-tail probability reaches ``threshold``."""

        def choose(batch: StepBatch) -> tuple[np.ndarray, np.ndarray]:
            with torch.no_grad():
                logits = policy(E[torch.as_tensor(batch.rows)], torch.as_tensor(batch.scalars))
                probs = torch.softmax(logits, -1).numpy()
            actions = np.array(
                [ordinal_choice(p, m, threshold) for p, m in zip(probs, batch.masks, strict=True)]
            )
            return actions, np.zeros(len(actions))

        return choose

    def evaluate(self, policy: TierPolicy, env: AgenticEnv, E: Any, ref_usd: float) -> dict[str, float]:
        """Greedy policy on the environment's anchor tasks (no budget): the training-set figures."""
        jobs = [Job(i, task.rows) for i, task in enumerate(env.tasks)]
        return summarize([t.result for t in rollout(env, jobs, self.greedy(policy, E), ref_usd=ref_usd)])

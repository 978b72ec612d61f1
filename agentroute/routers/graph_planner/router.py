"""GraphPlanner: the workflow of each query built step by step by a PPO policy over (role, agent).

GraphPlanner ("Graph Memory-Augmented Agentic Routing for Multi-Agent LLMs", ulab-uiuc): per query
a tree of sub-queries is processed depth-first (:mod:`~agentroute.routers.graph_planner.mdp`); at
each step the policy picks an action (role, agent) — role ∈ {planner, executor, summarizer},
agent = (model, strategy) of the pool — among the actions the stage machine allows and the ledger
can afford (worst case ≤ what is left). The state is the current node's embedding, the query's
embedding and a task embedding, enriched by GARNet's workflow and historical memories
(:mod:`~agentroute.routers.graph_planner.policy`); the historical memory is agentroute's SQL
interaction memory (:meth:`GraphPlannerRouter.attach_memory`). Scores = MLP(state)·φ_actionᵀ with
a masked softmax, a value network over the same state, trained with PPO + GAE
(:mod:`agentroute.training.ppo`) on the offline environment
(:mod:`~agentroute.routers.graph_planner.env`).

**Reward.** R = score − λ·cost / cost_scale, λ = ``cost_weight`` (the knob); the reference code's
reward is λ = 0 (score only). cost_scale is the mean logged cost of the costliest model.

**Hyperparameters.** The reference code's effective values are the defaults: lr 1e-4 (policy) /
2e-4 (value), γ 0.98, GAE λ 0.85, clip 0.2, minibatch 32; ours add 4 PPO epochs per update of 64
episodes, an entropy bonus 0.01 and gradient-norm clip 1.0 **[default]**.

**As a router.** In the planner graph (``graphs/planner.py``) the graph asks :meth:`act` for the
next (role, agent), then runs that step through the dispatcher, whose ``route`` call returns the
chosen agent (:meth:`expect`). Anywhere else (any graph, any role) ``route`` scores the candidates
it is given as the policy would for that role on a fresh root node: the argmax among them.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Self

import numpy as np

from agentroute._optional import require_installed
from agentroute.errors import ConfigurationError
from agentroute.outcomes import OutcomeTable, as_outcome_table
from agentroute.routers.base import (
    Router,
    check_each,
    check_range,
    decide,
    import_torch,
    register,
    require_candidates,
)
from agentroute.routers.graph_planner.env import OfflineEnv, decision_features, memory_view
from agentroute.routers.graph_planner.mdp import ROLES, Workflow
from agentroute.routers.graph_planner.memory import HistoryMemory
from agentroute.routers.utility import embed_texts, load_module_arrays, module_arrays
from agentroute.training.checkpoint import run_key
from agentroute.training.ppo import PPOConfig, PPOOptionError
from agentroute.types import Agent, Decision, RouteContext


def agent_key(agent: Agent) -> str:
    """The policy's name for an agent: ``model:strategy`` (the role is the other half of an action)."""
    return f"{agent.model}:{agent.strategy}"


@register
class GraphPlannerRouter(Router):
    """GraphPlanner's PPO policy over (role, agent) with GARNet memory.

    Args:
        cost_weight: λ in R = score − λ·cost/cost_scale (the knob; 0 = the reference reward).
        hidden: d, the width of state, action and memory vectors.
        episodes: training episodes.
        episodes_per_update: episodes collected per PPO update.
        lr_policy, lr_value, gamma, gae_lambda, clip, minibatch, ppo_epochs, entropy_coef: PPO's
            (see :class:`~agentroute.training.ppo.PPOConfig`).
        max_planner_calls, max_depth, max_subqueries: the MDP's limits (2, 3, 3).
        memory_k: historical rows read per decision (nearest by input embedding).
        memory_tau: τ of the softmax similarity weights.
        memory_fractions: shares of the historical rows visible in a training episode (drawn per
            update), so the policy learns to act with little or much memory.
        unlimited_share: share of training episodes without a budget (others draw one).
        id_dropout: probability that an agent's learned embedding is replaced by the shared
            "unknown agent" row in a training episode (policies that run on new pools).
        query_chars: characters of each text embedded (``None``: all).
        seed: seeds initialisation and training.

    Fitted attributes: ``net_``, ``agents_`` (agent keys seen in training), ``cost_scale_``,
    ``train_log_``, ``train_seconds_``, ``examples_`` (a few greedy workflows as text) and
    ``action_counts_`` (greedy actions per role on training queries).
    """

    name = "graph-planner"
    learned = True
    #: The planner graph asks :meth:`act` for each (role, agent) (see :mod:`.graph`).
    builds_workflow = True
    #: Live training (:mod:`.live_env`): task id → that task's decisions, filled by :meth:`act`.
    recording: dict[str, list[dict[str, Any]]] | None = None
    knob = "cost_weight"
    knob_grid = (0.0, 0.1, 0.3, 1.0)

    def __init__(
        self,
        *,
        cost_weight: float = 0.0,
        hidden: int = 64,
        episodes: int = 4000,
        episodes_per_update: int = 64,
        lr_policy: float = 1e-4,
        lr_value: float = 2e-4,
        gamma: float = 0.98,
        gae_lambda: float = 0.85,
        clip: float = 0.2,
        minibatch: int = 32,
        ppo_epochs: int = 4,
        entropy_coef: float = 0.01,
        max_planner_calls: int = 2,
        max_depth: int = 3,
        max_subqueries: int = 3,
        memory_k: int = 32,
        memory_tau: float = 0.05,
        memory_fractions: Sequence[float] = (0.0, 0.05, 1.0),
        unlimited_share: float = 0.5,
        id_dropout: float = 0.1,
        query_chars: int | None = None,
        seed: int = 0,
    ):
        require_installed("torch")  # its policy needs it: said here, not after a `train` it cannot run
        self.cost_weight = cost_weight
        self.hidden = hidden
        self.episodes = episodes
        self.episodes_per_update = episodes_per_update
        self.lr_policy = lr_policy
        self.lr_value = lr_value
        self.gamma = gamma
        self.gae_lambda = gae_lambda
        self.clip = clip
        self.minibatch = minibatch
        self.ppo_epochs = ppo_epochs
        self.entropy_coef = entropy_coef
        self.max_planner_calls = max_planner_calls
        self.max_depth = max_depth
        self.max_subqueries = max_subqueries
        self.memory_k = memory_k
        self.memory_tau = memory_tau
        self.memory_fractions = memory_fractions
        self.unlimited_share = unlimited_share
        self.id_dropout = id_dropout
        self.query_chars = query_chars
        self.seed = seed

    # -- configuration --------------------------------------------------------------------------
    def ppo_config(self) -> PPOConfig:
        """The PPO hyperparameters; an error names this router's option (``ppo_epochs``, not PPO's ``epochs``)."""
        return self._ppo({field: getattr(self, option) for option, field in _PPO_FIELDS.items()})

    def _ppo(self, fields: dict[str, Any]) -> PPOConfig:
        try:
            return PPOConfig(**fields)
        except PPOOptionError as exc:
            options = {field: option for option, field in _PPO_FIELDS.items()}
            said = (
                f"{options.get(f, f)!r} must be {rule} (got {value!r})" for f, rule, value in exc.refusals
            )
            raise ConfigurationError("graph-planner: " + "; ".join(said)) from None

    def _check_params(self) -> None:
        """Every option's range (PPO's own rules for its options); one error names each option refused."""

        def cost_weight() -> None:
            if not (_is_number(self.cost_weight) and 0 <= self.cost_weight < float("inf")):
                raise ConfigurationError(
                    f"graph-planner: 'cost_weight' must be a finite number ≥ 0 (got {self.cost_weight!r}) — "
                    "0 is the reference reward, 0.1–1 trade accuracy for cost"
                )

        def memory_fractions() -> None:
            if not self.memory_fractions or any(not 0 <= f <= 1 for f in self.memory_fractions):
                raise ConfigurationError(
                    f"graph-planner: 'memory_fractions' must be shares in [0, 1] (got {self.memory_fractions!r})"
                )

        checks: dict[str, Callable[[], object]] = {
            "cost_weight": cost_weight,
            "memory_fractions": memory_fractions,
        }
        for key in ("hidden", "episodes", "episodes_per_update", "max_subqueries", "max_depth"):
            checks[key] = partial(_check_integer, key, getattr(self, key), 1)
        for key in ("max_planner_calls", "memory_k", "seed"):
            checks[key] = partial(_check_integer, key, getattr(self, key), 0)
        if self.query_chars is not None:
            checks["query_chars"] = partial(
                _check_integer, "query_chars", self.query_chars, 1, "or None (the whole text)"
            )
        checks["memory_tau"] = partial(check_range, self, "memory_tau", low=0, low_open=True)
        for key in ("unlimited_share", "id_dropout"):
            checks[key] = partial(check_range, self, key, low=0, high=1)
        for option, field in _PPO_FIELDS.items():
            checks[option] = partial(self._ppo, {field: getattr(self, option)})
        check_each(self, checks)

    # -- learning -------------------------------------------------------------------------------
    def fit(
        self,
        data: Any,
        *,
        progress: Callable[[dict[str, Any]], None] | None = None,
        checkpoint: str | Path | None = None,
        checkpoint_every_s: float = 30.0,
    ) -> Self:
        """Train on the offline environment built from logged outcomes.

        ``data``: an :class:`~agentroute.outcomes.OutcomeTable`, a dataset (its train split),
        trajectories, or a :class:`~agentroute.memory.base.MemoryStore` (the tasks
        :func:`~agentroute.memory.export.learned_trajectories` gives: the scored, and the failed ones).
        ``progress`` receives one dict per PPO update (episodes, reward, score, cost, mask_rate …).
        ``checkpoint``: a file the training state is saved to every ``checkpoint_every_s`` seconds,
        on Ctrl-C or, within :func:`~agentroute.training.stopping.terminate_as_interrupt`, SIGTERM
        (the last finished update) and at the end; a fit given an existing one resumes
        from it — the same result as an uninterrupted run — when the parameters (but ``episodes``)
        and data are the same. Delete it once the router is saved.
        """
        self._run_checks()
        torch = import_torch()  # here, not at import: a bad recipe is refused before torch loads (seconds)
        from agentroute.routers.graph_planner.policy import PlannerNet
        from agentroute.routers.graph_planner.trainer import Checkpoint, train

        if callable(getattr(data, "trajectories", None)) and callable(getattr(data, "flush", None)):
            from agentroute.memory.export import learned_trajectories

            data.flush()
            data = list(learned_trajectories(data))  # what train --from reads: the failed tasks too
        table = as_outcome_table(data)
        if len(table) == 0 or not np.isfinite(np.asarray(table.scores, float)).any():
            raise ConfigurationError(
                "graph-planner: no logged outcome to learn from (empty table or no scores)"
            )
        started = time.perf_counter()
        emb = embed_texts(table.queries, self.query_chars).astype(np.float32)
        env = self._env(table)
        costs = np.asarray(env.costs, float)
        self.cost_scale_ = float(max(np.nanmax(np.nanmean(costs, axis=0)), 1e-9))
        history = HistoryMemory.from_table(table, emb)
        saver = (
            None
            if checkpoint is None
            else Checkpoint(Path(checkpoint), self._run_key(table), checkpoint_every_s)
        )
        resume = saver.load(self.episodes) if saver is not None else None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net_ = PlannerNet(len(env.agents), self.hidden)
            try:
                self.train_log_ = train(
                    self.net_,
                    env,
                    query_emb=emb,
                    history=history,
                    config=self.ppo_config(),
                    episodes=self.episodes,
                    episodes_per_update=self.episodes_per_update,
                    cost_weight=float(self.cost_weight),
                    cost_scale=self.cost_scale_,
                    k=self.memory_k,
                    tau=self.memory_tau,
                    memory_fractions=tuple(self.memory_fractions),
                    unlimited_share=self.unlimited_share,
                    id_dropout=self.id_dropout,
                    seed=self.seed,
                    progress=progress,
                    resume=resume,
                    on_update=saver.update if saver is not None else None,
                )
            finally:  # the end, or a Ctrl-C: the last finished update is kept
                if saver is not None:
                    saver.write()
        self.net_.eval()
        self.agents_ = list(env.agents)
        self.train_seconds_ = time.perf_counter() - started
        self._describe(env, emb)
        self.fitted_ = True
        return self

    def _run_key(self, table: OutcomeTable) -> str:
        """What a checkpoint must have been trained with to be resumed: parameters (but ``episodes``) and
        data (queries, agents, scores and costs: each shapes the rewards)."""
        params = {k: v for k, v in self.get_params().items() if k != "episodes"}
        outcomes = [np.asarray(values, float).tolist() for values in (table.scores, table.costs)]
        return run_key(params, table.query_ids, table.queries, table.models, outcomes)

    def _env(self, table: OutcomeTable) -> OfflineEnv:
        return OfflineEnv(table, self.max_planner_calls, self.max_depth, self.max_subqueries)

    def _describe(self, env: OfflineEnv, emb: np.ndarray, n: int = 40) -> None:
        """A few greedy workflows (text trees) and the greedy action counts per role."""
        from agentroute.routers.graph_planner.trainer import run_episode

        counts: Counter[str] = Counter()
        examples: list[str] = []
        ids = np.arange(len(env))
        for i in ids[np.linspace(0, len(env) - 1, min(n, len(env))).astype(int)]:
            ep = run_episode(
                self.net_,
                env,
                int(i),
                query_emb=emb,
                agent_id=np.arange(len(env.agents)),
                history=None,
                rows=None,
                budget=None,
                cost_weight=float(self.cost_weight),
                cost_scale=self.cost_scale_,
                k=self.memory_k,
                tau=self.memory_tau,
                greedy=True,
            )
            for _, role, agent, _ in ep.workflow.actions:
                counts[f"{role}|{agent}"] += 1
            if len(examples) < 4:
                examples.append(ep.workflow.render())
        self.examples_ = examples
        self.action_counts_ = dict(counts)

    # -- memory -----------------------------------------------------------------------------------
    @property
    def history(self) -> HistoryMemory | None:
        """The attached historical memory (``None``: none; the policy then acts on the workflow alone)."""
        return getattr(self, "_history", None)

    def attach_memory(self, memory: Any, *, limit: int | None = None) -> Self:
        """Read the historical memory from a :class:`~agentroute.memory.base.MemoryStore` (or take a
        :class:`HistoryMemory`); ``None`` detaches it. No retraining: the next decisions read it."""
        if memory is None:
            self._history = None
        elif isinstance(memory, HistoryMemory):
            self._history = memory if limit is None else memory.subset(np.arange(min(limit, len(memory))))
        else:
            self._history = HistoryMemory.from_store(memory, limit=limit)
        return self

    # -- the agents it knows -----------------------------------------------------------------------
    def known_agents(self) -> list[str] | None:
        """The agents of training as role-free columns (``model`` or ``model:strategy``), so a pool
        is checked against them (:func:`~agentroute.routers.base.check_pool`)."""
        self.check_fitted()
        return [key.removesuffix(":direct") for key in self.agents_]

    def unseen_treatment(self) -> str:
        """Agents unseen in training act through the policy's shared "unknown agent" embedding."""
        return f"scored through the policy's shared unknown-agent embedding (trained with id_dropout={self.id_dropout:g})"

    # -- acting -----------------------------------------------------------------------------------
    def _agent_ids(self, keys: Sequence[str]) -> np.ndarray:
        known = {k: j for j, k in enumerate(self.agents_)}
        return np.array([known.get(k, len(self.agents_)) for k in keys], np.int64)

    def act(
        self,
        wf: Workflow,
        *,
        agents: Sequence[str],
        action_cost: np.ndarray,
        available: np.ndarray,
        remaining: float | None,
        budget: float | None,
        node_text: str | None = None,
        greedy: bool = True,
        rng: np.random.Generator | None = None,
        trace: list[dict[str, Any]] | None = None,
        exclude_query: str | None = None,
    ) -> tuple[int, np.ndarray]:
        """The next action (index into role-major (role, agent) pairs) and the action probabilities.

        ``available`` must already hold the stage machine's rule and the budget mask. ``trace``
        (live training) gets the decision: its features, action, log-probability and value;
        ``exclude_query``: historical rows of that query id are not read (training leaves a question's
        own past outcomes out of its memory)."""
        self.check_fitted()
        if not np.asarray(available).any():
            raise ConfigurationError("graph-planner: no legal, affordable action")
        node = wf.current()
        texts = [wf.query, node_text if node_text is not None else (node.text if node else wf.query)]
        q_emb, n_emb = embed_texts(texts, self.query_chars).astype(np.float32)
        view = memory_view(self.history, n_emb, self.memory_k, self.memory_tau, exclude=exclude_query)
        feats = decision_features(
            wf,
            node_emb=n_emb,
            query_emb=q_emb,
            history=self.history,
            view=view,
            agents=list(agents),
            action_cost=np.asarray(action_cost, float),
            available=np.asarray(available, bool),
            remaining=remaining,
            budget=budget,
            cost_scale=self.cost_scale_,
        )
        agent_id = self._agent_ids(agents)
        torch = import_torch()
        from agentroute.routers.graph_planner.policy import collate

        with torch.no_grad():
            logits, value = self.net_(collate([feats], agent_id))
            probs = torch.softmax(logits[0], -1).double().numpy()
        if greedy:
            action = int(np.argmax(np.where(available, logits[0].numpy(), -np.inf)))
        else:
            rng = rng or getattr(self, "rng_", None) or np.random.default_rng()
            p = np.where(available, probs, 0.0)
            action = int(rng.choice(len(p), p=p / p.sum()))
        if trace is not None:
            feats["agent_id"] = agent_id
            logp = float(torch.log_softmax(logits[0], -1)[action])
            trace.append({"feats": feats, "action": action, "logp": logp, "value": float(value[0])})
        return action, probs

    def expect(self, task_id: str, agent: Agent | None) -> None:
        """The planner graph's next step in task ``task_id`` is ``agent`` (``None`` clears it)."""
        with _LOCK:
            pending = self.__dict__.setdefault("_pending", {})
            if agent is None:
                pending.pop(task_id, None)
            else:
                pending[task_id] = agent

    def route(self, ctx: RouteContext) -> Decision:
        self.check_fitted()
        require_candidates(self, ctx)
        expected = getattr(self, "_pending", {}).get(ctx.task_id)
        if expected is not None:
            for i, agent in enumerate(ctx.candidates):
                if agent.key == expected.key:
                    return decide(self, ctx, i, "graph-planner: the workflow's action")
        # any other graph: the policy's choice for this role on a fresh root node
        keys = [agent_key(a) for a in ctx.candidates]
        g = len(keys)
        role = ROLES.index(ctx.role) if ctx.role in ROLES else ROLES.index("executor")
        wf = Workflow(ctx.query, self.max_planner_calls, self.max_depth, self.max_subqueries)
        cost = np.array([ctx.costs.get(a.key, 0.0) for a in ctx.candidates], float)
        available = np.zeros(len(ROLES) * g, bool)
        available[role * g : (role + 1) * g] = True
        usd = ctx.remaining.get("usd")
        action, probs = self.act(
            wf,
            agents=keys,
            action_cost=np.tile(cost, len(ROLES)),
            available=available,
            remaining=usd,
            budget=ctx.budget.get("usd"),
            node_text=ctx.step_input or ctx.query,
        )
        index = action - role * g
        scores = {a.key: float(probs[role * g + j]) for j, a in enumerate(ctx.candidates)}
        why = "graph-planner: policy for this role"
        if keys[index] not in self.agents_:
            why += f"; {ctx.candidates[index].key} unseen in training: the shared unknown-agent embedding"
        return decide(self, ctx, index, why, scores=scores)

    # -- persistence ------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        return {
            "agents": list(self.agents_),
            "cost_scale": self.cost_scale_,
            "train_seconds": self.train_seconds_,
            "train_log": self.train_log_[-50:],
            "examples": list(self.examples_),
            "action_counts": dict(self.action_counts_),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.agents_ = [str(a) for a in state["agents"]]
        self.cost_scale_ = float(state["cost_scale"])
        self.train_seconds_ = float(state.get("train_seconds", 0.0))
        self.train_log_ = list(state.get("train_log", []))
        self.examples_ = [str(e) for e in state.get("examples", [])]
        self.action_counts_ = {str(k): int(v) for k, v in state.get("action_counts", {}).items()}

    def get_arrays(self) -> dict[str, np.ndarray]:
        return module_arrays(self.net_)

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        from agentroute.routers.graph_planner.policy import EMB, PlannerNet

        emb = np.asarray(arrays["net.agent_emb.weight"])
        self.net_ = PlannerNet(emb.shape[0] - 1, emb.shape[1])
        arrays = dict(arrays)
        for name in ("net.state_mlp.0.weight", "net.value_mlp.0.weight"):  # saved before output embeddings
            w = np.asarray(arrays[name])
            if w.shape[1] == self.net_.state_in - EMB:  # the state's last EMB inputs: zero weights
                arrays[name] = np.concatenate([w, np.zeros((w.shape[0], EMB), w.dtype)], axis=1)
        load_module_arrays(self.net_, arrays)


_LOCK = threading.Lock()
#: This router's option → the :class:`PPOConfig` field it sets (PPO's rules check them).
_PPO_FIELDS = {
    "lr_policy": "lr_policy",
    "lr_value": "lr_value",
    "gamma": "gamma",
    "gae_lambda": "gae_lambda",
    "clip": "clip",
    "minibatch": "minibatch",
    "ppo_epochs": "epochs",
    "entropy_coef": "entropy_coef",
}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_integer(key: str, value: object, least: int, alternative: str = "") -> None:
    """A :class:`ConfigurationError` unless ``value`` is an integer (not a bool) ≥ ``least``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        also = f" {alternative}" if alternative else ""
        raise ConfigurationError(f"graph-planner: {key!r} must be an integer ≥ {least}{also} (got {value!r})")

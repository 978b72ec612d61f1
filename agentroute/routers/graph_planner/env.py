"""The offline environment (logged outcomes) and the decision features shared with the live graph.

**What is real and what is composed** (RouterBench, or any :class:`~agentroute.outcomes.OutcomeTable`):

- *Real*: every **executor** outcome on the root query is the logged score and the logged USD cost
  of that model on that query; the budget mask uses the logged cost as the worst case (as the
  replay backend does), so masks and spend are exact.
- *Composed* — the logs hold one answer per (query, model) and no workflows, so:
  - a **planner** call by model m on query q costs m's logged cost on q (it reads the same prompt)
    and splits the node into k ∈ {1, 2, 3} sub-queries, k drawn from a hash of (query id, m,
    depth): deterministic, not learned from text;
  - a **sub-query** is the parent text tagged "(part i/k)"; executing it with model m scores m's
    logged score on the root query and costs m's logged cost (a facet of the same question);
  - a **summariser** m over children with answers v₁..v_k answers with the majority of
    (v₁..v_k, s(q, m)) — its own logged answer votes too; a tie goes to s(q, m); non-binary
    scores are averaged — and costs m's logged cost on q.
  So a plan is an ensemble of logged answers paid call by call: it can beat the best single model
  only where the models' errors differ, and it always costs more.
- The episode's score is the root's value; a task that runs out of budget before the root is done
  scores the last finished node's value (the partial answer). Missing cells are unavailable actions.

Reward R = score − λ·cost / cost_scale at the end of the episode (cost_scale: the mean logged cost
of the costliest model), 0 before; λ = 0 is the reference code's reward.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agentroute.routers.graph_planner.mdp import EXECUTE, N_ACTION, N_FLOW, PLAN, ROLES, SUMMARIZE, Workflow
from agentroute.routers.graph_planner.memory import HistoryMemory, _agent_key

#: Row features of the workflow memory: role one-hot, cost_n, depth.
_FLOW_ROLE = {r: i for i, r in enumerate(ROLES)}


@dataclass
class MemoryView:
    """The historical memory as the policy sees it at one decision: nearest rows and weights."""

    index: np.ndarray
    weight: np.ndarray
    task: np.ndarray  # weighted mean of the rows' input embeddings (the inferred task embedding)
    task_out: np.ndarray  # weighted mean of the rows' output embeddings (zeros where none are known)


def memory_view(
    history: HistoryMemory | None,
    q: np.ndarray,
    k: int,
    tau: float,
    *,
    exclude: str | None = None,
    rows: tuple[np.ndarray, np.ndarray] | None = None,
) -> MemoryView:
    """The ``k`` nearest rows to ``q`` with softmax(sim / τ) weights (``rows`` precomputed: (index, sims))."""
    none = np.zeros_like(q, dtype=np.float32)
    if history is None or len(history) == 0 or k < 1:
        return MemoryView(np.zeros(0, np.int64), np.zeros(0, np.float32), none, none)
    idx, sims = rows if rows is not None else history.nearest(q, k, exclude=exclude)
    idx, sims = idx[:k], sims[:k]
    if len(idx) == 0:
        return MemoryView(idx, sims, none, none)
    z = (sims - sims.max()) / tau
    w = np.exp(z).astype(np.float32)
    w /= w.sum()
    task = (w[:, None] * history.emb[idx]).sum(0).astype(np.float32)
    out = history.out_emb
    task_out = none if out is None else (w[:, None] * out[idx]).sum(0).astype(np.float32)
    return MemoryView(idx, w, task, task_out)


def decision_features(
    wf: Workflow,
    *,
    node_emb: np.ndarray,
    query_emb: np.ndarray,
    history: HistoryMemory | None,
    view: MemoryView,
    agents: list[str],
    action_cost: np.ndarray,
    available: np.ndarray,
    remaining: float | None,
    budget: float | None,
    cost_scale: float,
) -> dict[str, np.ndarray]:
    """Numpy features of one decision (see :class:`~agentroute.routers.graph_planner.policy.Batch`).

    ``action_cost`` (A,) is each action's worst-case USD, ``available`` (A,) the legal and
    affordable mask; ``remaining``/``budget`` the USD left and the USD limit (``None``: unlimited).
    """
    g = len(agents)
    agent_pos = {a: j for j, a in enumerate(agents)}
    hist_x = np.zeros((0, 5), np.float32)
    hist_a = np.zeros(0, np.int64)
    if history is not None and len(view.index):
        hist_x = history.features(cost_scale)[view.index]
        hist_a = np.array(
            [
                _FLOW_ROLE.get(history.role[i], 1) * g + agent_pos[history.agent[i]]
                if history.agent[i] in agent_pos
                else -1
                for i in view.index
            ],
            np.int64,
        )
    flow_x = np.zeros((len(wf.actions), N_FLOW), np.float32)
    flow_g = np.full(len(wf.actions), -1, np.int64)
    for t, (node_id, role, agent, cost) in enumerate(wf.actions):
        flow_x[t, _FLOW_ROLE[role]] = 1.0
        flow_x[t, 3] = min(5.0, cost / cost_scale)
        flow_x[t, 4] = wf.nodes[node_id].depth / max(1, wf.max_depth)
        flow_g[t] = agent_pos.get(agent, -1)
    act_x = np.zeros((len(action_cost), N_ACTION), np.float32)
    act_x[:, 0] = np.log10(np.maximum(action_cost, 1e-9) / cost_scale) / 3.0
    if remaining is not None:
        act_x[:, 1] = np.clip(action_cost / max(remaining, 1e-12), 0.0, 2.0)
    act_x[:, 2] = (~available).astype(np.float32)
    fraction = 1.0 if remaining is None or not budget else max(0.0, remaining / budget)
    return {
        "node": np.asarray(node_emb, np.float32),
        "query": np.asarray(query_emb, np.float32),
        "task": view.task,
        "task_out": view.task_out,
        "struct": np.asarray(wf.features(fraction), np.float32),
        "hist_x": hist_x,
        "hist_a": hist_a,
        "hist_w": view.weight[: len(hist_a)] if len(hist_a) else np.zeros(0, np.float32),
        "flow_x": flow_x,
        "flow_g": flow_g,
        "act_x": act_x,
        "mask": available.copy(),
    }


def legal_mask(wf: Workflow, g: int) -> np.ndarray:
    """(3·g,) the stage machine's rule per (role, agent), role-major."""
    return np.repeat(np.asarray(wf.legal_roles(), bool), g)


def _hash(*parts: Any) -> int:
    return int.from_bytes(
        hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=4).digest(), "little"
    )


@dataclass
class OfflineEnv:
    """Episodes over a logged-outcome table (see the module docstring for what is composed)."""

    table: Any
    max_planner_calls: int = 2
    max_depth: int = 3
    max_subqueries: int = 3
    agents: list[str] = field(init=False)
    scores: np.ndarray = field(init=False)
    costs: np.ndarray = field(init=False)
    available: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.agents = [_agent_key(m) for m in self.table.models]
        self.scores = np.asarray(self.table.scores, float)
        costs = np.asarray(self.table.costs, float)
        self.available = ~np.isnan(self.scores)
        col = np.nan_to_num(np.nanmean(np.where(self.available, costs, np.nan), axis=0))
        self.costs = np.where(np.isnan(costs), col[None, :], costs)

    def __len__(self) -> int:
        return len(self.table)

    def new(self, i: int) -> Workflow:
        return Workflow(self.table.queries[i], self.max_planner_calls, self.max_depth, self.max_subqueries)

    def action_cost(self, i: int) -> np.ndarray:
        """(3·G,) USD of each (role, agent) on query ``i``: the logged cost, whatever the role."""
        return np.tile(self.costs[i], len(ROLES))

    def step(self, wf: Workflow, i: int, action: int) -> float:
        """Apply ``action`` to query ``i``'s workflow; returns its cost."""
        g = len(self.agents)
        role, j = divmod(action, g)
        agent, cost = self.agents[j], float(self.costs[i, j])
        node = wf.current()
        assert node is not None
        if role == PLAN:
            k = 1 + _hash(self.table.query_ids[i], agent, node.depth) % self.max_subqueries
            wf.plan(agent, [f"{node.text} (part {p + 1}/{k})" for p in range(k)], cost=cost)
        elif role == EXECUTE:
            wf.finish(
                "executor", agent, f"{agent} on node {node.id}", cost=cost, value=float(self.scores[i, j])
            )
        elif role == SUMMARIZE:
            own = float(self.scores[i, j])
            votes = [float(wf.nodes[c].value or 0.0) for c in node.children] + [own]
            if all(v in (0.0, 1.0) for v in votes):
                mean = sum(votes) / len(votes)
                value = 1.0 if mean > 0.5 else 0.0 if mean < 0.5 else own
            else:
                value = float(np.mean(votes))
            wf.finish("summarizer", agent, f"{agent} summary of node {node.id}", cost=cost, value=value)
        return cost

    @staticmethod
    def score(wf: Workflow) -> float:
        if wf.done:
            return float(wf.root.value or 0.0)
        last = wf.last_answer()
        return float(last.value or 0.0) if last is not None else 0.0

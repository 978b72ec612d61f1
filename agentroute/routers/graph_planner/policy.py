"""GraphPlanner's actor and critic with GARNet memory aggregation (torch).

**GARNet (memory).** Two tables feed the state:

- *historical memory*: the ``K`` past steps nearest to the current node (see
  :class:`~agentroute.routers.graph_planner.memory.HistoryMemory`), with softmax similarity weights
  w_k. Each row's features x_k = [score, cost_n, role one-hot] go through a per-table MLP,
  h_k = MLP_h(x_k); a weighted scatter-mean by the row's action foreign key (role, agent) gives a
  memory vector per action, M_a = Σ_{k: a_k = a} w_k h_k / Σ_{k: a_k = a} w_k, plus its evidence
  n_a = Σ_{k: a_k = a} w_k; the pooled Σ_k w_k h_k, the weighted mean of the rows' input
  embeddings (the inferred *task embedding*: a deployment never knows the task label) and the
  weighted mean of their output embeddings (what past agents answered; zero where the memory holds
  no outputs) join the state;
- *workflow memory*: this episode's steps, x_t = [role one-hot, cost_n, depth], MLP_w and a
  scatter-mean by agent, W_g, pooled into the state.

This is the reference code's "DBLayer" (per-table MLP + scatter-mean by foreign key).

**Policy.** u = MLP_π([e(node), e(query), e(task), structure, pooled memories, e_out(task)]) ∈ ℝ^d and for each
action a = (role r, agent g): φ_a = E_role[r] + E_agent[g] + A·[cost features of a] + P_h M_a +
p_n n_a + P_w W_g; scores s_a = u·φ_a / √d + b_a, masked softmax over legal, affordable actions,
where b_a = MLP_b([cost features of a, the weighted mean score and cost of a's rows, n_a]) lets the
memory's evidence for an action (what a kNN router reads) and its cost enter the score directly.
E_agent has one learned row per agent seen in training and one shared row for any other agent
(trained by dropping ids at random), so a policy runs on pools it was not trained on.

**Critic.** V = MLP_V(the same state input): a value network over the same state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from agentroute.routers.base import import_torch
from agentroute.routers.graph_planner.mdp import EMB, N_ACTION, N_FLOW, N_STRUCT, ROLES
from agentroute.routers.graph_planner.memory import N_ROW

import_torch()
import torch  # noqa: E402
from torch import nn  # noqa: E402

#: Width of the state vector's fixed part: node, query, task (input side), the workflow's structure and
#: (last) the task's output-side embedding; the two pooled memory vectors (2 × hidden) come between.
STATE_IN_BASE = 4 * EMB + N_STRUCT


@dataclass
class Batch:
    """Tensors of B decisions over A = 3·G actions (G agents).

    Shapes: node, query, task, task_out (B × 384); struct (B × N_STRUCT); hist_x (B × K × N_ROW);
    hist_a (B × K) action index or −1; hist_w (B × K); flow_x (B × T × N_FLOW); flow_g (B × T)
    agent index or −1; act_x (B × A × N_ACTION); agent_id (B × G) embedding row of each agent;
    mask (B × A).
    """

    node: torch.Tensor
    query: torch.Tensor
    task: torch.Tensor
    task_out: torch.Tensor
    struct: torch.Tensor
    hist_x: torch.Tensor
    hist_a: torch.Tensor
    hist_w: torch.Tensor
    flow_x: torch.Tensor
    flow_g: torch.Tensor
    act_x: torch.Tensor
    agent_id: torch.Tensor
    mask: torch.Tensor


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


def scatter_mean(
    values: torch.Tensor, index: torch.Tensor, weight: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean of ``values`` (B × K × d) into ``size`` slots by ``index`` (B × K, −1 = none).

    Returns (B × size × d means, B × size summed weights)."""
    b, _, d = values.shape
    valid = index >= 0
    idx = index.clamp(min=0)
    w = weight * valid
    total = values.new_zeros(b, size).scatter_add(1, idx, w)
    summed = values.new_zeros(b, size, d).scatter_add(
        1, idx.unsqueeze(-1).expand(-1, -1, d), values * w.unsqueeze(-1)
    )
    return summed / total.clamp(min=1e-6).unsqueeze(-1), total


class PlannerNet(nn.Module):
    """GraphPlanner's actor–critic with GARNet memory (see the module docstring).

    Args:
        n_agents: agents with a learned embedding row (one more shared row is added for others).
        hidden: d, the width of the state, action and memory vectors.

    Shapes: :meth:`forward` takes a :class:`Batch` and returns (logits B × A, values B).
    """

    def __init__(self, n_agents: int, hidden: int = 64) -> None:
        super().__init__()
        self.n_agents, self.hidden = n_agents, hidden
        self.row_mlp = _mlp(N_ROW, hidden, hidden)  # GARNet: historical table
        self.flow_mlp = _mlp(N_FLOW, hidden, hidden)  # GARNet: workflow table
        self.state_in = state_in = STATE_IN_BASE + 2 * hidden  # the state vector's width
        self.state_mlp = nn.Sequential(
            nn.Linear(state_in, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, hidden)
        )
        self.value_mlp = nn.Sequential(nn.Linear(state_in, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, 1))
        self.role_emb = nn.Embedding(len(ROLES), hidden)
        self.agent_emb = nn.Embedding(n_agents + 1, hidden)
        self.act_proj = nn.Linear(N_ACTION, hidden)
        self.hist_proj = nn.Linear(hidden, hidden, bias=False)
        self.evidence = nn.Linear(1, hidden, bias=False)
        self.flow_proj = nn.Linear(hidden, hidden, bias=False)
        self.action_head = _mlp(N_ACTION + 3, hidden, 1)  # per-action bias: cost and GARNet's evidence
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding) and module is not self:
                module.reset_parameters()
        nn.init.normal_(self.agent_emb.weight, std=0.1)
        nn.init.normal_(self.role_emb.weight, std=0.1)

    def actor_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("value_mlp")]

    def critic_parameters(self) -> list[nn.Parameter]:
        return list(self.value_mlp.parameters())

    def forward(self, b: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        n_b, n_a = b.mask.shape
        g = n_a // len(ROLES)
        h = self.row_mlp(b.hist_x)  # B × K × d
        m_a, n_ev = scatter_mean(h, b.hist_a, b.hist_w, n_a)  # B × A × d, B × A
        hist_pool = (h * b.hist_w.unsqueeze(-1)).sum(1)
        f = self.flow_mlp(b.flow_x)
        ones = (b.flow_g >= 0).float()
        w_g, _ = scatter_mean(f, b.flow_g, ones, g)  # B × G × d
        flow_pool = (f * ones.unsqueeze(-1)).sum(1) / ones.sum(1, keepdim=True).clamp(min=1.0)
        state = torch.cat([b.node, b.query, b.task, b.struct, hist_pool, flow_pool, b.task_out], dim=-1)
        u = self.state_mlp(state)  # B × d
        roles = self.role_emb.weight.repeat_interleave(g, dim=0)  # A × d (role-major)
        agents = self.agent_emb(b.agent_id).repeat(1, len(ROLES), 1)  # B × A × d
        phi = (
            roles.unsqueeze(0)
            + agents
            + self.act_proj(b.act_x)
            + self.hist_proj(m_a)
            + self.evidence(n_ev.unsqueeze(-1))
            + self.flow_proj(w_g).repeat(1, len(ROLES), 1)
        )
        # the memory's own statistics per action: weighted mean score and cost of its rows, evidence
        stats, _ = scatter_mean(b.hist_x[..., :2], b.hist_a, b.hist_w, n_a)
        head = self.action_head(torch.cat([b.act_x, stats, n_ev.unsqueeze(-1)], dim=-1)).squeeze(-1)
        logits = (u.unsqueeze(1) * phi).sum(-1) / math.sqrt(self.hidden) + head
        logits = logits.masked_fill(~b.mask, -1e9)
        value = self.value_mlp(state).squeeze(-1)
        return logits, value


def collate(items: list[dict[str, np.ndarray]], agent_id: np.ndarray | None = None) -> Batch:
    """Stack per-decision numpy features (see :class:`Batch`) into tensors, padding K and T.

    ``agent_id`` (G,) is every decision's agent embedding rows; without it each item carries its own."""
    k = max(1, max(len(it["hist_a"]) for it in items))
    t = max(1, max(len(it["flow_g"]) for it in items))

    def pad(key: str, width: int, fill: float, dtype: type) -> np.ndarray:
        first = items[0][key]
        shape = (len(items), width, *first.shape[1:])
        out = np.full(shape, fill, dtype=dtype)
        for i, it in enumerate(items):
            v = it[key]
            out[i, : len(v)] = v
        return out

    def stack(key: str, dtype: type = np.float32) -> torch.Tensor:
        return torch.from_numpy(np.stack([it[key] for it in items]).astype(dtype))

    return Batch(
        node=stack("node"),
        query=stack("query"),
        task=stack("task"),
        task_out=stack("task_out"),
        struct=stack("struct"),
        hist_x=torch.from_numpy(pad("hist_x", k, 0.0, np.float32)),
        hist_a=torch.from_numpy(pad("hist_a", k, -1, np.int64)),
        hist_w=torch.from_numpy(pad("hist_w", k, 0.0, np.float32)),
        flow_x=torch.from_numpy(pad("flow_x", t, 0.0, np.float32)),
        flow_g=torch.from_numpy(pad("flow_g", t, -1, np.int64)),
        act_x=stack("act_x"),
        agent_id=stack("agent_id", np.int64)
        if agent_id is None
        else torch.from_numpy(np.tile(np.asarray(agent_id, np.int64), (len(items), 1))),
        mask=stack("mask", np.bool_),
    )

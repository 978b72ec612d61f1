"""Score head on (query, agent) pairs, normalised over each query's agents."""

from __future__ import annotations

from typing import Any

import torch


class PairScore(torch.nn.Module):
    r"""The AgentRouter score head: a logit for each (query, agent) pair of a batch of query graphs.

    .. math::
        z_{q,a} = \mathbf{w}_2^{\top}\,\mathrm{ReLU}\big(\mathbf{W}_1
        [\,\mathbf{h}_q \,\|\, \mathbf{h}_a \,\|\, \mathbf{h}_q \odot \mathbf{h}_a\,] + \mathbf{b}_1\big) + b_2,
        \qquad p_\theta(a \mid q, G) = \operatorname{softmax}_{a \in \mathcal{A}(q)} z_{q,a},

    where :math:`\mathcal{A}(q)` are the agent nodes of the query's graph (the softmax is taken by
    :func:`agentroute.nn.kl.grouped_log_softmax`).

    Args:
        channels: size of the query and agent representations.
        hidden_channels: size of the hidden layer (default ``channels``).
        dropout: dropout on the hidden layer (default 0.0).

    Shapes:
        - **input:** ``h_query`` :math:`(Q, F)`, ``h_agent`` :math:`(A, F)`, ``agent_query``
          :math:`(A,)` (the query index of each agent)
        - **output:** :math:`(A,)` logits
    """

    def __init__(self, channels: int, hidden_channels: int | None = None, *, dropout: float = 0.0):
        super().__init__()
        hidden = hidden_channels or channels
        self.channels = channels
        self.dropout = dropout
        self.lin1 = torch.nn.Linear(3 * channels, hidden)
        self.lin2 = torch.nn.Linear(hidden, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lin1.reset_parameters()
        self.lin2.reset_parameters()

    def forward(self, h_query: Any, h_agent: Any, agent_query: Any) -> Any:
        F = torch.nn.functional
        hq = h_query[agent_query]
        z = F.relu(self.lin1(torch.cat([hq, h_agent, hq * h_agent], dim=-1)))
        z = F.dropout(z, self.dropout, self.training)
        return self.lin2(z).squeeze(-1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.channels})"

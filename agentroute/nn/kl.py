"""Soft supervision of AgentRouter: KL(p* ‖ p_θ) over the agents of each query, computed in groups."""

from __future__ import annotations

from typing import Any

import torch
from torch_geometric.utils import scatter


def grouped_log_softmax(logits: Any, index: Any, num_groups: int | None = None) -> Any:
    r"""Log-softmax of ``logits`` within the groups given by ``index`` (numerically stable).

    .. math:: \log p_i = z_i - \max_{j \in g(i)} z_j - \log\sum_{j \in g(i)} e^{z_j - \max_{k \in g(i)} z_k}

    Shapes:
        - **input:** ``logits`` :math:`(A,)`, ``index`` :math:`(A,)` group of each entry
        - **output:** :math:`(A,)`

    >>> grouped_log_softmax(torch.tensor([0.0, 0.0, 5.0]), torch.tensor([0, 0, 1])).exp().tolist()
    [0.5, 0.5, 1.0]
    """
    n = int(index.max()) + 1 if num_groups is None else num_groups
    peak = scatter(logits.detach(), index, dim=0, dim_size=n, reduce="max")[index]
    shifted = logits - peak
    total = scatter(shifted.exp(), index, dim=0, dim_size=n, reduce="sum")[index]
    return shifted - total.log()


def soft_targets(
    scores: Any,
    costs: Any,
    index: Any,
    num_groups: int | None = None,
    *,
    cost_lambda: float = 0.0,
    temperature: float = 0.1,
) -> Any:
    r"""The target distribution over each query's agents,

    .. math:: p^*(a \mid q) = \operatorname{softmax}_{a \in \mathcal{A}(q)}\big((s_{q,a} - \lambda\,\tilde c_{q,a}) / T\big),

    from measured scores :math:`s` and normalised costs :math:`\tilde c` (unit-free).

    Args:
        scores: measured score of each (query, agent) entry.
        costs: normalised cost of each entry.
        index: query (group) of each entry.
        num_groups: number of queries (default ``index.max() + 1``).
        cost_lambda: :math:`\lambda` (default 0.0).
        temperature: :math:`T` (default 0.1); must be positive.

    >>> soft_targets(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]), torch.tensor([0, 0]), temperature=1.0)
    tensor([0.7311, 0.2689])
    """
    if temperature <= 0:
        raise ValueError(f"'temperature' (got {temperature}) must be positive")
    return grouped_log_softmax((scores - cost_lambda * costs) / temperature, index, num_groups).exp()


def grouped_kl_div(target: Any, log_prob: Any, index: Any, num_groups: int | None = None) -> Any:
    r"""Mean over queries of :math:`\mathrm{KL}(p^* \,\|\, p_\theta) = \sum_a p^*_a(\log p^*_a - \log p_{\theta,a})`
    (terms with :math:`p^*_a = 0` contribute 0).

    Shapes:
        - **input:** ``target`` :math:`(A,)` probabilities, ``log_prob`` :math:`(A,)`, ``index`` :math:`(A,)`
        - **output:** scalar

    >>> t = torch.tensor([0.5, 0.5]); grouped_kl_div(t, t.log(), torch.tensor([0, 0])).item()
    0.0
    """
    n = int(index.max()) + 1 if num_groups is None else num_groups
    safe = torch.where(target > 0, target, torch.ones_like(target))
    terms = torch.where(target > 0, target * (safe.log() - log_prob), torch.zeros_like(target))
    return scatter(terms, index, dim=0, dim_size=n, reduce="sum").mean()


class SoftKLLoss(torch.nn.Module):
    r"""KL(p* ‖ p_θ) with :math:`p^* = \operatorname{softmax}((s - \lambda\tilde c)/T)` and
    :math:`p_\theta = \operatorname{softmax}(z)` over each query's agents.

    Args:
        cost_lambda: :math:`\lambda`, the weight of the normalised cost in the target (default 0.0).
        temperature: :math:`T` (default 0.1).

    Shapes:
        - **input:** ``logits``, ``scores``, ``costs``, ``index`` all :math:`(A,)`
        - **output:** scalar (mean over queries)
    """

    def __init__(self, cost_lambda: float = 0.0, temperature: float = 0.1):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"'temperature' (got {temperature}) must be positive")
        self.cost_lambda = cost_lambda
        self.temperature = temperature

    def forward(self, logits: Any, scores: Any, costs: Any, index: Any, num_groups: int | None = None) -> Any:
        n = int(index.max()) + 1 if num_groups is None else num_groups
        target = soft_targets(
            scores, costs, index, n, cost_lambda=self.cost_lambda, temperature=self.temperature
        )
        return grouped_kl_div(target, grouped_log_softmax(logits, index, n), index, n)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(cost_lambda={self.cost_lambda}, temperature={self.temperature})"

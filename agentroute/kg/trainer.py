"""Mini-batched training of the AgentRouter network with KL(p* ‖ p_θ) and early stopping on
validation AIQ.

The graphs of many queries are batched as torch-geometric's ``DataLoader`` batches them, in the
same order (one query node per graph, so the query of agent node ``j`` is
``batch["agent"].batch[j]``); each batch is gathered from one collation of all the graphs. Each
graph carries, per agent node, its measured score (``agent.score``), its normalised cost
(``agent.cost``, logged cost ÷ the cost scale) and its outcome-table column (``agent.col``).

**Validation AIQ** (:func:`validation_aiq`) uses :func:`agentroute.eval.metrics.aiq` and its hull
convention on the validation split: the router's utility ``T·z − w·ĉ`` is maximised per query for
``w`` on :data:`VALIDATION_GRID`, where ``ĉ`` is each agent's *mean train cost* ÷ the cost scale
(what the router could know before the call, as the evaluation harness's ``train-mean``
estimate), and each choice is scored with the validation row's logged score and cost.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agentroute._optional import require, torch_module
from agentroute.errors import ConfigurationError
from agentroute.eval import metrics as M

__all__ = [
    "VALIDATION_GRID",
    "KGTrainConfig",
    "TrainReport",
    "predict_logits",
    "train_kg_net",
    "validation_aiq",
]

#: Shrinkage weights β tried on validation (:func:`choose_shrinkage`).
SHRINKAGE_GRID: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.5)
#: Cost weights swept for validation AIQ (normalised cost: 1 ≈ the dearest agent's mean cost).
VALIDATION_GRID: tuple[float, ...] = (0.0, *np.geomspace(1e-3, 1e3, 31).tolist())


@dataclass(frozen=True)
class KGTrainConfig:
    """Training hyperparameters; cross-field checks run when the config is built.

    Args:
        epochs: most passes over the training graphs (default 40).
        patience: epochs without a better validation AIQ before stopping (default 6).
        batch_size: query graphs per mini-batch (default 64).
        lr: Adam learning rate (default 2e-3).
        weight_decay: L2 penalty (default 1e-4).
        temperature: T of the soft target (default 0.1).
        cost_lambda: λ of the soft target (default 0.0).
        seed: seeds parameter init and batch order.
    """

    epochs: int = 40
    patience: int = 6
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    temperature: float = 0.1
    cost_lambda: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigurationError(
                f"epochs (got {self.epochs}) and batch_size (got {self.batch_size}) must be at least 1"
            )
        if self.patience < 1:
            raise ConfigurationError(f"patience (got {self.patience}) must be at least 1: it counts epochs")
        if self.temperature <= 0:
            raise ConfigurationError(
                f"temperature (got {self.temperature}) must be positive: p* = softmax(·/T)"
            )
        if self.lr <= 0:
            raise ConfigurationError(f"lr (got {self.lr}) must be positive")


@dataclass
class TrainReport:
    """What training did: per-epoch losses and validation AIQ, the epoch kept, the time taken."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_aiq: list[float] = field(default_factory=list)
    best_epoch: int = -1
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "train_loss": [round(x, 6) for x in self.train_loss],
            "val_loss": [round(x, 6) for x in self.val_loss],
            "val_aiq": [round(x, 6) for x in self.val_aiq],
            "best_epoch": self.best_epoch,
            "seconds": round(self.seconds, 3),
        }


def _loader(graphs: Sequence[Any], batch_size: int, *, shuffle: bool, seed: int = 0) -> Any:
    """torch's ``DataLoader`` over the graphs' positions (the order and random draws of
    torch-geometric's, which is this loader with its own collation) yielding :class:`_Batches`."""
    torch = torch_module()
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return torch.utils.data.DataLoader(
        range(len(graphs)),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        collate_fn=_Batches(graphs),
    )


class _Batches:
    """Mini-batches of ``graphs``, each the ``Batch.from_data_list`` of its graphs (the same tensors),
    gathered by index from one collation of all of them (a copy of their tensors). torch-geometric
    collates graph by graph in Python: redone for every batch of every epoch, that was most of a fit.

    Graphs holding anything but node-level tensors and ``edge_index`` are collated per batch."""

    def __init__(self, graphs: Sequence[Any]) -> None:
        self.graphs = list(graphs)
        self.batch_cls = require("torch_geometric.data").Batch
        self.all: Any = self.batch_cls.from_data_list(self.graphs) if self.graphs else None
        self.gather = self.all is not None and _gatherable(self.all)

    def __call__(self, index: list[int]) -> Any:
        if not self.gather:
            return self.batch_cls.from_data_list([self.graphs[i] for i in index])
        torch = torch_module()
        cumsum = require("torch_geometric.utils").cumsum
        full, idx = self.all, torch.tensor(index, dtype=torch.long)
        out = self.batch_cls(_base_cls=type(self.graphs[0]))
        out.stores_as(self.graphs[0])
        slices: dict[Any, dict[str, Any]] = {}
        incs: dict[Any, dict[str, Any]] = {}
        counts: dict[str, Any] = {}
        for store in out.node_stores:
            nt, ptr = store._key, full[store._key].ptr
            n = counts[nt] = ptr[idx + 1] - ptr[idx]
            rows = _ranges(ptr[idx], n)
            for key in self.graphs[0][nt].keys():
                if key == "num_nodes":
                    store._num_nodes = n.tolist()
                    store.num_nodes = int(n.sum())
                    continue
                store[key] = full[nt][key][rows]
                slices.setdefault(nt, {})[key] = cumsum(n)
                incs.setdefault(nt, {})[key] = torch.zeros(len(idx), dtype=torch.long)
            store.batch = torch.arange(len(idx)).repeat_interleave(n)
            store.ptr = cumsum(n)
        for store in out.edge_stores:
            et = store._key
            ends = full._slice_dict[et]["edge_index"]
            m = ends[idx + 1] - ends[idx]
            cols = _ranges(ends[idx], m)
            size = torch.stack([counts[et[0]], counts[et[-1]]], dim=1).view(-1, 2, 1)
            inc = torch.cat([torch.zeros(1, 2, 1, dtype=torch.long), size.cumsum(0)[:-1]])
            moved = inc - full._inc_dict[et]["edge_index"][idx]  # each graph's offset: new − old
            graph = torch.arange(len(idx)).repeat_interleave(m)
            store.edge_index = full[et].edge_index[:, cols] + moved[graph, :, 0].T
            slices[et] = {"edge_index": cumsum(m)}
            incs[et] = {"edge_index": inc}
        out._num_graphs, out._slice_dict, out._inc_dict = len(idx), slices, incs
        return out


def _ranges(starts: Any, counts: Any) -> Any:
    """The positions ``starts[i] … starts[i] + counts[i] − 1``, concatenated."""
    torch = torch_module()
    offsets = torch.cumsum(counts, 0) - counts
    return torch.repeat_interleave(starts - offsets, counts) + torch.arange(int(counts.sum()))


def _gatherable(full: Any) -> bool:
    """Whether :class:`_Batches` can gather from ``full``: nothing graph-level, node attributes sliced
    by node (not incremented), edge stores holding only ``edge_index``."""
    torch = torch_module()
    if list(full._global_store.keys()) or any(set(s.keys()) != {"edge_index"} for s in full.edge_stores):
        return False
    for store in full.node_stores:
        if "ptr" not in store:
            return False
        for key in set(store.keys()) - {"num_nodes", "batch", "ptr"}:
            s, inc = full._slice_dict[store._key][key], full._inc_dict[store._key][key]
            if not (torch.is_tensor(s) and s.equal(store.ptr)) or not torch.is_tensor(inc) or bool(inc.any()):
                return False
    return True


def _forward(net: Any, batch: Any) -> Any:
    return net(batch.x_dict, batch.edge_index_dict, batch["agent"].batch)


def predict_logits(net: Any, graphs: Sequence[Any], *, batch_size: int = 256) -> list[np.ndarray]:
    """The logits of each graph's agent nodes (eval mode, no gradients), one array per graph."""
    return _predict(net, _loader(graphs, batch_size, shuffle=False))


def _predict(net: Any, loader: Any) -> list[np.ndarray]:
    torch = torch_module()
    net.eval()
    out: list[np.ndarray] = []
    with torch.inference_mode():
        for batch in loader:
            logits = _forward(net, batch).numpy()
            ptr = batch["agent"].ptr.numpy()
            out.extend(logits[ptr[g] : ptr[g + 1]] for g in range(len(ptr) - 1))
    return out


def validation_aiq(
    logits: Sequence[np.ndarray],
    graphs: Sequence[Any],
    scores: np.ndarray,
    costs: np.ndarray,
    cost_estimate: np.ndarray,
    *,
    temperature: float,
    grid: Sequence[float] = VALIDATION_GRID,
) -> float:
    """AIQ of the router's utility sweep on validation rows (module docstring).

    Args:
        logits: per validation graph, its agents' logits.
        graphs: the validation graphs (``agent.col`` gives each agent's column).
        scores: logged scores (n_val × n_columns); rows with a missing cell are skipped.
        costs: logged costs, same shape.
        cost_estimate: per column, the normalised cost the router would use (train mean ÷ scale).
        temperature: T (the utility is ``T·z − w·ĉ``).
        grid: cost weights ``w`` swept.
    """
    complete = ~(np.isnan(scores).any(axis=1) | np.isnan(costs).any(axis=1))
    rows = np.flatnonzero(complete)
    if len(rows) == 0:
        return float("nan")
    m = scores.shape[1]
    z = np.full((len(rows), m), -np.inf)
    for r, i in enumerate(rows.tolist()):
        cols = graphs[i]["agent"].col.numpy()
        z[r, cols] = logits[i]
    s, c = scores[rows], costs[rows]
    points = []
    for w in grid:
        pick = np.argmax(temperature * z - w * cost_estimate[None, :], axis=1)
        taken = np.arange(len(rows))
        points.append((float(c[taken, pick].mean()), float(s[taken, pick].mean())))
    return M.aiq(points, M.single_model_points(s, c))


def train_kg_net(
    net: Any,
    train_graphs: Sequence[Any],
    val_graphs: Sequence[Any],
    *,
    val_scores: np.ndarray,
    val_costs: np.ndarray,
    cost_estimate: np.ndarray,
    config: KGTrainConfig,
    desc: str = "training kg-gnn",
) -> TrainReport:
    """Train ``net`` in place; it ends with the weights of the epoch with the best validation AIQ
    (ties: lower validation loss). Without validation graphs, all ``config.epochs`` run.

    A progress bar ``desc`` (:mod:`agentroute.progress`) counts the epochs, with the last epoch's
    training loss and validation AIQ."""
    torch = torch_module()
    from agentroute.nn.kl import SoftKLLoss
    from agentroute.progress import fit_bar

    loss_fn = SoftKLLoss(config.cost_lambda, config.temperature)
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loader = _loader(train_graphs, config.batch_size, shuffle=True, seed=config.seed)
    report = TrainReport()
    best_state = copy.deepcopy(net.state_dict())
    start = time.perf_counter()
    with fit_bar(config.epochs, desc) as b:
        _epochs(net, loss_fn, optimiser, loader, val_graphs, val_scores, val_costs, cost_estimate, config,
                report, best_state, b)  # fmt: skip
    report.seconds = time.perf_counter() - start
    return report


def _epochs(net: Any, loss_fn: Any, optimiser: Any, loader: Any, val_graphs: Sequence[Any], val_scores: np.ndarray,
            val_costs: np.ndarray, cost_estimate: np.ndarray, config: KGTrainConfig, report: TrainReport,
            best_state: Any, b: Any) -> None:  # fmt: skip
    """The epochs of :func:`train_kg_net`; ``net`` ends with the kept weights."""
    best: tuple[float, float] = (-np.inf, np.inf)
    since_best = 0
    val_loader = _loader(val_graphs, 256, shuffle=False)  # collated once, read every epoch
    for epoch in range(config.epochs):
        net.train()
        total, count = 0.0, 0
        for batch in loader:
            optimiser.zero_grad()
            agents = batch["agent"]
            loss = loss_fn(_forward(net, batch), agents.score, agents.cost, agents.batch, batch.num_graphs)
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * batch.num_graphs
            count += batch.num_graphs
        report.train_loss.append(total / max(1, count))
        if not val_graphs:
            b.advance(f"loss {report.train_loss[-1]:.4f}")
            best_state = copy.deepcopy(net.state_dict())
            report.best_epoch = epoch
            continue
        logits = _predict(net, val_loader)
        val_loss = _loss_of(loss_fn, logits, val_graphs)
        aiq = validation_aiq(
            logits, val_graphs, val_scores, val_costs, cost_estimate, temperature=config.temperature
        )
        report.val_loss.append(val_loss)
        report.val_aiq.append(aiq)
        b.advance(f"loss {report.train_loss[-1]:.4f}, val {val_loss:.4f}, val AIQ {aiq:.3f}")
        key = (aiq if np.isfinite(aiq) else -np.inf, val_loss)
        if key[0] > best[0] + 1e-9 or (abs(key[0] - best[0]) <= 1e-9 and key[1] < best[1]):
            best, best_state, since_best = key, copy.deepcopy(net.state_dict()), 0
            report.best_epoch = epoch
        else:
            since_best += 1
            if since_best >= config.patience:
                break
    net.load_state_dict(best_state)
    net.eval()


def _loss_of(loss_fn: Any, logits: Sequence[np.ndarray], graphs: Sequence[Any]) -> float:
    torch = torch_module()
    z = torch.from_numpy(np.concatenate(logits)).float()
    score = torch.cat([g["agent"].score for g in graphs])
    cost = torch.cat([g["agent"].cost for g in graphs])
    index = torch.cat(
        [torch.full((len(g["agent"].score),), k, dtype=torch.long) for k, g in enumerate(graphs)]
    )
    with torch.inference_mode():
        return float(loss_fn(z, score, cost, index, len(graphs)))


def prior_logits(
    scores: np.ndarray, costs: np.ndarray, *, cost_lambda: float = 0.0, temperature: float = 0.1
) -> np.ndarray:
    r"""Per column, :math:`\log \bar p_a` with :math:`\bar p_a` the mean soft target
    :math:`p^*(a \mid q)` over the rows where ``a`` was logged (renormalised): how often, and how
    clearly, each agent is among the best. Rows are (queries × columns) with nan for missing cells;
    ``costs`` are normalised.

    >>> prior_logits(np.array([[1.0, 0.0], [1.0, 1.0]]), np.zeros((2, 2)), temperature=1.0).round(3).tolist()
    [-0.485, -0.956]
    """
    observed = ~(np.isnan(scores) | np.isnan(costs))
    u = np.where(
        observed, (np.nan_to_num(scores) - cost_lambda * np.nan_to_num(costs)) / temperature, -np.inf
    )
    u = u - u.max(axis=1, keepdims=True)
    p = np.exp(u)
    p /= p.sum(axis=1, keepdims=True)
    counts = observed.sum(axis=0)
    mean = np.where(counts > 0, np.where(observed, p, 0.0).sum(axis=0) / np.maximum(counts, 1), np.nan)
    mean = np.where(np.isnan(mean), np.nanmean(mean), mean)
    mean = np.maximum(mean / mean.sum(), 1e-12)
    return np.log(mean)


def choose_shrinkage(
    logits: Sequence[np.ndarray],
    graphs: Sequence[Any],
    prior: np.ndarray,
    scores: np.ndarray,
    costs: np.ndarray,
    cost_estimate: np.ndarray,
    *,
    temperature: float,
    grid: Sequence[float] = SHRINKAGE_GRID,
) -> tuple[float, dict[float, float]]:
    """The β of ``grid`` with the best validation AIQ (ties: the smaller β) for the shrunk logits
    ``(1 − β)·z + β·prior[col]``, and the AIQ of every β."""
    aiqs: dict[float, float] = {}
    for beta in grid:
        shrunk = [
            (1 - beta) * z + beta * prior[g["agent"].col.numpy()] for z, g in zip(logits, graphs, strict=True)
        ]
        aiqs[float(beta)] = validation_aiq(
            shrunk, graphs, scores, costs, cost_estimate, temperature=temperature
        )
    finite = {b: a for b, a in aiqs.items() if np.isfinite(a)}
    best = max(finite, key=lambda b: (finite[b], -b)) if finite else 0.0
    return best, aiqs

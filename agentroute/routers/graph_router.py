"""GraphRouter: LLM selection as edge prediction on a query–LLM graph (torch-geometric).

GraphRouter (Feng, Shen & You, ICLR 2025, arXiv 2410.03834; code: ulab-uiuc/GraphRouter
``model/graph_nn.py``) casts routing as predicting the edges of a bipartite graph:

- **Nodes.** One node per training query, features e(q) = its MiniLM embedding, and one per LLM,
  features e(d_m) = the MiniLM embedding of the LLM's text descriptor d_m
  (:func:`~agentroute.kg.agents.card_descriptor` of its model card — tier, price in/out, context
  window, strategy, description — from the cards given to ``fit``, the dataset's, the ``pool``'s,
  the default pool's, else a card inferred from the log's prices; the model name as a last resort).
  Both are aligned to a common width h by linear maps: x⁰_q = A_q e(q), x⁰_m = A_m e(d_m).
- **Edges.** Query → LLM for every logged outcome, with features [utility, cost, effect]: effect =
  the logged score, cost = the logged cost min–max normalised over the training cells, utility =
  α·effect − β·cost (``effect_weight`` α, ``cost_penalty`` β; the paper's scenarios are
  Performance-First (1, 0), Balance (0.5, 0.5) and Cost-First (0.2, 0.8)). Edge features pass
  through ReLU(Linear(3, 3)) first.
- **Encoder.** Two ``GeneralConv`` layers (You et al. 2020's design-space layer:
  x'_i = Σ_{j→i} (W_msg x_j + W_edge e_ji) + x_i), each followed by BatchNorm, ReLU in between:
  x¹ = ReLU(BN(Conv(x⁰))), x² = BN(Conv(x¹)). Messages flow query → LLM, so an LLM's embedding
  summarises the queries it was tried on and how it fared.
- **Decoder.** P(edge q–m) = σ(mean(x⁰_q ⊙ x²_m)): the query's *initial* features against the LLM's
  *encoded* features.
- **Training.** Label 1 on the edge to each query's best-utility LLM, 0 elsewhere; binary
  cross-entropy. Each step draws ``masks_per_step`` (4) random masks: an edge is visible to message
  passing with probability ``edge_mask_rate`` (0.5) and otherwise is an edge to predict; the losses
  are averaged and AdamW (lr 3e-4) takes one step. A seeded ``validation_fraction`` of the training
  queries is held out; the checkpoint kept is the one with the lowest BCE on their edges
  (predicted with training edges visible), and training stops ``patience`` steps after it.

**What differs from the reference code, and why.**

1. No task nodes. The paper concatenates an embedding of the query's *task description* to each
   query node; a deployment does not know the task of a new query (ROUTERS.md §8), so queries carry
   only their own embedding.
2. ``GeneralConv(aggr="mean")`` instead of the default sum. Training sees half of the edges
   (masking), inference all of them: with a sum the LLM embeddings double at inference, with a
   mean they do not; a mean also lets an LLM with a few edges (a new one) be compared with LLMs
   that have thousands.
3. Every LLM tied at a query's best utility is labelled 1. Ties are the rule with 0/1 scores and
   Performance-First weights (every correct model is "best"); the reference ``np.argmax`` labels
   whichever comes first in the column order, which teaches the column order. With all tied
   positives, P(edge) estimates P(m attains the best utility), which for 0/1 scores ranks models as
   P(m correct) does; with graded scores ties are rare and the label is the paper's one-hot.
4. Each mask covers a random subgraph of ``queries_per_step`` training queries rather than the
   whole graph (with a mean aggregation the LLM features it yields estimate the full-graph ones):
   the same number of steps at a fraction of the CPU time. The reference code selects checkpoints
   by the validation macro-F1 of the argmax LLM; with tied positives (3.) that is ill-defined, so
   the validation BCE is used.
5. Inductive training aids, both off in the reference: ``llm_dropout`` hides every edge of an LLM
   in a mask with this probability, so the model also scores LLMs that have no edges (a new LLM,
   zero-shot); ``descriptor_dropout`` blanks an LLM's descriptor features with this probability, so
   that it does not identify the training LLMs by their descriptor alone but reads their edges
   (what a new LLM's few-shot edges carry). On RouterBench, with GPT-4-1106 held out of training,
   ``descriptor_dropout=0.5`` makes 20 logged GPT-4 outcomes lift its predicted score above all but
   one training model (and it is routed to); without it the 10 training LLMs are memorised by
   descriptor. It costs in-distribution quality (validation AIQ 0.821 vs 0.838 on a train split),
   so it is off by default: turn it on when new LLMs are expected.
6. ``attention=True`` switches GeneralConv's additive attention on (messages weighted by a softmax
   over an LLM's incoming edges, summed), which lets an LLM's features depend on *which* queries it
   got right; the reference leaves it off, and so does the default here.
7. Bandit feedback (a memory served by one router: each query logged with one LLM). "Best of the
   logged LLMs" would label every such edge 1, so a query with a single logged edge labels it with
   its utility clipped to [0, 1] (the score, with the default weights): P(edge) then estimates how
   well that LLM does on the query. Edges weigh in the BCE by the table's importance weights
   (:attr:`~agentroute.outcomes.OutcomeTable.weights`: 1/propensity, clipped, normalised per
   column; 1 on a full table). From RouterBench train logged by ε-greedy around the cheapest model
   (ε = 0.5), test AIQ 0.850 against 0.852 trained on the full table
   (``benchmarks/learning_from_memory.py``).

**Inference.** A test query joins the graph as a new node with an edge to every LLM; those edges are
the ones to predict and carry no outcome features, so (as in the reference code, where they are
outside ``edge_can_see``) they take no part in message passing. An LLM's encoded features therefore
depend only on the training edges: they are computed once after training (``llm_hidden_``) and
routing costs one linear map of the query embedding and m dot products.

**New LLMs join inductively, without retraining.** A candidate whose column was not seen in
training is a new LLM node built from its descriptor: with no edges (zero-shot) its encoded features
come from the descriptor alone; :meth:`GraphRouter.add_outcomes` adds a few logged outcomes of new
LLMs as edges (the paper's few-shot setting) and encodes them with the trained weights.

The predicted "score" of the utility rule is the edge probability; the predicted cost is the model's
mean training cost (GraphRouter does not regress costs). Pass the model cards to :meth:`fit` (a
dataset with ``cards()`` provides them) so that training and new LLMs are described alike.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from agentroute._optional import require_installed
from agentroute.errors import ConfigurationError
from agentroute.outcomes import OutcomeTable, agent_column, as_outcome_table, column_agent
from agentroute.progress import fit_bar
from agentroute.routers.base import check_fit_data, check_range, check_rate, import_torch, register
from agentroute.routers.utility import (
    _SWAP,
    QUERY_CHARS,
    UtilityRouter,
    embed_contexts,
    embed_texts,
    load_module_arrays,
    module_arrays,
    validation_split,
)
from agentroute.types import Agent, RouteContext

if TYPE_CHECKING:
    from torch import Tensor

# checked here, imported (seconds) when a network is built, fitted or loaded (graph_router_net)
require_installed("torch", "torch_geometric")

EDGE_FEATURES = ("utility", "cost", "effect")
VALIDATE_EVERY = 5  # steps between validation passes (early stopping counts steps)


def __getattr__(name: str) -> Any:
    if name == "GraphRouterNet":  # the network's old home: importing it imports torch
        from agentroute.routers.graph_router_net import GraphRouterNet

        return GraphRouterNet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@register
class GraphRouter(UtilityRouter):
    """GraphRouter (arXiv 2410.03834): query–LLM graph, GeneralConv encoder, edge prediction.

    Args:
        cost_weight: λ in P(edge) − λ·ĉ/c_scale (the knob).
        hidden: node width h.
        attention: GeneralConv's additive attention (off in the reference).
        lr, weight_decay: AdamW's (paper code: lr 3e-4).
        epochs, patience: at most ``epochs`` optimiser steps; stop ``patience`` steps after the best
            validation BCE.
        masks_per_step: random edge masks averaged per step (reference ``batch_size``: 4).
        queries_per_step: training queries in each mask's subgraph.
        edge_mask_rate: probability that a training edge is visible to message passing (0.5).
        llm_dropout: probability that all edges of an LLM are hidden in a mask (zero-shot training).
        descriptor_dropout: probability that an LLM's descriptor features are blanked in a mask.
        effect_weight, cost_penalty: α, β of the edge utility α·effect − β·cost.
        validation_fraction: training queries held out for checkpoint selection (seeded).
        query_chars: characters of each query's end embedded (:func:`~agentroute.embed.text_tail`);
            ``None`` embeds the whole prompt. Default :data:`~agentroute.routers.utility.QUERY_CHARS`.
        pool: a pool YAML (or ``"default"``) whose model cards describe the LLMs when the training
            data brings none (trajectories from the memory); the default pool and the log's prices
            are the fallbacks.
        seed: seeds initialisation, masks and the split.

    Fitted attributes: ``net_``, ``descriptors_`` (text per column), ``descriptor_sources_`` (per
    column: ``cards``, ``dataset``, ``pool``, ``default pool``, ``log`` or ``name``),
    ``llm_features_`` (m × 384),
    ``llm_hidden_`` (m × h, encoded LLM features), ``cost_range_`` (min, max training cost).
    """

    name = "graph-router"
    inductive = True  # an unseen LLM is scored from its descriptor (its decisions say so)

    def __init__(
        self,
        *,
        cost_weight: float = 0.0,
        hidden: int = 64,
        attention: bool = False,
        lr: float = 3e-4,
        weight_decay: float = 1e-4,
        epochs: int = 1000,
        patience: int = 50,
        masks_per_step: int = 4,
        queries_per_step: int = 512,
        edge_mask_rate: float = 0.5,
        llm_dropout: float = 0.1,
        descriptor_dropout: float = 0.0,
        effect_weight: float = 1.0,
        cost_penalty: float = 0.0,
        validation_fraction: float = 0.2,
        query_chars: int | None = QUERY_CHARS,
        pool: str | None = None,
        seed: int = 0,
    ):
        self.cost_weight = cost_weight
        self.pool = pool
        self.query_chars = query_chars
        self.hidden = hidden
        self.attention = attention
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.patience = patience
        self.masks_per_step = masks_per_step
        self.queries_per_step = queries_per_step
        self.edge_mask_rate = edge_mask_rate
        self.llm_dropout = llm_dropout
        self.descriptor_dropout = descriptor_dropout
        self.effect_weight = effect_weight
        self.cost_penalty = cost_penalty
        self.validation_fraction = validation_fraction
        self.seed = seed

    def _param_checks(self) -> dict[str, Callable[[], None]]:
        checks: dict[str, Callable[[], None]] = {
            key: partial(check_range, self, key, low=1, integer=True)
            for key in ("hidden", "epochs", "patience", "masks_per_step", "queries_per_step")
        }
        for key in ("edge_mask_rate", "llm_dropout", "descriptor_dropout"):
            checks[key] = partial(check_rate, self, key)
        return {
            **super()._param_checks(),
            **checks,
            "lr": partial(check_range, self, "lr", low=0, low_open=True),
            "weight_decay": partial(check_range, self, "weight_decay", low=0),
            "validation_fraction": partial(
                check_range, self, "validation_fraction", low=0, high=1, low_open=True, high_open=True
            ),
            "effect_weight": self._check_utility_weights,
        }

    def _check_utility_weights(self) -> None:
        if self.effect_weight < 0 or self.cost_penalty < 0 or self.effect_weight + self.cost_penalty <= 0:
            raise ConfigurationError(
                f"graph-router: 'effect_weight' and 'cost_penalty' must be ≥ 0 and not both 0 "
                f"(got {self.effect_weight!r}, {self.cost_penalty!r})"
            )

    # -- learning ---------------------------------------------------------------------------------
    def fit(self, data: Any, *, cards: Any = None) -> Self:
        """Learn from logged outcomes (a table, a dataset or trajectories from the memory).

        The LLM nodes are described from their model cards (:func:`~agentroute.kg.agents.training_cards`:
        ``cards`` given here — a mapping, a ModelPool or cards — then the dataset's, the ``pool``
        parameter's, the default pool's, else a card inferred from the log's prices);
        ``descriptor_sources_`` names the source of each column.
        """
        return self._refit_aside(data, cards=cards)  # learns on a fresh instance (routes go on meanwhile)

    def _learn(self, data: Any, *, cards: Any = None) -> None:
        from agentroute.kg.agents import training_cards

        data = check_fit_data(self, data)
        self._fit_cards, sources = training_cards(data, cards=cards, pool=self.pool)
        self.descriptor_sources_ = sources
        try:
            super()._learn(data)
        finally:
            del self._fit_cards

    def _fit_table(self, table: OutcomeTable) -> None:
        torch = import_torch()
        from agentroute.routers.graph_router_net import GraphRouterNet

        costs = np.asarray(table.costs, dtype=float)
        logged_cost = costs[~np.isnan(costs)]
        lo, hi = (float(logged_cost.min()), float(logged_cost.max())) if logged_cost.size else (0.0, 1.0)
        self.cost_range_ = (lo, hi)
        self.descriptors_ = [_descriptor(column, self._fit_cards) for column in self.columns_]
        self.descriptor_sources_ = {
            column: self.descriptor_sources_.get(column_agent(column).model, "name")
            for column in self.columns_
        }
        self.llm_features_ = embed_texts(self.descriptors_).astype(np.float32)
        query_x = torch.from_numpy(embed_texts(table.queries, self.query_chars).astype(np.float32))
        llm_x = torch.from_numpy(self.llm_features_)
        n, m = len(table), len(self.columns_)
        q_idx, m_idx = np.nonzero(~np.isnan(np.asarray(table.scores, dtype=float)))
        edge_cost = np.where(np.isnan(costs), self.cost_mean_[None, :], costs)[q_idx, m_idx]
        edge_attr = torch.from_numpy(self._edge_features(table.scores[q_idx, m_idx], edge_cost))
        label = torch.from_numpy(self._labels(table)[q_idx, m_idx].astype(np.float32))
        cell_weights = getattr(table, "weights", None)  # bandit logs: importance weights per logged cell
        edge_w = torch.from_numpy(
            (np.ones(len(q_idx)) if cell_weights is None else np.asarray(cell_weights)[q_idx, m_idx]).astype(
                np.float32
            )
        )
        rng = np.random.default_rng(self.seed)
        fit_rows, val_rows = validation_split(n, self.validation_fraction, self.seed, scores=table.scores)
        size = min(self.queries_per_step, len(fit_rows))

        def subgraph(rows: np.ndarray, visible: np.ndarray, predict: np.ndarray) -> tuple[Any, ...]:
            """Query nodes ``rows`` (then the LLMs), message edges ``visible``, edges to predict."""
            pos = np.full(n, -1)
            pos[rows] = np.arange(len(rows))

            def index(sel: np.ndarray) -> Tensor:
                return torch.from_numpy(np.vstack([pos[q_idx[sel]], len(rows) + m_idx[sel]]).astype(np.int64))

            return (
                query_x[rows],
                index(visible),
                edge_attr[visible],
                index(predict),
                label[predict],
                edge_w[predict],
            )

        # validation graph (fixed): the edges of ``size`` fit queries visible, validation edges predicted
        seen = np.sort(rng.choice(fit_rows, size=size, replace=False))
        val_graph = subgraph(np.concatenate([seen, val_rows]), np.isin(q_idx, seen), np.isin(q_idx, val_rows))

        with (
            torch.random.fork_rng(devices=[]),
            fit_bar(self.epochs, "graph-router: training", unit="step") as b,
        ):
            torch.manual_seed(self.seed)
            self.net_ = GraphRouterNet(
                query_x.shape[1], llm_x.shape[1], self.hidden, attention=self.attention
            )
            opt = torch.optim.AdamW(self.net_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            bce = torch.nn.functional.binary_cross_entropy
            best, best_state, stale, ran = np.inf, copy.deepcopy(self.net_.state_dict()), 0, 0
            shown_val = ""  # the last validation loss, in the bar
            for step in range(1, self.epochs + 1):
                ran = step
                self.net_.train()
                opt.zero_grad()
                losses = []
                for _ in range(self.masks_per_step):
                    rows = np.sort(rng.choice(fit_rows, size=size, replace=False))
                    sel = np.flatnonzero(np.isin(q_idx, rows))
                    visible = rng.random(len(sel)) < self.edge_mask_rate
                    if self.llm_dropout > 0:
                        visible &= ~(rng.random(m) < self.llm_dropout)[m_idx[sel]]
                    if visible.all():
                        continue
                    qx, vis_index, vis_attr, pred_index, pred_label, pred_w = subgraph(
                        rows, sel[visible], sel[~visible]
                    )
                    lx = llm_x
                    if self.descriptor_dropout > 0:
                        keep = rng.random(m) >= self.descriptor_dropout
                        lx = llm_x * torch.from_numpy(keep.astype(np.float32))[:, None]
                    x0, x = self.net_.encode(qx, lx, vis_index, vis_attr)
                    losses.append(bce(self.net_.decode(x0, x, pred_index), pred_label, weight=pred_w))
                if not losses:
                    break
                step_loss = torch.stack(losses).mean()
                step_loss.backward()
                opt.step()
                if step % VALIDATE_EVERY and step != self.epochs:
                    b.advance(f"loss {float(step_loss.detach()):.4f}{shown_val}")
                    continue
                self.net_.eval()
                with torch.no_grad():
                    qx, vis_index, vis_attr, pred_index, pred_label, pred_w = val_graph
                    x0, x = self.net_.encode(qx, llm_x, vis_index, vis_attr)
                    current = float(bce(self.net_.decode(x0, x, pred_index), pred_label, weight=pred_w))
                shown_val = f", val {current:.4f}"
                b.advance(f"loss {float(step_loss.detach()):.4f}{shown_val}")
                if current < best - 1e-5:
                    best, best_state, stale = current, copy.deepcopy(self.net_.state_dict()), 0
                else:
                    stale += VALIDATE_EVERY
                    if stale >= self.patience:
                        break
            self.net_.load_state_dict(best_state)
        self.net_.eval()
        self.epochs_run_ = ran
        self.validation_loss_ = float(best)
        edge_index = torch.from_numpy(np.vstack([q_idx, n + m_idx]).astype(np.int64))
        with torch.no_grad():  # the LLMs' encoded features with every training edge visible
            _, x = self.net_.encode(query_x, llm_x, edge_index, edge_attr)
        self.llm_hidden_ = x[n:].numpy().astype(np.float32)

    def _edge_features(self, score: np.ndarray, cost: np.ndarray) -> np.ndarray:
        """[utility, normalised cost, effect] per edge."""
        lo, hi = self.cost_range_
        cost_n = np.clip((cost - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(cost)
        utility = self.effect_weight * score - self.cost_penalty * cost_n
        return np.stack([utility, cost_n, score], axis=1).astype(np.float32)

    def _utility_matrix(self, scores: np.ndarray, costs: np.ndarray) -> np.ndarray:
        lo, hi = self.cost_range_
        filled = np.where(np.isnan(costs), self.cost_mean_[None, : costs.shape[1]], costs)
        cost_n = np.clip((filled - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(filled)
        return self.effect_weight * scores - self.cost_penalty * cost_n

    def _labels(self, table: OutcomeTable) -> np.ndarray:
        """1 on the edges to each query's best-utility LLM(s): every LLM tied at the best utility."""
        scores = np.asarray(table.scores, dtype=float)
        utility = np.where(
            np.isnan(scores), -np.inf, self._utility_matrix(scores, np.asarray(table.costs, dtype=float))
        )
        best = utility.max(axis=1, keepdims=True)
        labels = ((utility >= best - 1e-12) & np.isfinite(utility)).astype(float)
        # bandit feedback: a query logged with one LLM says how good that LLM was, not that it was the
        # best; its edge's label is its utility clipped to [0, 1] (the score, by default)
        single = np.sum(~np.isnan(scores), axis=1) < 2
        if single.any():
            soft = np.clip(np.nan_to_num(utility[single], neginf=0.0), 0.0, 1.0)
            labels[single] = soft
        return labels

    # -- prediction -------------------------------------------------------------------------------
    def _edge_probability(self, ctxs: Sequence[RouteContext], llm_hidden: np.ndarray) -> np.ndarray:
        torch = import_torch()
        with torch.no_grad():
            q0 = self.net_.query_align(
                torch.from_numpy(embed_contexts(ctxs, self.query_chars).astype(np.float32))
            )
            logits = (q0 @ torch.from_numpy(llm_hidden).T) / llm_hidden.shape[1]
        return torch.sigmoid(logits).double().numpy()

    def _predict_columns(self, ctxs: Sequence[RouteContext]) -> tuple[np.ndarray, np.ndarray]:
        return self._edge_probability(ctxs, self.llm_hidden_), np.tile(self.cost_mean_, (len(ctxs), 1))

    def _predict_unknown(
        self, ctxs: Sequence[RouteContext], agents: Sequence[Agent], known: dict[str, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        _, cost = super()._predict_unknown(ctxs, agents, known)
        cards: dict[str, Any] = {}
        for ctx in ctxs:
            for key, card in ctx.cards.items():
                cards.setdefault(key, card)
        descriptors = [_descriptor(agent_column(a), cards) for a in agents]
        return self._edge_probability(ctxs, self.encode_llms(descriptors)), cost

    def encode_llms(
        self,
        descriptors: Sequence[str],
        queries: Sequence[str] = (),
        edges: Sequence[tuple[int, int, float, float]] = (),
    ) -> np.ndarray:
        """Encoded features (len(descriptors) × h) of LLM nodes built from their descriptors, with
        optional logged edges ``(query index, descriptor index, score, cost)`` over ``queries`` —
        the trained weights, no retraining."""
        self.check_fitted()
        if not descriptors:
            return np.zeros((0, self.llm_hidden_.shape[1]), dtype=np.float32)
        torch = import_torch()
        llm_x = torch.from_numpy(embed_texts(descriptors).astype(np.float32))
        query_x = torch.from_numpy(
            embed_texts(list(queries), self.query_chars).astype(np.float32).reshape(-1, llm_x.shape[1])
        )
        n = len(query_x)
        if edges:
            q, j, s, c = (np.asarray(v) for v in zip(*edges, strict=True))
            attr = self._edge_features(s.astype(float), c.astype(float))
            edge_index = torch.from_numpy(np.vstack([q, n + j]).astype(np.int64))
            edge_attr = torch.from_numpy(attr)
        else:
            edge_index = torch.zeros((2, 0), dtype=torch.int64)
            edge_attr = torch.zeros((0, len(EDGE_FEATURES)), dtype=torch.float32)
        with torch.no_grad():
            _, x = self.net_.encode(query_x, llm_x, edge_index, edge_attr)
        return x[n:].numpy().astype(np.float32)

    def add_outcomes(self, data: Any, *, cards: Mapping[str, Any] | None = None) -> GraphRouter:
        """Add LLMs that were not in training from a few logged outcomes (the paper's few-shot
        setting): each new column of ``data`` becomes an LLM node whose edges are its logged
        outcomes, encoded with the trained weights. Columns already known are left as they are.
        Returns ``self``.
        """
        self.check_fitted()
        table = as_outcome_table(data)
        new = [j for j, column in enumerate(table.models) if column not in self.columns_]
        if not new:
            return self
        if cards is None and callable(getattr(data, "cards", None)):
            cards = data.cards()
        descriptors = [_descriptor(table.models[j], dict(cards or {})) for j in new]
        means = [_mean(table.scores[:, j]) for j in new]
        cost_means = [_mean(table.costs[:, j]) for j in new]
        edges = [
            (i, k, float(table.scores[i, j]), float(np.nan_to_num(table.costs[i, j], nan=cost_means[k])))
            for k, j in enumerate(new)
            for i in range(len(table))
            if not np.isnan(table.scores[i, j])
        ]
        if not edges:
            raise ConfigurationError(
                f"graph-router: no logged outcome for the new columns {[table.models[j] for j in new]}"
            )
        now = self._view()  # one version of the state; the new columns are swapped in together
        hidden = now.encode_llms(descriptors, table.queries, edges)
        grown = {
            "columns_": [*now.columns_, *(table.models[j] for j in new)],
            "descriptors_": [*now.descriptors_, *descriptors],
            "llm_features_": np.vstack([now.llm_features_, embed_texts(descriptors).astype(np.float32)]),
            "llm_hidden_": np.vstack([now.llm_hidden_, hidden]),
            "score_mean_": np.concatenate([now.score_mean_, means]),
            "cost_mean_": np.concatenate([now.cost_mean_, cost_means]),
        }
        with _SWAP:
            if self.__dict__.get("columns_") is not now.columns_:
                raise ConfigurationError(
                    "graph-router: the router was refitted while add_outcomes encoded the new columns; "
                    "call add_outcomes again"
                )
            self.__dict__.update(grown)
        return self

    def fit_summary(self) -> str:
        """Which source described each training agent (recipe, cards, dataset, pool, default pool, log)."""
        from agentroute.kg.agents import descriptor_summary

        self.check_fitted()
        return descriptor_summary(
            self.name, len(self.columns_), dict(getattr(self, "descriptor_sources_", {}))
        )

    # -- persistence ------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        return {
            **super().get_state(),
            "descriptors": list(self.descriptors_),
            "descriptor_sources": dict(getattr(self, "descriptor_sources_", {})),
            "cost_range": list(self.cost_range_),
            "epochs_run": self.epochs_run_,
            "validation_loss": self.validation_loss_,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.descriptors_ = [str(d) for d in state["descriptors"]]
        self.descriptor_sources_ = dict(state.get("descriptor_sources", {}))
        lo, hi = state["cost_range"]
        self.cost_range_ = (float(lo), float(hi))
        self.epochs_run_ = int(state["epochs_run"])
        self.validation_loss_ = float(state["validation_loss"])

    def get_arrays(self) -> dict[str, np.ndarray]:
        return {
            **super().get_arrays(),
            "llm_features": self.llm_features_,
            "llm_hidden": self.llm_hidden_,
            **module_arrays(self.net_),
        }

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        super().set_arrays(arrays)
        self.llm_features_ = np.asarray(arrays["llm_features"], dtype=np.float32)
        self.llm_hidden_ = np.asarray(arrays["llm_hidden"], dtype=np.float32)
        from agentroute.routers.graph_router_net import GraphRouterNet

        query_w = np.asarray(arrays["net.query_align.weight"])
        llm_w = np.asarray(arrays["net.llm_align.weight"])
        attention = "net.conv1.att_msg" in arrays
        self.net_ = GraphRouterNet(query_w.shape[1], llm_w.shape[1], query_w.shape[0], attention=attention)
        load_module_arrays(self.net_, arrays)


def _mean(values: np.ndarray) -> float:
    logged = values[~np.isnan(values)]
    return float(logged.mean()) if logged.size else 0.0


def _descriptor(column: str, cards: Mapping[str, Any]) -> str:
    """The text of an LLM node: its card's descriptor (:func:`~agentroute.kg.agents.card_descriptor`,
    for the column's strategy), else its name."""
    from agentroute.kg.agents import card_descriptor

    agent = column_agent(column)
    card = cards.get(agent.model)
    if card is not None:
        return card_descriptor(card, agent.strategy)
    return column

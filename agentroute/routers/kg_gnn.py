"""AgentRouter: a knowledge-graph-guided heterogeneous GNN router with weighted collaboration.

"A Knowledge-Graph-Guided LLM Router for Collaborative Multi-Agent QA" (ROUTERS.md §2). Each query
becomes a graph of query, entity, relation and agent nodes (:mod:`agentroute.kg`); a type-aware
GNN scores every (query, agent) pair (:class:`~agentroute.nn.KGRouterNet`); training minimises
KL(p* ‖ p_θ) with p* = softmax((score − λ·ĉ)/T) from the logged outcomes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, ClassVar, Literal, Self

import numpy as np

from agentroute._optional import require_installed
from agentroute.embed import Embedder, context_text
from agentroute.errors import ConfigurationError
from agentroute.kg.agents import agent_descriptor, descriptor_summary
from agentroute.kg.extract import EntityExtractor, KGExtractor, QueryKG
from agentroute.kg.graph import METADATA, GraphBuilder
from agentroute.outcomes import OutcomeTable, column_agent, find_column
from agentroute.progress import phase
from agentroute.routers.base import check_fit_data, check_range, check_rate, require_candidates
from agentroute.routers.prices import price_factors
from agentroute.routers.utility import (
    UtilityRouter,
    load_module_arrays,
    module_arrays,
    repriced_note,
    shared_candidates,
    utilities,
)
from agentroute.types import Agent, Decision, RouteContext

__all__ = ["KGRouter"]


class KGRouter(UtilityRouter):
    r"""AgentRouter (``kg-gnn``): route a query by a GNN over its knowledge graph and the agents.

    **Graph.** Per query: one ``query`` node, the ``entity`` and ``relation`` nodes of its
    knowledge graph (deterministic extractor, or ``ner``), and one ``agent`` node per candidate
    (model × strategy), with edges query–entity, entity–relation (src/tgt), query–agent and their
    reverses. Node features are MiniLM embeddings (cached on disk) of the query's last
    ``query_chars`` characters, of the entity/relation texts and of each agent's descriptor. A
    query with no entities keeps only its query–agent edges and still routes.

    **Model.** ``encoder="sage"`` — 2 layers of ``HeteroConv(SAGEConv)``, hidden 128 — is the
    default, chosen over ``HGTConv`` (same width, depth, residual and head; 4 heads) by measurement
    on the RouterBench subset (``python benchmarks/kg_gnn.py encoders``, 2-core CPU, seed 0):
    validation AIQ 0.839 vs 0.833 (test 0.847 vs 0.845, within the ±0.010 noise), 1.4 vs 3.1 s per
    training epoch over 1,874 query graphs, and a routing p50 of 2.6 vs 6.5 ms. HGT's attention
    buys nothing on graphs this small (a query node, ≤ 16 entities, ≤ 16 relations, the agents)
    and costs twice the time. The score head gives
    :math:`z_{q,a}` and :math:`p_\theta(a\mid q,G) = \mathrm{softmax}_a z_{q,a}`.

    **Training.** :math:`\mathrm{KL}(p^*\,\|\,p_\theta)`,
    :math:`p^* = \mathrm{softmax}_a((s_{q,a} - \lambda\,\tilde c_{q,a})/T)` over the agents logged on
    the query, with :math:`\tilde c = c / \texttt{cost\_scale\_}` and ``cost_scale_`` the dearest
    agent's mean train cost (so λ is unit-free: λ = 1 trades one unit of score for that cost).
    Mini-batches of query graphs (torch-geometric ``DataLoader``), Adam, seeded; early stopping on
    the AIQ of a validation split carved from the training data (``val_fraction``), computed with
    :func:`agentroute.eval.metrics.aiq` (see :mod:`agentroute.kg.trainer`).

    **Shrinkage.** Per-query estimates are noisy, and a plain argmax over them falls short of the
    best single model (ROUTERS.md §8). The logits are therefore shrunk toward each agent's prior,
    :math:`z' = (1-\beta)\,z + \beta \log \bar p_a` with :math:`\bar p_a` the mean training
    target :math:`p^*(a\mid q)` — i.e. :math:`p \propto p_\theta^{1-\beta}\,\bar p^{\beta}`, a geometric
    mixture of the GNN and the marginal. β is chosen on the validation AIQ (``shrinkage=None``) or
    fixed; a new agent gets the training agents' mean prior. Below, :math:`z` means :math:`z'`.

    **Routing.** Since :math:`T z_{q,a}` estimates :math:`s_{q,a} - \lambda\tilde c_{q,a}` up to a
    per-query constant, the router's utility is :math:`u_a = T z_{q,a} - w\,\hat c_a/\texttt{cost\_scale\_}`
    with ``w = cost_weight`` (the knob swept by evaluation) and :math:`\hat c_a` the predicted cost
    of :class:`~agentroute.routers.utility.UtilityRouter` (the agent's mean train cost; card-calibrated
    for a new agent). Top-1 by default (ties: the cheaper). With ``collaborate_k > 1`` (and/or
    ``collaborate_mass``) the decision names several agents in order of
    :math:`\mathrm{softmax}(u/T)`, with those probabilities (renormalised) as weights: at most
    ``collaborate_k``, stopping once their probability reaches ``collaborate_mass``, and only while
    the total of their ``ctx.costs`` fits ``ctx.remaining["usd"]`` (when given). The dispatcher
    runs them concurrently and combines the answers with :func:`agentroute.aggregate.weighted_vote`.

    **Agents are inductive.** An agent node has no learned parameters of its own: a model never seen
    in training is scored from its descriptor alone, and its decision says so in ``why`` ("unseen
    in training; scored from its descriptor"). Descriptors come from the model cards
    (:func:`~agentroute.kg.agents.card_descriptor`: tier, price in/out, context window, strategy,
    description) — in training the cards given to ``fit``, a dataset's, the ``pool``'s, the default
    pool's, else a card inferred from the log's prices, so trajectories from the memory train with
    no recipe (``descriptor_sources_`` names the source of each); at routing time a trained agent
    keeps its training descriptor and a new one is described by ``ctx.cards``. ``descriptors`` (a
    recipe's free text) override the cards. An agent with none raises
    :class:`~agentroute.errors.ConfigurationError` naming it.

    Args:
        encoder: ``"sage"`` (HeteroConv of SAGEConv) or ``"hgt"`` (HGTConv).
        hidden_channels: GNN width (default 128).
        num_layers: GNN layers (default 2).
        heads: attention heads for ``"hgt"`` (default 4).
        dropout: encoder dropout (default 0.1).
        temperature: T of the soft target (default 0.1).
        cost_lambda: λ of the soft target (default 0.0: the target ranks by score; cost enters at
            routing through ``cost_weight``).
        cost_weight: the routing knob ``w`` (default 0.0).
        collaborate_k: most agents per decision (default 1: top-1).
        collaborate_mass: cumulative-probability cut-off for collaboration (default ``None``).
        epochs: most training epochs (default 40).
        patience: early-stopping patience in epochs (default 6).
        batch_size: query graphs per mini-batch (default 64).
        lr: Adam learning rate (default 2e-3).
        weight_decay: Adam weight decay (default 1e-4).
        val_fraction: share of the training rows held out for early stopping (default 0.15).
        shrinkage: β of the shrinkage toward the agents' prior; default ``None``: chosen on the
            validation split's AIQ among 0, 0.1, 0.2, 0.3, 0.5.
        max_entities: entities kept per query (default 16).
        max_relations: relations kept per query (default 16).
        query_chars: characters of the query (its tail) embedded for the query node (default 1000).
        descriptors: free-text descriptions by model id (or ``model:strategy`` column).
        pool: a pool YAML (or ``"default"``) whose model cards describe the agents when the training
            data brings none (trajectories from the memory); the default pool and the log's
            prices are the fallbacks.
        embedder: a sentence-transformers model path or id, or any
            :class:`~agentroute.embed.Embedder` (an object is not saved); default the cached MiniLM.
        ner: an :class:`~agentroute.kg.extract.EntityExtractor` replacing the rules (not saved:
            a loaded router uses the rules unless given one again).
        seed: seeds initialisation, the validation split and batch order.
    """

    name: ClassVar[str] = "kg-gnn"
    inductive: ClassVar[bool] = True  # an unseen agent is scored from its descriptor (its decisions say so)

    def __init__(
        self,
        *,
        encoder: Literal["sage", "hgt"] = "sage",
        hidden_channels: int = 128,
        num_layers: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
        temperature: float = 0.1,
        cost_lambda: float = 0.0,
        cost_weight: float = 0.0,
        collaborate_k: int = 1,
        collaborate_mass: float | None = None,
        epochs: int = 40,
        patience: int = 6,
        batch_size: int = 64,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        val_fraction: float = 0.15,
        shrinkage: float | None = None,
        max_entities: int = 16,
        max_relations: int = 16,
        query_chars: int = 1000,
        descriptors: dict[str, str] | None = None,
        pool: str | None = None,
        embedder: str | Embedder | None = None,
        ner: EntityExtractor | None = None,
        seed: int = 0,
    ):
        require_installed(
            "torch", "torch_geometric"
        )  # its graph network needs them: said when built, not at fit
        self.encoder = encoder
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.heads = heads
        self.dropout = dropout
        self.temperature = temperature
        self.cost_lambda = cost_lambda
        self.cost_weight = cost_weight
        self.collaborate_k = collaborate_k
        self.collaborate_mass = collaborate_mass
        self.epochs = epochs
        self.patience = patience
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.val_fraction = val_fraction
        self.shrinkage = shrinkage
        self.max_entities = max_entities
        self.max_relations = max_relations
        self.query_chars = query_chars
        self.descriptors = descriptors
        self.pool = pool
        self.embedder = embedder
        self.ner = ner
        self.seed = seed

    # -- building blocks ------------------------------------------------------------------------
    def _builder(self) -> GraphBuilder:
        """The graph builder for the current parameters (kept while they do not change)."""
        key = (id(self.embedder), self.embedder if isinstance(self.embedder, str) else None, id(self.ner),
               self.max_entities, self.max_relations, self.query_chars)  # fmt: skip
        cached = getattr(self, "_builder_cache", None)
        if cached is None or cached[0] != key:
            from agentroute.embed import SentenceEmbedder, default_embedder

            embedder: Embedder
            if isinstance(self.embedder, str) and self.embedder:
                embedder = SentenceEmbedder(self.embedder)
            elif self.embedder is not None and not isinstance(self.embedder, str):
                embedder = self.embedder
            else:
                embedder = default_embedder()
            extractor = KGExtractor(
                self.ner, max_entities=self.max_entities, max_relations=self.max_relations
            )
            cached = (key, GraphBuilder(embedder, extractor, query_chars=self.query_chars))
            self._builder_cache = cached
        return cached[1]

    def _make_net(self, in_channels: int) -> Any:
        from agentroute.nn import KGRouterNet

        return KGRouterNet(
            in_channels,
            self.hidden_channels,
            self.num_layers,
            metadata=METADATA,
            encoder=self.encoder,
            heads=self.heads,
            dropout=self.dropout,
        )

    # -- fit ------------------------------------------------------------------------------------
    def fit(self, data: Any, *, cards: Any = None) -> Self:
        """Learn from an :class:`~agentroute.outcomes.OutcomeTable`, a dataset (``.train``; its
        ``cards()`` describe the agents) or trajectories (e.g. from the SQL memory).

        Agents are described from their model cards (:func:`~agentroute.kg.agents.training_cards`:
        ``cards`` given here — a mapping, a ModelPool or cards — then the dataset's, the ``pool``
        parameter's, the default pool's, else a card inferred from the log); ``descriptors`` (a
        recipe) override them. ``descriptor_sources_`` says which source described each column.
        """
        from agentroute.kg.agents import training_cards

        data = check_fit_data(self, data)
        self._fit_cards, self._card_sources = training_cards(data, cards=cards, pool=self.pool)
        try:
            return super().fit(data)
        finally:
            del self._fit_cards, self._card_sources

    def _param_checks(self) -> dict[str, Callable[[], None]]:
        def encoder() -> None:
            if self.encoder not in ("sage", "hgt"):
                raise ConfigurationError(f"kg-gnn: 'encoder' must be 'sage' or 'hgt' (got {self.encoder!r})")

        def heads() -> None:
            check_range(
                self, "heads", low=1, integer=True
            )  # first: hidden_channels % 0 raised ZeroDivisionError
            if self.encoder == "hgt" and self.hidden_channels % self.heads:
                raise ConfigurationError(
                    f"kg-gnn: 'hidden_channels' (got {self.hidden_channels}) must be divisible by 'heads' (got {self.heads})"
                )

        checks: dict[str, Callable[[], None]] = {
            key: partial(check_range, self, key, low=1, integer=True)
            for key in (
                "hidden_channels",
                "num_layers",
                "collaborate_k",
                "epochs",
                "batch_size",
                "max_entities",
                "max_relations",
            )
        }
        return {
            **super()._param_checks(),
            **checks,
            "encoder": encoder,
            "heads": heads,
            "patience": partial(check_range, self, "patience", low=0, integer=True),
            "dropout": partial(check_rate, self, "dropout"),
            "temperature": partial(check_range, self, "temperature", low=0, low_open=True),
            "lr": partial(check_range, self, "lr", low=0, low_open=True),
            "weight_decay": partial(check_range, self, "weight_decay", low=0),
            "cost_lambda": partial(check_range, self, "cost_lambda", low=0),
            "collaborate_mass": partial(
                check_range, self, "collaborate_mass", low=0, high=1, low_open=True, optional=True
            ),
            "val_fraction": partial(check_range, self, "val_fraction", low=0, high=1, high_open=True),
            "shrinkage": partial(check_range, self, "shrinkage", low=0, high=1, optional=True),
        }

    def _fit_table(self, table: OutcomeTable) -> None:
        from agentroute.kg.trainer import (
            KGTrainConfig,
            choose_shrinkage,
            predict_logits,
            prior_logits,
            train_kg_net,
        )

        config = KGTrainConfig(
            epochs=self.epochs,
            patience=self.patience,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            temperature=self.temperature,
            cost_lambda=self.cost_lambda,
            seed=self.seed,
        )
        descriptors = {
            col: agent_descriptor(column_agent(col), descriptors=self.descriptors, cards=self._fit_cards)
            for col in table.models
        }
        self.descriptor_sources_ = {
            col: _descriptor_source(col, self.descriptors, self._card_sources) for col in table.models
        }
        observed = ~(np.isnan(table.scores) | np.isnan(table.costs))
        rows = np.flatnonzero(observed.any(axis=1))
        if len(rows) == 0:
            raise ConfigurationError(
                "kg-gnn: the outcome table has no logged (score, cost) cell to learn from"
            )
        order = np.random.default_rng(self.seed).permutation(rows)
        n_val = int(round(self.val_fraction * len(order))) if self.val_fraction * len(order) >= 5 else 0
        val_rows, train_rows = np.sort(order[:n_val]), np.sort(order[n_val:])

        torch = _torch()
        torch.manual_seed(self.seed)
        builder = self._builder()
        with phase(f"kg-gnn: building {len(rows)} query graphs"):
            graphs = self._training_graphs(builder, table, observed, descriptors)
        train_mean = np.nanmean(np.where(observed[train_rows], table.costs[train_rows], np.nan), axis=0)
        net = self._make_net(builder.embedder.dim)
        report = train_kg_net(
            net,
            [graphs[i] for i in train_rows],
            [graphs[i] for i in val_rows],
            val_scores=table.scores[val_rows],
            val_costs=table.costs[val_rows],
            cost_estimate=np.nan_to_num(train_mean / self.cost_scale_, nan=np.inf),
            config=config,
            desc=f"kg-gnn: training on {len(train_rows)} graphs",
        )
        train_table = table.rows(train_rows)
        prior = prior_logits(
            train_table.scores,
            train_table.costs / self.cost_scale_,
            cost_lambda=self.cost_lambda,
            temperature=self.temperature,
        )
        shrinkage = float(self.shrinkage) if self.shrinkage is not None else 0.0
        tried: dict[float, float] = {}
        if self.shrinkage is None and len(val_rows):
            val_graphs = [graphs[i] for i in val_rows]
            shrinkage, tried = choose_shrinkage(
                predict_logits(net, val_graphs),
                val_graphs,
                prior,
                table.scores[val_rows],
                table.costs[val_rows],
                np.nan_to_num(train_mean / self.cost_scale_, nan=np.inf),
                temperature=self.temperature,
            )
        self.net_ = net
        self.in_channels_ = int(builder.embedder.dim)
        self.descriptors_ = descriptors
        self.prior_ = prior
        self.shrinkage_ = shrinkage
        self.train_report_ = {
            **report.as_dict(),
            "shrinkage_val_aiq": {str(b): round(a, 6) for b, a in tried.items()},
        }

    def _training_graphs(
        self, builder: GraphBuilder, table: OutcomeTable, observed: np.ndarray, descriptors: dict[str, str]
    ) -> dict[int, Any]:
        torch = _torch()
        rows = [i for i in range(len(table)) if observed[i].any()]
        cols = {i: np.flatnonzero(observed[i]) for i in rows}
        built = builder.build(
            [table.queries[i] for i in rows], [[descriptors[table.models[j]] for j in cols[i]] for i in rows]
        )
        graphs = {}
        for i, graph in zip(rows, built, strict=True):
            graph["agent"].score = torch.tensor(table.scores[i, cols[i]], dtype=torch.float32)
            graph["agent"].cost = torch.tensor(
                table.costs[i, cols[i]] / self.cost_scale_, dtype=torch.float32
            )
            graph["agent"].col = torch.tensor(cols[i], dtype=torch.long)
            graphs[i] = graph
        return graphs

    # -- inference ------------------------------------------------------------------------------
    def _descriptor_texts(self, ctx: RouteContext, agents: Sequence[Agent]) -> list[str]:
        return [
            agent_descriptor(a, descriptors=self.descriptors, cards=ctx.cards, fitted=self.descriptors_)
            for a in agents
        ]

    def estimates(
        self, ctxs: Sequence[RouteContext], agents: Sequence[Agent] | None = None
    ) -> tuple[np.ndarray, list[QueryKG]]:
        """``T·z`` (n × k) of the k ``agents`` (default: the contexts' shared candidates) on each
        context — an estimate of score − λ·ĉ up to a per-query constant — and each query's
        knowledge graph. Every agent is scored from its descriptor, seen in training or not."""
        self.check_fitted()
        agents = list(agents) if agents is not None else shared_candidates(ctxs, self.name)
        torch = _torch()
        builder = self._builder()
        texts = [context_text(c) for c in ctxs]
        kgs = [builder.extractor(t) for t in texts]
        self.net_.eval()
        if len(ctxs) == 1:  # the routing fast path: plain tensor dicts, no HeteroData, no batching
            x_dict, edge_index_dict = builder.tensors(kgs[0], self._descriptor_texts(ctxs[0], agents))
            with torch.inference_mode():
                z = self.net_(x_dict, edge_index_dict, torch.zeros(len(agents), dtype=torch.long))
            logits = z.numpy()[None, :]
        else:
            from agentroute.kg.trainer import predict_logits

            graphs = builder.build(texts, [self._descriptor_texts(c, agents) for c in ctxs], kgs=kgs)
            logits = np.stack(predict_logits(self.net_, graphs))
        return self.temperature * self._shrink(logits.astype(float), agents), kgs

    def _shrink(self, logits: np.ndarray, agents: Sequence[Agent]) -> np.ndarray:
        """``(1 − β)·z + β·log p̄``: the GNN's logits shrunk toward each agent's prior (a new agent
        gets the mean prior of the training agents)."""
        beta = self.shrinkage_
        if beta == 0:
            return logits
        fallback = float(np.mean(self.prior_))
        prior = np.array(
            [self.prior_[j] if (j := find_column(a, self.columns_)) is not None else fallback for a in agents]
        )
        return (1 - beta) * logits + beta * prior[None, :]

    def _predict_columns(self, ctxs: Sequence[RouteContext]) -> tuple[np.ndarray, np.ndarray]:
        score, _ = self.estimates(ctxs, [column_agent(c) for c in self.columns_])
        return score, np.broadcast_to(self.cost_mean_, score.shape).copy()

    def predict(self, ctxs: Sequence[RouteContext]) -> tuple[np.ndarray, np.ndarray]:
        """``(score, cost)``, each n × k for the k candidates the contexts share: ``T·z`` from the
        GNN for every candidate (new agents included, from their descriptors), and the predicted
        cost of :class:`~agentroute.routers.utility.UtilityRouter` (mean train cost; card-calibrated
        for new agents). The decision at λ = ``cost_weight`` is ``choose(score, cost)``."""
        self.check_fitted()
        self = self._view()  # one version of the state while another thread may refit
        agents = shared_candidates(ctxs, self.name)
        score, _ = self.estimates(ctxs, agents)
        return score, self._cost_matrix(ctxs, agents)

    def _cost_matrix(self, ctxs: Sequence[RouteContext], agents: Sequence[Agent]) -> np.ndarray:
        known = {c: j for j, c in enumerate(self.columns_)}
        cost = np.empty((len(ctxs), len(agents)))
        unseen = []
        for j, agent in enumerate(agents):
            col = find_column(agent, known)
            if col is None:
                unseen.append(j)
            else:
                cost[:, j] = self.cost_mean_[col] * price_factors(self.prices, ctxs, [agent])[:, 0]
        if unseen:
            _, c = self._predict_unknown(ctxs, [agents[j] for j in unseen], known)
            cost[:, unseen] = c
        return cost

    def route(self, ctx: RouteContext) -> Decision:
        self.check_fitted()
        require_candidates(self, ctx)
        self = self._view()  # one version of the state for the whole decision
        agents = list(ctx.candidates)
        score, kgs = self.estimates([ctx], agents)
        cost = self._cost_matrix([ctx], agents)
        utility = utilities(score, cost, self.cost_weight, self.cost_scale_)[0]
        top = int(self.choose(score, cost, names=[a.key for a in agents])[0])
        prob = _softmax(utility / self.temperature)
        chosen = self._collaborators(ctx, top, utility, prob)
        weights = prob[chosen] / prob[chosen].sum()
        keys = [a.key for a in agents]
        kg = kgs[0]
        why = "top-1 of p_θ" if len(chosen) == 1 else f"top-{len(chosen)} of p_θ for a weighted vote"
        unseen = [a.key for a in agents if find_column(a, self.columns_) is None]
        new_chosen = [agents[i].key for i in chosen if agents[i].key in unseen]
        if new_chosen:
            why += f"; {', '.join(new_chosen)} unseen in training: scored from its descriptor"
        why += "".join(repriced_note(self, ctx, agents[i]) for i in chosen if agents[i].key not in unseen)
        return Decision(
            agents=[agents[i] for i in chosen],
            weights=[float(w) for w in weights],
            router=self.name,
            scores={k: float(u) for k, u in zip(keys, utility, strict=True)},
            evidence={
                "p": {k: float(p) for k, p in zip(keys, prob, strict=True)},
                "entities": [e.text for e in kg.entities],
                "triples": [list(t) for t in kg.triples()],
                "unseen_in_training": unseen,
            },
            why=why.replace("; ", f" (λ={self.cost_weight:g}); ", 1)
            if "; " in why
            else f"{why} (λ={self.cost_weight:g})",
        )

    def _collaborators(self, ctx: RouteContext, top: int, utility: np.ndarray, prob: np.ndarray) -> list[int]:
        chosen = [top]
        if self.collaborate_k <= 1:
            return chosen
        budget = ctx.remaining.get("usd")
        spent, mass = ctx.cost_of(top), float(prob[top])
        for i in (int(j) for j in np.argsort(-utility, kind="stable")):
            if len(chosen) >= self.collaborate_k:
                break
            if self.collaborate_mass is not None and mass >= self.collaborate_mass - 1e-12:
                break
            if i == top or not np.isfinite(utility[i]):
                continue
            if budget is not None and spent + ctx.cost_of(i) > budget + 1e-12:
                continue  # the budget limits k: a dearer agent does not fit, a cheaper one may
            chosen.append(i)
            spent += ctx.cost_of(i)
            mass += float(prob[i])
        return chosen

    def fit_summary(self) -> str:
        """Which source described each training agent (recipe, cards, dataset, pool, default pool, log)."""
        self.check_fitted()
        return descriptor_summary(
            self.name, len(self.columns_), dict(getattr(self, "descriptor_sources_", {}))
        )

    # -- persistence ----------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        self.check_fitted()
        return {
            **super().get_state(),
            "in_channels": self.in_channels_,
            "descriptors": self.descriptors_,
            "descriptor_sources": getattr(self, "descriptor_sources_", {}),
            "shrinkage": self.shrinkage_,
            "train": getattr(self, "train_report_", {}),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.in_channels_ = int(state["in_channels"])
        self.descriptors_ = dict(state["descriptors"])
        self.descriptor_sources_ = dict(state.get("descriptor_sources", {}))
        self.shrinkage_ = float(state["shrinkage"])
        self.train_report_ = dict(state.get("train", {}))

    def get_arrays(self) -> dict[str, np.ndarray]:
        return {**super().get_arrays(), "prior": np.asarray(self.prior_), **module_arrays(self.net_, "net.")}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        super().set_arrays(arrays)
        self.prior_ = np.asarray(arrays["prior"], dtype=float)
        self.net_ = self._make_net(self.in_channels_)
        load_module_arrays(self.net_, arrays, "net.")


def _torch() -> Any:
    from agentroute.routers.base import import_torch

    return import_torch()


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - np.max(x))
    return e / e.sum()


def _descriptor_source(column: str, descriptors: Mapping[str, str] | None, sources: Mapping[str, str]) -> str:
    """``"recipe"`` when the ``descriptors`` parameter describes the column, else its card's source."""
    model = column_agent(column).model
    if descriptors and (descriptors.get(column) or descriptors.get(model)):
        return "recipe"
    return f"card ({sources[model]})" if model in sources else "none"

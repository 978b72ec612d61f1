"""Per-query heterogeneous graphs (torch-geometric ``HeteroData``) with embedded node features.

Schema (ROUTERS.md §2): node types ``query`` (one per graph), ``entity``, ``relation`` and
``agent``; edge types query –mentions→ entity, entity –src→ relation –tgt→ entity (a triple
h–r–t), query –offers→ agent, and the reverse of each (``rev_…``). Every graph carries every edge
type (empty where the query has no entities), so a query with no entities degrades to its
query–agent edges and still routes. Node features are sentence embeddings (MiniLM, 384-d, cached
on disk by :mod:`agentroute.embed`) of the node's text: the query (its last ``query_chars``
characters from a word on, :func:`agentroute.embed.text_tail`: MiniLM reads 256 word pieces and
prompts put the question last), the entity or relation text, the agent's descriptor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from agentroute._optional import require, torch_module
from agentroute.embed import Embedder, default_embedder, text_tail
from agentroute.errors import ConfigurationError
from agentroute.kg.extract import KGExtractor, QueryKG

__all__ = [
    "EDGE_TYPES",
    "FORWARD_EDGE_TYPES",
    "METADATA",
    "NODE_TYPES",
    "GraphBuilder",
    "reverse",
]

EdgeType = tuple[str, str, str]

NODE_TYPES: tuple[str, ...] = ("query", "entity", "relation", "agent")
QUERY_ENTITY: EdgeType = ("query", "mentions", "entity")
ENTITY_RELATION: EdgeType = ("entity", "src", "relation")
RELATION_ENTITY: EdgeType = ("relation", "tgt", "entity")
QUERY_AGENT: EdgeType = ("query", "offers", "agent")
FORWARD_EDGE_TYPES: tuple[EdgeType, ...] = (QUERY_ENTITY, ENTITY_RELATION, RELATION_ENTITY, QUERY_AGENT)


def reverse(edge_type: EdgeType) -> EdgeType:
    """The reverse edge type, named as torch-geometric's ``ToUndirected`` names it.

    >>> reverse(("query", "offers", "agent"))
    ('agent', 'rev_offers', 'query')
    """
    src, rel, dst = edge_type
    return (dst, f"rev_{rel}", src)


EDGE_TYPES: tuple[EdgeType, ...] = FORWARD_EDGE_TYPES + tuple(reverse(e) for e in FORWARD_EDGE_TYPES)
#: ``(node_types, edge_types)`` as heterogeneous layers take it.
METADATA: tuple[list[str], list[EdgeType]] = (list(NODE_TYPES), list(EDGE_TYPES))


class GraphBuilder:
    """Builds the :class:`~torch_geometric.data.HeteroData` graph of each query with its agents.

    Args:
        embedder: any :class:`~agentroute.embed.Embedder`; default the cached MiniLM
            (:func:`~agentroute.embed.default_embedder`).
        extractor: the entity/relation extractor; default :class:`~agentroute.kg.extract.KGExtractor`.
        query_chars: characters of the query embedded for the query node (its tail; default 1000).

    Each graph holds ``graph["agent"].x`` in the order of the agent texts given.
    """

    def __init__(
        self,
        embedder: Embedder | None = None,
        extractor: KGExtractor | None = None,
        *,
        query_chars: int = 1000,
    ):
        self._embedder = embedder
        self.extractor = extractor or KGExtractor()
        self.query_chars = query_chars

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = default_embedder()
        return self._embedder

    def texts(self, kg: QueryKG) -> list[str]:
        """Every node text of a query graph but the agents': query, entities, relations."""
        return [
            text_tail(kg.query, self.query_chars),
            *(e.text for e in kg.entities),
            *(r.text for r in kg.relations),
        ]

    def build(
        self,
        queries: Sequence[str],
        agents: Sequence[Sequence[str]],
        *,
        kgs: Sequence[QueryKG] | None = None,
    ) -> list[Any]:
        """One graph per query; ``agents[i]`` are the descriptors of query ``i``'s agent nodes.

        ``kgs`` are the queries' knowledge graphs when already extracted. All node texts are
        embedded in one call (the embedder's cache makes repeats free).
        """
        if len(queries) != len(agents):
            raise ConfigurationError(f"{len(queries)} queries but {len(agents)} agent lists")
        if kgs is None:
            kgs = [self.extractor(q) for q in queries]
        elif len(kgs) != len(queries):
            raise ConfigurationError(f"{len(queries)} queries but {len(kgs)} knowledge graphs")
        unique: dict[str, int] = {}
        for kg, descs in zip(kgs, agents, strict=True):
            for text in (*self.texts(kg), *descs):
                unique.setdefault(text, len(unique))
        vectors = (
            self.embedder.embed(list(unique)) if unique else np.zeros((0, self.embedder.dim), np.float32)
        )
        return [self.assemble(kg, descs, vectors, unique) for kg, descs in zip(kgs, agents, strict=True)]

    def graph(self, query: str, agents: Sequence[str]) -> Any:
        """The graph of one query."""
        return self.build([query], [agents])[0]

    def tensors(self, kg: QueryKG, agents: Sequence[str]) -> tuple[dict[str, Any], dict[EdgeType, Any]]:
        """``(x_dict, edge_index_dict)`` of one query's graph without building a ``HeteroData``
        (the routing fast path: a heterogeneous layer takes these dicts directly)."""
        texts = [*self.texts(kg), *agents]
        vectors = self.embedder.embed(texts)
        return self._tensors(kg, agents, vectors, {t: i for i, t in enumerate(texts)})

    def assemble(self, kg: QueryKG, agents: Sequence[str], vectors: np.ndarray, rows: dict[str, int]) -> Any:
        """The ``HeteroData`` of ``kg`` and its agents, with features taken from ``vectors[rows[text]]``."""
        x_dict, edge_index_dict = self._tensors(kg, agents, vectors, rows)
        data = require("torch_geometric.data").HeteroData()
        for node_type, x in x_dict.items():
            data[node_type].x = x
            data[node_type].num_nodes = x.shape[0]  # batching needs it on empty node types
        for edge_type, index in edge_index_dict.items():
            data[edge_type].edge_index = index
        return data

    def _tensors(
        self, kg: QueryKG, agents: Sequence[str], vectors: np.ndarray, rows: dict[str, int]
    ) -> tuple[dict[str, Any], dict[EdgeType, Any]]:
        torch = torch_module()

        def feats(texts: Sequence[str]) -> Any:
            if not texts:
                return torch.zeros((0, vectors.shape[1]), dtype=torch.float32)
            return torch.from_numpy(np.ascontiguousarray(vectors[[rows[t] for t in texts]], dtype=np.float32))

        def edges(src: Sequence[int], dst: Sequence[int]) -> Any:
            return torch.tensor([list(src), list(dst)], dtype=torch.long).reshape(2, -1)

        n_ent, n_rel, n_agent = len(kg.entities), len(kg.relations), len(agents)
        x_dict = {
            "query": feats([text_tail(kg.query, self.query_chars)]),
            "entity": feats([e.text for e in kg.entities]),
            "relation": feats([r.text for r in kg.relations]),
            "agent": feats(list(agents)),
        }
        forward = {
            QUERY_ENTITY: edges([0] * n_ent, range(n_ent)),
            ENTITY_RELATION: edges([r.head for r in kg.relations], range(n_rel)),
            RELATION_ENTITY: edges(range(n_rel), [r.tail for r in kg.relations]),
            QUERY_AGENT: edges([0] * n_agent, range(n_agent)),
        }
        edge_index_dict: dict[EdgeType, Any] = {}
        for edge_type, index in forward.items():
            edge_index_dict[edge_type] = index
            edge_index_dict[reverse(edge_type)] = index.flip(0)
        return x_dict, edge_index_dict

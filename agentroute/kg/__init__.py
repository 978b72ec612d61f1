"""Per-query knowledge graphs for the AgentRouter (``kg-gnn``) router.

:mod:`agentroute.kg.extract` finds entities and relations offline (deterministic rules, or any
NER plugged in); :mod:`agentroute.kg.graph` turns a query, its knowledge graph and its candidate
agents into a torch-geometric ``HeteroData`` with MiniLM node features. Importing the package is
light; building graphs needs the ``ml`` extra.
"""

from agentroute.kg.agents import agent_descriptor, card_descriptor, describe, log_cards, training_cards
from agentroute.kg.extract import (
    CO_OCCURS,
    Entity,
    EntityExtractor,
    KGExtractor,
    QueryKG,
    Relation,
    RuleExtractor,
    spacy_ner,
)
from agentroute.kg.graph import (
    EDGE_TYPES,
    FORWARD_EDGE_TYPES,
    METADATA,
    NODE_TYPES,
    GraphBuilder,
    reverse,
)

__all__ = [
    "CO_OCCURS",
    "EDGE_TYPES",
    "FORWARD_EDGE_TYPES",
    "METADATA",
    "NODE_TYPES",
    "Entity",
    "EntityExtractor",
    "GraphBuilder",
    "KGExtractor",
    "QueryKG",
    "Relation",
    "RuleExtractor",
    "agent_descriptor",
    "card_descriptor",
    "describe",
    "log_cards",
    "reverse",
    "spacy_ner",
    "training_cards",
]

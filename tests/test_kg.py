"""Per-query knowledge graphs: the deterministic extractor, the NER plug-in point and the graph schema."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from agentroute.embed import text_tail
from agentroute.kg import (
    CO_OCCURS,
    EDGE_TYPES,
    FORWARD_EDGE_TYPES,
    METADATA,
    NODE_TYPES,
    Entity,
    EntityExtractor,
    GraphBuilder,
    KGExtractor,
    RuleExtractor,
    reverse,
)


def ents(text: str) -> list[tuple[str, str]]:
    return [(e.text, e.label) for e in RuleExtractor()(text)]


# -- entities -------------------------------------------------------------------------------------
def test_capitalised_spans_drop_leading_function_words():
    assert ents("What did the Bank of America say about Tim Cook?") == [
        ("Bank of America", "capitalised"),
        ("Tim Cook", "capitalised"),
    ]
    assert ents("The Eiffel Tower is in Paris.") == [
        ("Eiffel Tower", "capitalised"),
        ("Paris", "capitalised"),
    ]


def test_acronyms_and_hyphenated_names():
    assert ents("NASA and the ESA launched GPT-4.") == [
        ("NASA", "capitalised"),
        ("ESA", "capitalised"),
        ("GPT-4", "capitalised"),
    ]


def test_dates_in_several_forms():
    text = "Due 2021-03-04, moved to 3/5/2021, then March 7, 2021, 9 April 2022 and finally May 2023."
    assert [t for t, label in ents(text) if label == "date"] == [
        "2021-03-04",
        "3/5/2021",
        "March 7, 2021",
        "9 April 2022",
        "May 2023",
    ]


def test_numbers_money_percent_and_no_digits_of_words():
    assert ents("It grew 12.5% to $3,400,000 in 3 years, not H2O or 4x4.") == [
        ("12.5%", "number"),
        ("$3,400,000", "number"),
        ("H2O", "capitalised"),
    ]


def test_quoted_strings_but_not_apostrophes():
    assert ents("Kyle doesn't like 'Hey Jude' or \"Let It Be\" or “Yesterday”.") == [
        ("Kyle", "capitalised"),
        ("Hey Jude", "quoted"),
        ("Let It Be", "quoted"),
        ("Yesterday", "quoted"),
    ]


def test_single_letters_and_answer_options_are_not_entities():
    assert ents("A) west\nB) east\nAnswer:\nB") == []


def test_empty_and_entity_free_text():
    assert ents("") == []
    kg = KGExtractor()("what is two plus two")
    assert kg.entities == [] and kg.relations == []


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown entity kinds"):
        RuleExtractor(kinds=("date", "person"))


# -- relations ------------------------------------------------------------------------------------
def test_relations_link_consecutive_entities_within_a_sentence():
    kg = KGExtractor()("The Eiffel Tower was built in 1889 by Gustave Eiffel. Paris, France.")
    assert kg.triples() == [
        ("Eiffel Tower", "was built in", "1889"),
        ("1889", "by", "Gustave Eiffel"),
        ("Paris", CO_OCCURS, "France"),
    ]  # no relation across the sentence break (Gustave Eiffel → Paris)


def test_relation_text_is_cut_to_max_words_and_entities_are_distinct():
    kg = KGExtractor(max_relation_words=2)("Alice met Bob after a very long day near Carol. Alice smiled.")
    assert kg.triples() == [("Alice", "met", "Bob"), ("Bob", "after a", "Carol")]
    assert [e.text for e in kg.entities] == ["Bob", "Carol", "Alice"]  # ordered by last mention


def test_caps_keep_the_entities_nearest_the_end():
    text = "Alpha met Beta. Gamma met Delta. Epsilon met Zeta."
    kg = KGExtractor(max_entities=2, max_relations=1)(text)
    assert [e.text for e in kg.entities] == ["Epsilon", "Zeta"]
    assert kg.triples() == [("Epsilon", "met", "Zeta")]


def test_a_real_ner_plugs_in():
    def gazetteer(text: str) -> list[Entity]:  # a stand-in NER: finds known names, no offsets
        return [Entity(name, "PERSON") for name in ("ada lovelace", "charles babbage") if name in text]

    assert isinstance(gazetteer, EntityExtractor)
    kg = KGExtractor(gazetteer)("did ada lovelace work with charles babbage?")
    assert [(e.text, e.label, e.start) for e in kg.entities] == [
        ("ada lovelace", "PERSON", 4),
        ("charles babbage", "PERSON", 27),
    ]
    assert kg.triples() == [("ada lovelace", "work with", "charles babbage")]


# -- graphs ---------------------------------------------------------------------------------------
class HashEmbedder:
    """A deterministic test embedder: text → seeded random unit vector (no model download; the seed
    is a CRC of the text, not `hash()`, which differs between processes)."""

    dim = 16

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, texts):
        self.calls.append(list(texts))
        out = []
        for t in texts:
            v = np.random.default_rng(zlib.crc32(t.encode())).normal(size=self.dim)
            out.append(v / np.linalg.norm(v))
        return np.array(out, dtype=np.float32).reshape(len(texts), self.dim)


def test_schema_has_reverse_edges_for_every_forward_type():
    assert NODE_TYPES == ("query", "entity", "relation", "agent")
    assert set(FORWARD_EDGE_TYPES) == {
        ("query", "mentions", "entity"),
        ("entity", "src", "relation"),
        ("relation", "tgt", "entity"),
        ("query", "offers", "agent"),
    }
    assert set(EDGE_TYPES) == set(FORWARD_EDGE_TYPES) | {reverse(e) for e in FORWARD_EDGE_TYPES}
    assert METADATA == (list(NODE_TYPES), list(EDGE_TYPES))


def test_graph_nodes_edges_and_features():
    embedder = HashEmbedder()
    builder = GraphBuilder(embedder)
    (g,) = builder.build(["Paris is the capital of France."], [["agent one", "agent two", "agent three"]])
    node_types, edge_types = g.metadata()
    assert (node_types, set(edge_types)) == (METADATA[0], set(METADATA[1]))
    assert [g[t].num_nodes for t in NODE_TYPES] == [1, 2, 1, 3]
    assert g["query", "mentions", "entity"].edge_index.tolist() == [[0, 0], [0, 1]]
    assert g["entity", "src", "relation"].edge_index.tolist() == [[0], [0]]  # Paris →src→ r
    assert g["relation", "tgt", "entity"].edge_index.tolist() == [[0], [1]]  # r →tgt→ France
    assert g["query", "offers", "agent"].edge_index.tolist() == [[0, 0, 0], [0, 1, 2]]
    for edge_type in FORWARD_EDGE_TYPES:
        assert g[reverse(edge_type)].edge_index.tolist() == g[edge_type].edge_index.flip(0).tolist()
    expected = embedder.embed(["France", "agent two"])
    np.testing.assert_allclose(g["entity"].x[1].numpy(), expected[0])
    np.testing.assert_allclose(g["agent"].x[1].numpy(), expected[1])
    assert len(embedder.calls[0]) == len(set(embedder.calls[0]))  # one call, each text once


def test_query_without_entities_degrades_to_query_agent_edges():
    (g,) = GraphBuilder(HashEmbedder()).build(["what is two plus two"], [["a", "b"]])
    assert g["entity"].num_nodes == 0 and g["relation"].num_nodes == 0
    assert g["query", "offers", "agent"].edge_index.shape == (2, 2)
    for edge_type in EDGE_TYPES:
        if "agent" not in (edge_type[0], edge_type[2]):
            assert g[edge_type].edge_index.shape == (2, 0)


def test_query_node_embeds_the_tail_of_long_prompts():
    embedder = HashEmbedder()
    prompt = "Example question one? Answer: A\n" * 100 + "Which planet is largest?"
    GraphBuilder(embedder, query_chars=40).build([prompt], [["x"]])
    assert embedder.calls[0][0] == text_tail(prompt, 40)
    assert embedder.calls[0][0].endswith("Which planet is largest?") and len(embedder.calls[0][0]) <= 40

"""BM25 retrieval folds character widths (NFKC, as Lucene's CJK width filter): a query typed in
full-width kana finds a passage written in half-width kana and the other way round, and ASCII
finds full-width Latin — was: no shared term, so another passage sharing only 'ー' won."""

import pytest

from agentroute.retrieval import BM25Retriever

CORPUS = [
    "ｶﾚｰの店です。",  # half-width katakana (older Japanese web and receipt text)
    "ラーメンの店です。",
    "ＰＡＲＩＳ　ＦＲＡＮＣＥ　２０２４",  # full-width Latin and digits
    "Berlin is the capital of Germany.",
]


@pytest.mark.parametrize("query, found", [
    ("カレー", "ｶﾚｰの店です。"),
    ("ｶﾚｰ", "ｶﾚｰの店です。"),
    ("ﾗｰﾒﾝ", "ラーメンの店です。"),
    ("paris 2024", "ＰＡＲＩＳ　ＦＲＡＮＣＥ　２０２４"),
])  # fmt: skip
def test_a_query_finds_its_passage_whatever_the_width(query, found):
    assert [p.text for p in BM25Retriever(CORPUS).search(query, k=1)] == [found]

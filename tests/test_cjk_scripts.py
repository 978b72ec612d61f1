"""Chinese, Japanese and Korean text on each user path that reads it: answer metrics (f1/em),
BM25 retrieval, and the QA graph's sub-question parser — one rule for which characters are CJK
(:mod:`agentroute.cjk`)."""

import pytest

from agentroute.cjk import DENSE, HANGUL, UNSPACED
from agentroute.eval.answers import answer_tokens, exact_match, f1_score
from agentroute.graphs.qa import parse_subquestions
from agentroute.retrieval import BM25Retriever

EXT_B = "\U00020bb7"  # 𠮷 (CJK Unified Ideographs Extension B)
EXT_G = "\U00030000"  # the first ideograph of Extension G (Unicode 13)


@pytest.mark.parametrize("char", ["巴", "ひ", "カ", "ｶ", "ㇰ", "々", "〇", "豈", EXT_B, EXT_G])
def test_han_and_kana_are_unspaced_and_hangul_is_not(char):
    assert UNSPACED.fullmatch(char) and DENSE.fullmatch(char) and not HANGUL.fullmatch(char)


@pytest.mark.parametrize("char", ["서", "ᄀ", "ㄱ", "ﾡ"])
def test_hangul_is_dense_but_spaced(char):
    assert HANGUL.fullmatch(char) and DENSE.fullmatch(char) and not UNSPACED.fullmatch(char)


@pytest.mark.parametrize("pred, gold, f1", [
    ("法国巴黎", "巴黎", 2 / 3),  # Chinese: a character a token (MLQA)
    ("東京タワー", "東京", 4 / 7),  # Japanese kanji and katakana
    ("ﾄｳｷｮｳ駅", "ﾄｳｷｮｳ", 10 / 11),  # half-width katakana: 6 tokens against 5
    (f"{EXT_B}野家", EXT_B, 0.5),  # a rare Extension B ideograph is a token of its own
    (f"{EXT_G}家", EXT_G, 2 / 3),
    ("서울 특별시", "서울", 2 / 3),  # Korean is written with spaces: words, as SQuAD scores it
    ("서울특별시", "서울", 0.0),
])  # fmt: skip
def test_f1_by_script(pred, gold, f1):
    assert f1_score(pred, gold) == pytest.approx(f1)
    assert exact_match(pred, gold) == 0.0 and exact_match(gold + "。", gold) == 1.0


def test_answer_tokens_keep_korean_words_and_split_han_inside_them():
    assert answer_tokens("서울은 首尔") == ["서울은", "首", "尔"]


CORPUS = [
    "Berlin is the capital of Germany.",
    "ベルリンはドイツの首都です。",
    "カレーライスはｶﾚｰとも書く。",
    "베를린은 독일의 수도이다.",
    "巴黎是法国的首都。",
    "파리는 프랑스의 수도이다.",
    f"{EXT_B}野家は牛丼の店。",
    f"{EXT_G}字の辞書。",
]


@pytest.mark.parametrize("query, found", [
    ("法国", "巴黎是法国的首都。"),
    ("ドイツ", "ベルリンはドイツの首都です。"),
    ("ｶﾚｰ", "カレーライスはｶﾚｰとも書く。"),  # half-width katakana inside a longer word
    ("파리", "파리는 프랑스의 수도이다."),  # a Korean word with its particle glued on
    ("프랑스", "파리는 프랑스의 수도이다."),
    (EXT_B, f"{EXT_B}野家は牛丼の店。"),
    (EXT_G, f"{EXT_G}字の辞書。"),
])  # fmt: skip
def test_retrieval_finds_the_passage_in_each_script(query, found):
    assert [p.text for p in BM25Retriever(CORPUS).search(query, k=1)] == [found]


@pytest.mark.parametrize("line", ["东京在哪？", "東京はどこ？", "파리는 어디?", "ｶﾚｰとは?", f"{EXT_B}{EXT_B}{EXT_G}{EXT_G}？"])
def test_qa_planner_accepts_short_cjk_questions(line):
    assert parse_subquestions(f"1. {line}\n2. Why?", "the question", 3) == [line]


def test_qa_planner_still_rejects_short_latin_lines():
    assert parse_subquestions("1. Why?\n2. Who?", "the question", 3) == ["the question"]

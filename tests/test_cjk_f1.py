"""Answer metrics tokenise Chinese and Japanese by character, as MLQA's evaluation does; text
without those characters (every English gold answer of the shipped datasets) is split on spaces
exactly as before (helper-69, item 4)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agentroute.eval import answers
from agentroute.eval.answers import contains, exact_match, f1_score, get_metric, normalize_answer

DATA = Path(os.environ.get("AGENTROUTE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.mark.parametrize(
    ("prediction", "gold", "f1"),
    [
        ("巴黎", "法国巴黎", 2 * (1.0 * 0.5) / 1.5),  # was 0.0: one "word" each
        ("法国的首都是巴黎。", "巴黎", 2 * (2 / 8 * 1.0) / (2 / 8 + 1.0)),
        ("東京都", "東京", 0.8),  # Japanese kanji
        ("とうきょう", "とうきょう", 1.0),
        ("北京", "巴黎", 0.0),
        ("Paris 巴黎", "巴黎", 2 * (2 / 3 * 1.0) / (2 / 3 + 1.0)),  # mixed: Latin words stay whole
    ],
)
def test_f1_counts_chinese_and_japanese_characters(prediction: str, gold: str, f1: float) -> None:
    assert f1_score(prediction, gold) == pytest.approx(f1)
    assert get_metric("f1")(prediction, [gold, "unrelated"]) == pytest.approx(f1)


def test_contains_and_em_in_chinese() -> None:
    assert contains("法国的首都是巴黎。", "巴黎") == 1.0  # was 0.0
    assert contains("法国的首都是北京。", "巴黎") == 0.0
    assert exact_match("巴黎。", "巴黎") == 1.0 and exact_match("法国巴黎", "巴黎") == 0.0


def test_english_and_spaced_scripts_split_on_spaces() -> None:
    assert f1_score("Hamlet by William Shakespeare.", "William Shakespeare") == pytest.approx(2 / 3)
    assert answers.answer_tokens("«Москва» река") == ["москва", "река"]
    assert answers.answer_tokens("서울 특별시") == ["서울", "특별시"]  # Korean is written with spaces


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().split("\n") if line.strip()]


def _gold_answers() -> list[str]:
    golds = [str(q["answer"]) for q in json.loads((DATA / "hotpotqa" / "hotpotqa_train.json").read_text())]
    for name in ("default_query_train.jsonl", "default_query_test.jsonl"):
        golds += [str(r.get("ground_truth", "")) for r in _lines(DATA / "llmrouter" / "example_data" / "query_data" / name)]
    golds += [str(r["answer"]) for r in _lines(DATA / "routellm" / "gsm8k" / "test.jsonl")]
    return [g for g in golds if g]


def test_the_datasets_gold_answers_without_cjk_tokenise_as_before() -> None:
    if not (DATA / "hotpotqa").is_dir():
        pytest.skip(f"no data at {DATA} (set AGENTROUTE_DATA)")
    golds = _gold_answers()
    assert len(golds) > 5000
    spaced = [g for g in golds if not any("\u3040" <= c <= "\u9fff" for c in g)]
    assert len(spaced) >= len(golds) - 5
    assert all(answers.answer_tokens(g) == normalize_answer(g).split() for g in spaced)

"""Retrieval and the QA graph's corpus as users hand them over: tiny, empty, repeated, CJK, huge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentroute import retrieval
from agentroute.errors import ConfigurationError
from agentroute.graphs.qa import build_qa_graph, load_corpus
from agentroute.retrieval import BM25Retriever, Passage
from tests.fixtures_reply_server import POLL_S


def test_a_two_paragraph_corpus_is_ranked_by_the_query_not_by_file_order():
    corpus = ["Berlin is the capital of Germany.", "Paris is the capital of France."]
    assert BM25Retriever(corpus).search("capital of France", k=1)[0].text == corpus[1]
    assert BM25Retriever(corpus[::-1]).search("Germany", k=1)[0].text == corpus[0]


def test_a_one_paragraph_corpus_answers_every_query():
    r = BM25Retriever([{"title": "Paris", "text": "Paris is on the Seine."}])
    assert r.search("Seine", k=3) == [Passage("Paris", "Paris is on the Seine.")]
    assert r.search("", k=1) == r.search("nothing shared", k=1) == [Passage("Paris", "Paris is on the Seine.")]


def test_a_corpus_of_empty_paragraphs_searches_without_crashing():
    r = BM25Retriever(["", "...", {"title": "", "text": ""}])
    assert len(r.search("anything", k=2)) == 2


def test_an_empty_corpus_and_a_bad_k_are_clear_errors(tmp_path):
    with pytest.raises(ConfigurationError, match="empty"):
        BM25Retriever([])
    with pytest.raises(ConfigurationError, match="top-k"):
        BM25Retriever(["a b"]).search("a", k=0)
    with pytest.raises(ConfigurationError, match="top_k"):
        build_qa_graph(corpus=["a b"], top_k=0)
    with pytest.raises(ConfigurationError, match="max_subquestions"):
        build_qa_graph(max_subquestions=-1)
    (tmp_path / "c.json").write_text("[]")
    with pytest.raises(ConfigurationError, match="c.json"):
        load_corpus(tmp_path / "c.json")


@pytest.mark.parametrize(
    "query, expected",
    [("法国的首都是哪里？", "巴黎是法国的首都。"), ("日本の首都", "東京は日本の首都です。"), ("柏林", "柏林在德国。")],
)
def test_a_query_in_chinese_or_japanese_finds_the_paragraph_that_shares_its_words(query, expected):
    corpus = ["Rome is the capital of Italy.", "巴黎是法国的首都。", "柏林在德国。", "東京は日本の首都です。"]
    assert BM25Retriever(corpus).search(query, k=1)[0].text == expected


def test_repeated_titles_keep_every_paragraph(tmp_path):
    (tmp_path / "c.json").write_text('{"Paris": "Paris is in France.", "Paris": ["Paris is a town ", "in Texas."]}')
    passages = load_corpus(tmp_path / "c.json")
    assert passages == [Passage("Paris", "Paris is in France."), Passage("Paris", "Paris is a town in Texas.")]
    assert BM25Retriever(passages).search("Texas", k=1) == [passages[1]]


def test_a_very_long_document_is_retrieved_in_pieces_that_fit_a_prompt():
    filler = " ".join(f"Sentence {i} says nothing." for i in range(5000))
    r = BM25Retriever([{"title": "Long", "text": filler + " The Seine flows through Paris."}, "Berlin is on the Spree."])
    best = r.search("Which river flows through Paris?", k=1)[0]
    assert best.title == "Long" and "Seine" in best.text and len(best.text) <= retrieval.CHUNK_CHARS
    assert "".join(p.text for p in r.passages if p.title == "Long").replace(" ", "") == (filler + " The Seine flows through Paris.").replace(" ", "")
    unspaced = BM25Retriever(["汉" * 10_000], chunk_chars=500)
    assert all(len(p.text) <= 500 for p in unspaced.passages) and sum(len(p.text) for p in unspaced.passages) == 10_000
    assert BM25Retriever(["x" * 5000], chunk_chars=None).passages == [Passage("", "x" * 5000)]


@pytest.mark.slow
def test_run_qa_over_a_corpus_with_a_very_long_document_answers_on_the_local_model(tmp_path):
    """`agentroute run qa --corpus` with a 150 KB paragraph: the executor's prompt fits SmolLM2's window."""
    doc = " ".join(f"Sentence {i} talks about nothing in particular." for i in range(3000)) + " The Seine flows through Paris."
    (tmp_path / "corpus.json").write_text(json.dumps([{"title": "Long", "text": doc}, {"title": "Berlin", "text": "Berlin is on the Spree."}]))
    (tmp_path / "q.jsonl").write_text(json.dumps({"query": "Which river flows through Paris?"}) + "\n")
    import agentroute

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(agentroute.__file__).parents[1])}
    proc = subprocess.run(
        [sys.executable, "-m", "agentroute", "run", "qa", "--input", "q.jsonl", "--corpus", "corpus.json", "--memory",
         "sqlite:///m.db", "--out", "out.jsonl", "--budget-usd", "0.01"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    row = json.loads(Path(tmp_path / "out.jsonl").read_text().splitlines()[0])
    assert row["status"] == "done" and row["error"] is None
    executor = [s for s in row["steps"] if s["role"] == "executor"]
    assert executor[0]["status"] == "ok" and executor[0]["tokens_in"] < 2000


def test_a_question_in_chinese_is_decomposed_and_each_part_reads_its_own_passage():
    """The planner answers in Chinese (full-width ？, 1、 and （2） numbering): both sub-questions
    reach an executor, each with the passage BM25 found for it (before, none was read as a
    question, and the whole question went to one executor)."""
    import threading

    from agentroute import Budget, ModelCard, ModelPool, make_router
    from agentroute.pool.backends.openai import OpenAIBackend
    from tests.test_strategies_user_paths import Answers

    plan = "1、法国的首都是哪座城市？\n（2）巴黎在哪条河边？"
    server = Answers([plan, "巴黎", "巴黎", "塞纳河"])
    threading.Thread(target=server.serve_forever, args=(POLL_S,), daemon=True).start()
    corpus = [{"title": "柏林", "text": "柏林是德国的首都，在施普雷河边。"},
              {"title": "巴黎", "text": "巴黎是法国的首都。"},
              {"title": "塞纳河", "text": "巴黎在塞纳河边。"}]
    try:
        card = ModelCard(id="m", backend="openai", model="m", base_url=server.url, input_price=1.0, output_price=1.0, max_tokens=32)
        app = build_qa_graph(corpus=corpus, top_k=1).compile(
            pool=ModelPool([card], {"openai": OpenAIBackend()}), router=make_router("cheapest"), budget=Budget(calls=6))
        result = app.run("巴黎是哪个国家的首都，它在哪条河边？")
    finally:
        server.shutdown()
        server.server_close()
    executors = [s for s in result.steps if s.agent.role == "executor"]
    assert len(executors) == 2, [s.input for s in result.steps]
    by_question = {s.input.rsplit("Question: ", 1)[-1]: s.input for s in executors}
    assert "巴黎是法国的首都。" in by_question["法国的首都是哪座城市？"]
    assert "巴黎在塞纳河边。" in by_question["巴黎在哪条河边？"]


def test_a_retriever_from_a_hotpotqa_layout_file_reads_the_paragraphs_not_the_titles(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"Paris": ["Paris is the capital ", "of France."], "Berlin": "Berlin is in Germany."}))
    r = BM25Retriever.from_file(tmp_path / "c.json")
    assert r.passages == [Passage("Paris", "Paris is the capital of France."), Passage("Berlin", "Berlin is in Germany.")]
    assert r.search("capital", k=1)[0].text == "Paris is the capital of France."
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ConfigurationError, match="bad.json"):
        BM25Retriever.from_file(tmp_path / "bad.json")

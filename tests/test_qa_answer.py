"""The QA graph keeps a right executor answer; corpus files load in every documented layout."""

from __future__ import annotations

import json

import pytest

from agentroute import Budget, ModelCard, ModelPool, make_router
from agentroute.errors import ConfigurationError
from agentroute.graphs.qa import build_qa_graph, final_answer, is_restatement, load_corpus
from agentroute.pool.backends.base import Backend
from agentroute.types import Completion, CompletionRequest


class ByRole(Backend):
    """Answers by the system prompt's role: planner, executor, summarizer."""

    name = "replay"
    blocks = False

    def __init__(self, planner: str, executor: str, summarizer: str):
        self.texts = {"break a question": planner, "answer a question": executor, "combine answers": summarizer}
        self.calls: list[str] = []

    async def complete(self, request: CompletionRequest, card: ModelCard) -> Completion:
        system = request.messages[0]["content"]
        role = next(k for k in self.texts if k in system)
        self.calls.append(role)
        return Completion(model=card.id, text=self.texts[role], tokens_in=20, tokens_out=5, cost_usd=card.usd(20, 5))


def _run(backend: ByRole, question: str, **options):
    card = ModelCard(id="m", backend="replay", input_price=1.0, output_price=1.0, max_tokens=16)
    app = build_qa_graph(**options).compile(
        pool=ModelPool([card], backends={"replay": backend}), router=make_router("cheapest"), budget=Budget(usd=1)
    )
    return app.run(question)


def test_one_subquestion_keeps_the_executor_answer_without_a_summarizer_call():
    backend = ByRole("Who wrote Hamlet?", "Hamlet by William Shakespeare.", "The answer to the main question is: Who wrote Hamlet?")
    result = _run(backend, "Who wrote Hamlet?")
    assert result.status == "done"
    assert result.answer == "Hamlet by William Shakespeare."
    assert backend.calls == ["break a question", "answer a question"]


def test_a_summary_that_restates_the_question_is_replaced_by_the_executor_answer():
    backend = ByRole(
        "Who wrote Hamlet?\nWhen was Hamlet written?", "William Shakespeare", "The answer to the main question is: Who wrote Hamlet?"
    )
    result = _run(backend, "Who wrote Hamlet and when?")
    assert result.answer == "William Shakespeare"
    assert backend.calls.count("combine answers") == 1


def test_a_real_summary_is_kept():
    backend = ByRole("Who directed Jaws?\nWhen was he born?", "Steven Spielberg, 1946", "1946")
    assert _run(backend, "When was the director of Jaws born?").answer == "1946"


def test_the_old_pipeline_is_still_available():
    backend = ByRole("Who wrote Hamlet?", "Hamlet by William Shakespeare.", "Who wrote Hamlet?")
    result = _run(backend, "Who wrote Hamlet?", keep_executor_answer=False)
    assert result.answer == "Who wrote Hamlet?" and backend.calls[-1] == "combine answers"


def test_restatement_rules():
    assert is_restatement("", "q?", ["x"])
    assert not is_restatement("Paris", "What is the capital of France?", ["Paris is the capital"])
    assert final_answer("Which city?", "Which city?", []) == "Which city?"  # nothing better to keep


@pytest.mark.parametrize(
    "content, suffix",
    [
        (json.dumps({"Paris": ["Paris is the capital", " of France."]}), ".json"),
        (json.dumps(["Paris is the capital of France."]), ".json"),
        (json.dumps([{"title": "Paris", "text": "Paris is the capital of France."}]), ".json"),
        ('{"title": "Paris", "text": "Paris is the capital of France."}\n', ".jsonl"),
    ],
)
def test_corpus_layouts(tmp_path, content, suffix):
    path = tmp_path / f"corpus{suffix}"
    path.write_text(content)
    [passage] = load_corpus(path)
    assert "capital of France" in passage.text


def test_corpus_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_corpus(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigurationError, match="bad.json"):
        load_corpus(bad)


def test_run_qa_with_a_corpus_feeds_bm25_passages_to_the_executor(tmp_path):
    from typer.testing import CliRunner

    from agentroute.cli import app as cli
    from tests.test_batch_server import GRAPH_PY, StubOpenAIServer, pool_yaml

    corpus = tmp_path / "corpus.json"
    corpus.write_text(json.dumps({"Seine": ["The Seine flows through Paris."], "Spree": ["The Spree flows through Berlin."]}))
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"query": "Which river flows through Paris?", "answer": "stub answer"}) + "\n")
    with StubOpenAIServer() as stub:
        (tmp_path / "pool.yaml").write_text(pool_yaml(stub.url))
        (tmp_path / "graph.py").write_text(GRAPH_PY)
        base = ["--input", str(questions), "--pool", str(tmp_path / "pool.yaml"), "--memory", f"sqlite:///{tmp_path}/m.db", "--corpus", str(corpus)]
        result = CliRunner().invoke(cli, ["run", "qa", *base])
        prompts = [a["prompt"] for a in stub.answered]
        other = CliRunner().invoke(cli, ["run", str(tmp_path / "graph.py"), *base])
    assert result.exit_code == 0, result.output
    assert any("Passages:" in p and "[1] Seine: The Seine flows through Paris." in p for p in prompts)
    assert "mean 1.000" in result.output
    assert other.exit_code == 2 and "--corpus works with the qa graph" in other.output

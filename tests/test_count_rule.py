"""One rule for "a whole number >= 1" (agentroute.checks.check_count): the agentic environment's
steps/attempts/variants, BM25 top-k, the qa graph's top_k/max_subquestions and BoPOConfig's counts.
A numpy integer (a value of a sweep over `np.arange`) is a whole number everywhere (was refused by
the retriever and the qa graph: 'top-k must be a whole number >= 1 (got np.int64(2))'), and a bad
count reads the same wherever it is given."""

from __future__ import annotations

import numpy as np
import pytest

from agentroute.errors import ConfigurationError
from agentroute.graphs.qa import build_qa_graph
from agentroute.retrieval import BM25Retriever
from agentroute.training.bopo_config import BoPOConfig

CORPUS = ["Paris is the capital of France.", "Berlin is in Germany.", "Rome is old."]


def test_numpy_integers_are_whole_numbers():
    assert [p.text for p in BM25Retriever(CORPUS).search("France", k=np.int64(1))] == [CORPUS[0]]
    assert build_qa_graph(corpus=CORPUS, top_k=np.int64(2), max_subquestions=np.int32(2)).name == "qa"


@pytest.mark.parametrize(("build", "message"), [
    (lambda: BM25Retriever(CORPUS).search("France", k=0), "top-k must be >= 1 (got 0)"),
    (lambda: BM25Retriever(CORPUS).search("France", k=1.0), "top-k must be a whole number >= 1 (got 1.0)"),
    (lambda: build_qa_graph(max_subquestions=0), "build_qa_graph: max_subquestions must be >= 1 (got 0)"),
    (lambda: BoPOConfig(steps=0), "BoPOConfig: 'steps' must be an integer ≥ 1 (got 0)"),
    (lambda: BoPOConfig(max_attempts=0), "BoPOConfig: 'max_attempts' must be an integer ≥ 1 (got 0)"),
])  # fmt: skip
def test_a_bad_count_reads_the_same_everywhere(build, message):
    with pytest.raises(ConfigurationError) as caught:
        build()
    assert str(caught.value) == message

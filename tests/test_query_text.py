"""The one rule for which text of a query a router embeds (:func:`agentroute.embed.text_tail`), and
the routers that use it: kg-gnn (query node), BoPO (step tail) and the embedding utility routers
(knn, mlp, mf, graph-router, per-task: ``query_chars``)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from agentroute.embed import context_text, text_tail
from agentroute.errors import ConfigurationError
from agentroute.routers import make_router
from agentroute.routers.utility import QUERY_CHARS
from agentroute.testing import sample_outcomes
from agentroute.types import RouteContext

EMBEDDING_ROUTERS = ("knn", "mlp", "mf", "graph-router", "per-task")


# -- the rule ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("chars", "expected"),
    [
        (5, "delta"),  # the cut falls at a word start: kept as is
        (6, "delta"),  # the cut keeps the space before a word: dropped with it
        (8, "delta"),  # the cut falls inside "gamma": the partial word is dropped
        (11, "gamma delta"),
        (22, "alpha beta gamma delta"),  # not longer than max_chars: the whole text
        (1000, "alpha beta gamma delta"),
        (None, "alpha beta gamma delta"),  # None or 0: the whole text
        (0, "alpha beta gamma delta"),
    ],
)
def test_text_tail_starts_at_a_word(chars, expected):
    assert text_tail("alpha beta gamma delta", chars) == expected


def test_text_tail_keeps_the_raw_tail_without_a_word_start():
    assert text_tail("alpha beta gamma delta", 8, word_start=False) == "ma delta"
    assert text_tail("abc defghij", 5) == "fghij"  # no whitespace in the tail: nothing to cut at
    assert text_tail("abc defgh ", 4) == "fgh "  # whitespace only at the very end: kept raw


def _kg_rule_before(query: str, max_chars: int) -> str:
    """``agentroute.kg.graph.query_text`` as it was before the rule was folded into one place."""
    if max_chars <= 0 or len(query) <= max_chars:
        return query
    tail = query[-max_chars:]
    if query[-max_chars - 1].isspace():
        return tail
    cut = next((i for i, ch in enumerate(tail) if ch.isspace()), -1)
    return tail[cut + 1 :] if 0 <= cut < len(tail) - 1 else tail


def test_folded_rule_reproduces_kg_gnn_and_bopo_exactly():
    rng = random.Random(0)
    alphabet = "ab c\nd?"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        chars = rng.randint(0, 45)
        assert text_tail(text, chars) == _kg_rule_before(text, chars)  # kg-gnn (query_chars=1000)
        tail = chars or None  # BoPOConfig.tail_chars: None or an int ≥ 16
        ctx = RouteContext(query="the task", candidates=[], step_input=text)
        step_text = ctx.step_input or ctx.query  # agentic.features.query_text before the fold
        assert context_text(ctx, tail, word_start=False) == (step_text if not tail else step_text[-tail:])


def test_context_text_reads_the_step_input_before_the_query():
    ctx = RouteContext(query="the task", candidates=[], step_input="few-shot ... the question")
    assert context_text(ctx) == "few-shot ... the question"
    assert context_text(ctx, 12) == "the question"
    assert context_text(RouteContext(query="the task", candidates=[])) == "the task"


# -- the embedding routers' parameter -----------------------------------------------------------------
@pytest.mark.parametrize("name", EMBEDDING_ROUTERS)
def test_embedding_routers_take_query_chars(name):
    router = make_router(name)
    assert router.get_params()["query_chars"] == QUERY_CHARS
    assert make_router(name, query_chars=300).get_params()["query_chars"] == 300
    with pytest.raises(ConfigurationError, match="query_chars"):
        make_router(name, query_chars=-1).fit(sample_outcomes())


def test_query_chars_survives_save_and_load(tmp_path):
    router = make_router("knn", query_chars=40).fit(sample_outcomes())
    loaded = type(router).load(router.save(tmp_path / "knn"))
    assert loaded.query_chars == 40
    np.testing.assert_array_equal(loaded.embeddings_, router.embeddings_)


def _two_row_table(a: str, b: str):
    from agentroute.outcomes import OutcomeTable

    return OutcomeTable(
        ["a", "b"], [a, b], ["m"], np.array([[1.0], [0.0]]), np.array([[1.0], [1.0]]), [None, None]
    )


# -- why: RouterBench's shared few-shot prefixes ----------------------------------------------------
@pytest.fixture(scope="module")
def rb_test(data_dir):
    datasets = pytest.importorskip("agentroute.eval.datasets", reason="agentroute.eval not available")
    if not (data_dir / "routerbench").is_dir():
        pytest.skip(f"no RouterBench data under {data_dir}")
    return datasets.load_routerbench(data_dir / "routerbench").test


@pytest.mark.parametrize("task", ["arc-challenge", "winogrande"])
def test_prompts_sharing_a_few_shot_prefix_embed_differently_from_their_end(rb_test, task):
    from agentroute.routers.utility import embed_contexts

    rows = [i for i, t in enumerate(rb_test.task_types) if t == task][:2]
    a, b = (rb_test.queries[i] for i in rows)
    assert a[:500] == b[:500] and a[-200:] != b[-200:]  # one few-shot prefix, two questions
    ctxs = [RouteContext(query=q, candidates=[]) for q in (a, b)]
    whole = embed_contexts(ctxs, None)
    # MiniLM reads 256 word pieces: the whole prompts give one vector
    np.testing.assert_allclose(whole[0], whole[1], atol=1e-6)
    tails = embed_contexts(ctxs, 1000)  # kg-gnn's length: the question end
    assert float(tails[0] @ tails[1]) < 0.99
    # the default (QUERY_CHARS = None: measured no better on RouterBench) keeps the whole prompt;
    # query_chars=1000 tells the two questions apart
    assert make_router("knn").query_chars is QUERY_CHARS is None
    knn = make_router("knn", query_chars=1000).fit(_two_row_table(a, b))
    own = knn.embeddings_
    assert float(own[0] @ own[1]) < 0.99

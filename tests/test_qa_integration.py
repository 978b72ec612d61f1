"""The QA graph end to end on real models: in process, and over HTTP through the openai and litellm backends."""

import pytest

from agentroute import Budget, ModelCard, ModelPool, make_router
from agentroute.graphs.qa import build_qa_graph

pytestmark = pytest.mark.slow

CORPUS = [
    {"title": "Paris", "text": "Paris is the capital and largest city of France, on the river Seine."},
    {"title": "Berlin", "text": "Berlin is the capital of Germany, on the river Spree."},
    {"title": "Madrid", "text": "Madrid is the capital of Spain."},
]


def check(result, models):
    assert result.status in ("done", "budget_exhausted")
    assert [s.stage for s in result.steps][:1] == ["plan"]
    assert {s.agent.model for s in result.steps} <= set(models)
    assert all(s.tokens_out > 0 and s.cost_usd > 0 for s in result.steps if s.status == "ok")
    assert result.answer


async def test_qa_graph_on_the_local_model_records_every_step(tmp_path):
    from agentroute.memory import SQLMemory

    with SQLMemory(f"sqlite:///{tmp_path}/m.db") as memory:
        app = build_qa_graph(corpus=CORPUS, top_k=1, max_tokens=24).compile(
            pool=ModelPool.default(), router=make_router("cheapest"), memory=memory, budget=Budget(usd=0.001)
        )
        result = await app.arun("Which river flows through the capital of France?")
        check(result, ["smollm2-135m"])
        assert "Seine" in result.steps[1].input  # BM25 found the passage for the executor
        memory.flush()
        stored = memory.get_task(result.task.id)
    assert [s.id for s in stored.steps] == [s.id for s in result.steps]
    assert stored.task.status == result.status


@pytest.mark.parametrize("backend, model", [("openai", "smollm2-135m"), ("litellm", "openai/smollm2-135m")])
async def test_qa_graph_over_a_local_openai_compatible_server(openai_server_url, backend, model):
    pool = ModelPool([ModelCard(id="served", backend=backend, model=model, base_url=openai_server_url,
                                input_price=0.05, output_price=0.2, max_tokens=24)])
    app = build_qa_graph(max_tokens=24).compile(pool=pool, router=make_router("cheapest"), budget=Budget(usd=0.001))
    result = await app.arun("What is the capital of France?")
    check(result, ["served"])
    await pool.aclose()

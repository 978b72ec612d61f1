"""The `mf` router (and every predicted-utility router) breaks ties by a stated rule — the cheaper
agent, then the first name — so a pick never depends on the order of the table's columns or of
the candidates. Was: two agents with the same logged outcomes got predictions 1e-6 apart from
their seeded embeddings, and the table's column order picked the winner."""

import itertools

import numpy as np
import pytest

from agentroute import make_router
from agentroute.outcomes import OutcomeTable, column_agent
from agentroute.types import RouteContext

QUERIES = ["What is 2+2?", "Capital of France?", "Who wrote Hamlet?", "Boiling point of water?"]


def fitted(models, scores, costs):
    n = len(QUERIES)
    table = OutcomeTable(query_ids=[f"q{i}" for i in range(n)], queries=QUERIES, models=list(models),
                         scores=np.array([scores] * n), costs=np.array([costs] * n))  # fmt: skip
    return make_router("mf", seed=0, epochs=5, dim=8).fit(table)


def pick(router, order, prices):
    cands = [column_agent(m) for m in order]
    ctx = RouteContext(query="What is 3+3?", query_id="x", candidates=cands, task_id="t",
                       costs={a.key: prices[a.model] for a in cands}, remaining={"usd": 1.0}, budget={"usd": 1.0})  # fmt: skip
    return router.route(ctx).agent.model


@pytest.mark.parametrize("table_order", [("alpha", "beta"), ("beta", "alpha")])
def test_equal_agents_go_to_the_first_name_whatever_the_order(table_order):
    router = fitted(table_order, [1.0, 1.0], [1e-4, 1e-4])
    prices = {"alpha": 1e-4, "beta": 1e-4}
    assert {pick(router, order, prices) for order in itertools.permutations(table_order)} == {"alpha"}


@pytest.mark.parametrize("table_order", [("alpha", "beta"), ("beta", "alpha")])
def test_equal_scores_go_to_the_cheaper_agent(table_order):
    costs = {"alpha": 2e-4, "beta": 1e-4}
    router = fitted(table_order, [1.0, 1.0], [costs[m] for m in table_order])
    assert {pick(router, order, costs) for order in itertools.permutations(table_order)} == {"beta"}


def test_a_real_difference_is_not_a_tie():
    router = fitted(("alpha", "beta"), [0.0, 1.0], [1e-4, 1e-4])
    assert pick(router, ("alpha", "beta"), {"alpha": 1e-4, "beta": 1e-4}) == "beta"

"""ant-colony's argmax (serve mode, greedy) breaks a tie as the predicted-utility routers do: the
cheaper agent, then the key sorting first — was the first candidate, so the same colony served
two agents with the same record differently as the pool listed them."""

import itertools

import numpy as np

from agentroute.outcomes import OutcomeTable, column_agent
from agentroute.routers import make_router
from agentroute.types import RouteContext

N = 8


def colony(models):
    table = OutcomeTable(query_ids=[f"q{i}" for i in range(N)], queries=[f"question {i}?" for i in range(N)],
                         models=list(models), scores=np.ones((N, len(models))), costs=np.full((N, len(models)), 1e-3))  # fmt: skip
    return make_router("ant-colony", intent="none", task_types="none").fit(table).serve()


def pick(router, order):
    cands = [column_agent(m) for m in order]
    ctx = RouteContext(query="question 99?", query_id="x", candidates=cands, task_id="t",
                       costs={a.key: 1e-3 for a in cands}, remaining={"usd": 1.0}, budget={"usd": 1.0})  # fmt: skip
    return router.route(ctx).agent.model


def test_equal_agents_go_to_the_first_key_whatever_the_order():
    router = colony(["zeta", "alpha", "mid"])
    assert {pick(router, order) for order in itertools.permutations(["zeta", "alpha", "mid"])} == {"alpha"}

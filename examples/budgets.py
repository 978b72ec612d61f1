"""Hard budgets on replayed RouterBench outcomes: the strongest router under USD and large-call caps.

    python examples/budgets.py            # reads $AGENTROUTE_DATA/routerbench
"""

import asyncio

from agentroute import AgentGraph, Budget, make_router
from agentroute.eval.datasets import load_dataset

dataset = load_dataset("routerbench")  # $AGENTROUTE_DATA/routerbench, else shared/data beside the checkout
pool = dataset.replay_pool("test")
graph = AgentGraph("three-steps")
for role in ("planner", "executor", "summarizer"):
    graph.add_role(role, prompt=role)
graph.add_edge("planner", "executor").add_edge("executor", "summarizer")
queries = [{"query": q, "query_id": i} for q, i in zip(dataset.test.queries[:200], dataset.test.query_ids[:200], strict=True)]

for budget in (None, Budget(usd=0.004), Budget(large_calls=1)):
    app = graph.compile(pool=pool, router=make_router("strongest").fit(dataset.train), budget=budget)
    results = asyncio.run(app.arun_many(queries, concurrency=16))
    limit = budget.limits() if budget else "none"
    worst = max(r.cost_usd for r in results)
    statuses = {s: sum(r.status == s for r in results) for s in {r.status for r in results}}
    print(f"budget {limit}: mean ${sum(r.cost_usd for r in results) / len(results):.5f}, max ${worst:.5f}, {statuses}")

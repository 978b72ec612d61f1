"""Train a router from the SQL memory: run tasks, give feedback, fit kNN on the trajectories.

    python examples/train_from_logs.py
"""

import asyncio
import tempfile

from agentroute import AgentGraph, make_router
from agentroute.eval.datasets import load_dataset
from agentroute.memory import SQLMemory

dataset = load_dataset("routerbench")  # $AGENTROUTE_DATA/routerbench, else shared/data beside the checkout
pool = dataset.replay_pool("train")
graph = AgentGraph("logged").add_role("executor", prompt="answer")

with tempfile.TemporaryDirectory() as tmp, SQLMemory(f"sqlite:///{tmp}/memory.db") as memory:
    # 1. serve traffic with an exploring router; every step lands in the memory with its score
    app = graph.compile(pool=pool, router=make_router("random", seed=0), memory=memory)
    items = [{"query": q, "query_id": i} for q, i in zip(dataset.train.queries, dataset.train.query_ids, strict=True)]
    asyncio.run(app.arun_many(items, concurrency=32))
    memory.flush()
    trajectories = memory.trajectories(with_score=True)
    print(f"{len(trajectories)} logged trajectories")
    # 2. learn a router from them and compare on held-out queries
    knn = make_router("knn").fit(trajectories)
    for name, router in (("random", make_router("random", seed=1)), ("knn (from memory)", knn)):
        test_app = graph.compile(pool=dataset.replay_pool("test"), router=router)
        tests = [{"query": q, "query_id": i} for q, i in zip(dataset.test.queries, dataset.test.query_ids, strict=True)]
        results = asyncio.run(test_app.arun_many(tests, concurrency=32))
        acc = sum(r.task.score or 0 for r in results) / len(results)
        print(f"{name:18s} accuracy {acc:.3f}  mean cost ${sum(r.cost_usd for r in results) / len(results):.5f}")

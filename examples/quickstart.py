"""Quickstart: a routed two-role graph on the local SmolLM2 pool, under a hard budget.

    python examples/quickstart.py "Which river flows through Paris?"
"""

import sys

from agentroute import AgentGraph, Budget, ModelPool, make_router
from agentroute.memory import SQLMemory

question = sys.argv[1] if len(sys.argv) > 1 else "Which river flows through Paris?"
graph = (
    AgentGraph("quickstart")
    .add_role("executor", prompt="Answer the question in one sentence.")
    .add_role("verifier", prompt="Repeat the answer if it is right, else correct it.",
              input=lambda s: f"Question: {s['query']}\nAnswer: {s['outputs']['executor']}")
    .add_edge("executor", "verifier")
)
with SQLMemory("sqlite:///runs/quickstart.db") as memory:
    app = graph.compile(pool=ModelPool.default(), router=make_router("cascade"), memory=memory,
                        budget=Budget(usd=0.0002, calls=6))
    result = app.run(question)
print(f"{result.status}: {result.answer!r} for ${result.cost_usd:.7f}")
for step in result.steps:
    print(f"  {step.stage:9s} {step.agent.key:32s} {step.tokens_in:4d}+{step.tokens_out:<4d} ${step.cost_usd:.7f}")

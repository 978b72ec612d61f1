"""Write, register and check a router of your own, then use it by name.

    python examples/custom_router.py
"""

from agentroute import AgentGraph, ModelCard, ModelPool, make_router
from agentroute.pool import LoggedOutcome, ReplayBackend
from agentroute.routers import Router, register
from agentroute.routers.base import decide
from agentroute.testing import CHECKS, KIT_ROUTERS


@register
class LengthRouter(Router):
    """Short inputs go to the cheapest agent, long ones to the dearest affordable one."""

    name = "by-length"

    def __init__(self, *, max_chars: int = 80):
        self.max_chars = max_chars

    def route(self, ctx):
        order = sorted(range(len(ctx.candidates)), key=ctx.cost_of)
        pick = order[0] if len(ctx.step_input) <= self.max_chars else order[-1]
        return decide(self, ctx, pick, why=f"input of {len(ctx.step_input)} chars")


KIT_ROUTERS.add("by-length")
for check in CHECKS:  # the same conformance kit every shipped router passes
    check("by-length")
cards = [ModelCard(id=m, backend="replay", input_price=p, output_price=p) for m, p in (("small", 0.1), ("large", 10.0))]
outcomes = [LoggedOutcome("q1", m, 1.0, c, f"{m} answer") for m, c in (("small", 1e-4), ("large", 1e-2))]
replay_pool = lambda: ModelPool(cards, {"replay": ReplayBackend(outcomes)})  # noqa: E731
app = AgentGraph("one").add_role("executor", prompt="answer").compile(pool=replay_pool(), router=make_router("by-length"))
print(app.run("short", query_id="q1").steps[0].agent.model, app.run("x" * 200, query_id="q1").steps[0].agent.model)

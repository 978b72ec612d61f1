"""`agentroute eval` sweeps a predicted-utility router with the same tie rule as serving (cheaper
agent, then the key sorting first): was, eval gave an exact tie to the table's first column while
``route`` gave it to the first key, so the evaluated curve was not the served router's."""

import numpy as np
import pytest

from agentroute.eval.harness import sweep_router
from agentroute.outcomes import OutcomeTable
from agentroute.routers import make_router
from agentroute.routers.utility import sweep
from agentroute.testing import contexts

N = 6


def table(models, scores, costs):
    return OutcomeTable(query_ids=[f"q{i}" for i in range(N)], queries=[f"question {i}?" for i in range(N)],
                        models=list(models), scores=np.array([scores] * N), costs=np.array([costs] * N))  # fmt: skip


@pytest.mark.parametrize("lam", [0.0, 0.5])
def test_eval_and_serving_break_a_tie_alike(lam):
    # zeta and alpha: the same logged outcomes, so the same predicted utility; zeta is column 0
    outcomes = table(["zeta", "alpha", "mid"], [0.9, 0.9, 0.2], [1e-3, 1e-3, 1e-4])
    router = make_router("per-task", cost_weight=lam).fit(outcomes)
    ctxs = contexts(outcomes, subsets=False)
    swept = sweep_router(router, ctxs, outcomes, values=[lam])
    evaluated = [outcomes.models[j] for j in swept.choices[0]]
    served = [router.route(c).agent.model for c in ctxs]
    assert served == ["alpha"] * N
    assert evaluated == served


def test_the_sweep_helper_breaks_ties_by_name_too():
    score, cost = np.array([[0.9, 0.9, 0.2]]), np.array([[1.0, 1.0, 0.1]])
    assert sweep(score, cost, [0.0], names=["zeta", "alpha", "mid"]).tolist() == [[1]]

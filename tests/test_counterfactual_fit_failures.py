"""``eval --from`` fits its learned routers on the failed calls too: an agent that fails often is
learned as failing, as the estimate scores its failed tasks 0."""

from __future__ import annotations

from agentroute.eval.counterfactual import evaluate_from_memory
from tests.helpers import flaky_outcomes, log_explored, replay_pool


def test_a_learned_router_learns_that_an_agent_fails(tmp_path):
    """``small`` answers right but fails on every odd query (no fallback: the task fails, scored 0);
    ``large`` always answers, scoring 0.8. The fit saw ``small``'s answers alone (1.0 against 0.8),
    so ``strongest`` chose it, and its estimate was ``small``'s true 0.5; it now chooses ``large``."""
    url = f"sqlite:///{tmp_path}/m.db"
    log_explored(url, 40, flaky_outcomes(40, large_score=0.8), max_fallbacks=0)
    result = evaluate_from_memory(url, ["strongest", "fixed:model=large"], pool=replay_pool(40), n_boot=50)
    assert result["fitted_on"] == 20 and result["failed_scored_0"] > 0
    strongest, large = result["routers"]
    assert strongest["score"] == large["score"] and strongest["matched"] == large["matched"], result


def test_an_outage_is_not_learned_as_the_fault_of_the_agents_it_hit(tmp_path):
    """Every model fails on one query in three and the fallback tries the other: those tasks failed
    on every candidate, no agent's fault. ``large`` (1.0) is tried on each of them, and ``small``
    (0.9) first on most other queries: scored 0 there, ``large`` would look worse than ``small``."""
    url = f"sqlite:///{tmp_path}/m.db"
    log_explored(url, 40, flaky_outcomes(40, small_fails_on_odd=False, outage_every=3, small_score=0.9), max_fallbacks=1)
    result = evaluate_from_memory(url, ["strongest", "fixed:model=large"], pool=replay_pool(40), n_boot=50)
    assert result["failed_scored_0"] > 0
    strongest, large = result["routers"]
    assert strongest["score"] == large["score"] and strongest["matched"] == large["matched"], result

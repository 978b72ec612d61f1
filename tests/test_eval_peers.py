"""The eval's peers keep their own order whatever order the user lists routers in (helper-68's
review of 7b2ba6f): the reference among tied peers, and results.json's "peers", were otherwise
decided by the user's listing."""

from __future__ import annotations

from agentroute.eval import evaluate
from agentroute.eval.harness import PEERS


def test_peers_are_listed_in_their_own_order(routerbench) -> None:
    data = routerbench(limit=120)
    result = evaluate(data, ["cheapest", "logreg", "knn"], seed=0, n_boot=0, progress=False)
    assert result.peers == [p for p in PEERS if isinstance(p, str)]
    assert [r.name for r in result.routers][:3] == ["cheapest", "logreg", "knn"]  # rows as listed

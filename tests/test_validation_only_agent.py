"""An agent whose logged outcomes all fall in a learned router's validation rows is still learned
from (helper-68's review of e33838b): its score head was untrained, scoring it at random."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from agentroute.eval.datasets import RoutingDataset
from agentroute.eval.harness import build_contexts
from agentroute.outcomes import OutcomeTable
from agentroute.routers import make_router
from agentroute.routers.utility import validation_split

pytest.importorskip("torch")
GPT4 = "gpt-4-1106-preview"


def _only_in_validation(data: RoutingDataset, fraction: float) -> OutcomeTable:
    """RouterBench train rows where GPT-4's outcomes are logged only on the rows the router keeps
    for validation (a model added late to the logs, say)."""
    table = data.train
    fit, _ = validation_split(len(table), fraction, 0)
    scores = np.array(table.scores, dtype=float)
    scores[fit, list(table.models).index(GPT4)] = np.nan
    return dataclasses.replace(table, scores=scores)


@pytest.mark.parametrize(("name", "params"), [("mlp", {"epochs": 40}), ("mf", {"epochs": 40})])
def test_an_agent_logged_only_in_the_validation_rows_is_learned(name: str, params: dict, routerbench) -> None:
    table = _only_in_validation(routerbench(limit=400), 0.15)
    gpt4 = list(table.models).index(GPT4)
    logged = np.array(table.scores, dtype=float)[:, gpt4]
    router = make_router(name, seed=0, **params).fit(table)
    ctxs = build_contexts(routerbench(limit=400), "train")[0][:200]
    predicted, _ = router.predict(ctxs)
    mean = float(predicted[:, [a.model for a in ctxs[0].candidates].index(GPT4)].mean())
    assert abs(mean - float(np.nanmean(logged))) < 0.15, (mean, float(np.nanmean(logged)))

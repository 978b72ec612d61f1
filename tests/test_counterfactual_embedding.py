"""Estimating an embedding router (knn …) on logged traffic embeds the logged queries in one batch."""

from __future__ import annotations

import uuid

import numpy as np

from agentroute.embed import default_embedder
from agentroute.eval.counterfactual import LoggedStep, LoggedTask, estimate_router
from agentroute.outcomes import OutcomeTable
from agentroute.routers import make_router
from agentroute.types import Agent, RouteContext


def test_the_logged_queries_are_embedded_in_one_batch(monkeypatch):
    """knn's route() embeds the one context it is given: replayed on 5,000 logged tasks that was
    5,000 encoder runs (most of ``eval --from``'s time with knn, ~2× the time of one batch)."""
    tag = uuid.uuid4().hex  # texts the embedding cache cannot hold yet
    models = ("small", "large")
    table = OutcomeTable([f"f{i}" for i in range(6)], [f"{tag} fit {i}" for i in range(6)], list(models),
                         np.tile([0.5, 0.9], (6, 1)), np.tile([0.001, 0.01], (6, 1)), [None] * 6)  # fmt: skip
    knn = make_router("knn", k=3).fit(table)
    agents = [Agent(model=m) for m in models]
    p = {a.key: 0.5 for a in agents}
    tasks = [
        LoggedTask(f"t{i}", None, 1.0, 0.001, [LoggedStep(RouteContext(query=f"{tag} asked {i}", candidates=agents, task_id=f"t{i}"), agents[0].key, 0.5, p)])
        for i in range(12)
    ]  # fmt: skip
    embedder, batches = default_embedder(), []
    encode = embedder._encode
    monkeypatch.setattr(embedder, "_encode", lambda texts, advance: batches.append(len(texts)) or encode(texts, advance))
    estimate = estimate_router(knn, tasks, n_boot=0)
    assert estimate.n == 12 and batches == [12], batches

"""The warning for a trained router routed over pool agents it never saw (``allow_new_agents``) says
what happens (they are scored by the training mean) and what to do about it (retrain on this pool),
in one line; before it read "…; they would be scored by the training mean (--allow-new-agents)"."""

from __future__ import annotations

import logging

import pytest

from agentroute import AgentGraph, ModelCard, ModelPool, make_router
from agentroute.loading import load_router
from agentroute.testing import sample_outcomes


def test_the_new_agents_warning_says_what_happens_and_what_to_do(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    path = make_router("strongest").fit(sample_outcomes(40)).save(tmp_path / "strongest")  # trained on small, mid, large
    pool = ModelPool([ModelCard(id=i, backend="replay", input_price=1, output_price=1) for i in ("small", "large", "newcomer")])
    warnings: list[str] = []
    router = load_router(str(path), pool=pool, allow_new_agents=True, warn=warnings.append)
    [warning] = warnings
    assert warning.startswith(f"router {path} (strongest): routing over pool agent(s) unseen in training: executor:newcomer:direct")
    assert "they are scored by the training mean" in warning and "would be" not in warning
    assert "retrain on this pool (`agentroute train NAME --from MEMORY_URL`" in warning
    assert "\n" not in warning
    with caplog.at_level(logging.WARNING, logger="agentroute"):  # the same router in Python: heard once
        AgentGraph("qa").add_role("executor", prompt="a").compile(pool=pool, router=router, allow_new_agents=True)
    assert "unseen in training" not in caplog.text

"""`agentroute train router-r1` builds its SFT traces with real pool calls (minutes on a CPU): a
progress bar now counts them on a terminal (was: one line, "building the traces…", then nothing
until the warm-up began)."""

from __future__ import annotations

import asyncio

from agentroute.budget import Budget
from agentroute.dispatch.dispatcher import Dispatcher
from agentroute.routers import make_router
from agentroute.routers.router_r1.agent import LoopSettings, ThinkRouteLoop
from agentroute.routers.router_r1.sft import build_traces
from tests.test_router_r1 import ScriptedPolicy, echo_pool


def test_building_the_traces_shows_a_bar_counting_them(monkeypatch, capsys):
    monkeypatch.setenv("AGENTROUTE_PROGRESS", "1")  # what a terminal gets
    pool, backend = echo_pool()
    loop = ThinkRouteLoop(ScriptedPolicy([]), pool, LoopSettings(info_tokens=5))
    rows = [{"question": f"q{i}", "answer": "a"} for i in range(3)]
    traces = asyncio.run(build_traces(loop, Dispatcher(pool, make_router("cheapest")), rows,
                                      budget=Budget(usd=1.0), direct_every=0))
    assert len(traces) == 3 and not any(t.failed for t in traces) and len(backend.calls) == 3
    err = capsys.readouterr().err
    assert "sft traces:" in err and "/3 [" in err, err  # the bar, with the number of traces to build

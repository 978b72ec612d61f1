"""`agentroute web --out` writes an episode's cost without float noise: ``1.61e-05``, as summed
step costs print in a table, not ``1.6100000000000002e-05``."""

from __future__ import annotations

import json
from collections import Counter

import pytest


def test_an_out_line_carries_the_cost_without_float_noise():
    pytest.importorskip("rich")
    from agentroute.cli.web_cmd import episode_line
    from agentroute.web.agent import EpisodeResult

    cost = 0.1 * 1.61e-4  # a step's tokens × its price: 1.6100000000000002e-05 in binary
    result = EpisodeResult("click-test", 0, "t1", "done", 1.0, True, 1, cost, Counter(), 0.5, [], [], 0)
    line = json.dumps(episode_line(result, batch="b", router="r"))
    assert '"cost_usd": 1.61e-05' in line, line
    assert json.loads(line)["cost_usd"] == pytest.approx(cost)

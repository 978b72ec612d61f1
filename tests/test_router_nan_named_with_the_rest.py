"""A NaN or infinite option is named with every other option refused, in one line, in its range's
wording.

Was: the first NaN or infinite value alone (``knn: 'cost_weight' is infinite (give a finite number)``),
the rest (``'k'``, ``'shrinkage'``) unsaid until it was fixed and the command rerun.
"""

from __future__ import annotations

import math

import pytest

from agentroute.errors import ConfigurationError
from agentroute.routers import make_router
from agentroute.routers.base import Router, check_range
from agentroute.types import Decision, RouteContext


def test_knn_names_the_infinite_the_nan_and_the_out_of_range_together() -> None:
    with pytest.raises(ConfigurationError) as refused:
        make_router("knn", k=0, cost_weight=math.inf, shrinkage=math.nan)
    assert str(refused.value) == (
        "knn: 'cost_weight' must be a finite number ≥ 0 (got inf); 'k' must be an integer ≥ 1 (got 0); "
        "'shrinkage' must be a finite number ≥ 0 (got nan)"
    )


class _Own(Router):
    """A router of one's own: a float option with no range check, and a seed."""

    name = "own-nan-test"

    def __init__(self, *, weight: float = 1.0, width: int = 1, seed: int = 0):
        self.weight, self.width, self.seed = weight, width, seed

    def _check_params(self) -> None:
        check_range(self, "width", low=1, integer=True)

    def route(self, ctx: RouteContext) -> Decision:
        raise NotImplementedError


def test_a_router_of_ones_own_gets_the_common_checks_with_its_own() -> None:
    with pytest.raises(ConfigurationError) as refused:
        _Own._build({"weight": math.nan, "width": 0, "seed": -1})
    assert str(refused.value) == (
        "own-nan-test: 'width' must be an integer ≥ 1 (got 0); 'weight' is NaN (give a finite number); "
        "'seed' must be an integer ≥ 0 (got -1)"
    )

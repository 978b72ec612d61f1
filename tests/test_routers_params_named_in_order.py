"""A torch router given several bad training parameters names every one, in the order of its
signature (`make_router`, `--router mlp:...`), in one line.

Was: the first check that failed won, in the order the code ran them: mlp with ``dropout=1.5, lr=0``
named only ``lr`` (dropout comes first in the signature), with ``lr=0, epochs=0`` only ``epochs``; and
a bad ``cost_weight`` or ``query_chars`` (every utility router checks them) hid the rest.
"""

from __future__ import annotations

import importlib.util

import pytest

from agentroute.errors import ConfigurationError
from agentroute.routers import make_router

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs the [ml] extra")


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("mlp", {"lr": 0, "dropout": 1.5}, "mlp: 'dropout' must be a finite number in [0, 1) (got 1.5); 'lr' must be a finite number > 0 (got 0)"),
        (
            "mlp",
            {"epochs": 0, "lr": 0, "cost_loss_weight": -1, "hidden": 0},
            "mlp: 'hidden' must be an integer ≥ 1 (got 0); 'lr' must be a finite number > 0 (got 0); "
            "'epochs' must be an integer ≥ 1 (got 0); 'cost_loss_weight' must be a finite number ≥ 0 (got -1)",
        ),
        ("mf", {"epochs": 0, "lr": 0}, "mf: 'lr' must be a finite number > 0 (got 0); 'epochs' must be an integer ≥ 1 (got 0)"),
        (
            "graph-router",
            {"llm_dropout": 1, "epochs": 0, "lr": 0},
            "graph-router: 'lr' must be a finite number > 0 (got 0); 'epochs' must be an integer ≥ 1 (got 0); "
            "'llm_dropout' must be a finite number in [0, 1) (got 1)",
        ),
        ("mlp", {"dropout": 1.0}, "mlp: 'dropout' must be a finite number in [0, 1) (got 1.0)"),  # one: as it always read
        (  # the routing knob and query_chars (every utility router's checks) are named with the rest
            "mlp",
            {"dropout": 1.5, "cost_weight": -1, "query_chars": -2},
            "mlp: 'cost_weight' must be a finite number ≥ 0 (got -1); 'dropout' must be a finite number in [0, 1) (got 1.5); "
            "'query_chars' must be an integer ≥ 0 or None (got -2)",
        ),
        (
            "graph-router",
            {"hidden": 0, "cost_weight": -1},
            "graph-router: 'cost_weight' must be a finite number ≥ 0 (got -1); 'hidden' must be an integer ≥ 1 (got 0)",
        ),
    ],
)
def test_every_bad_parameter_is_named_in_signature_order(name: str, params: dict, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        make_router(name, **params)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("name", "needs", "params", "message"),
    [
        (  # was: ZeroDivisionError (hidden_channels % heads ran before heads' range)
            "kg-gnn",
            "torch_geometric",
            {"encoder": "hgt", "heads": 0},
            "kg-gnn: 'heads' must be an integer ≥ 1 (got 0)",
        ),
        (
            "kg-gnn",
            "torch_geometric",
            {"encoder": "hgt", "hidden_channels": 6, "heads": 4, "lr": 0},
            "kg-gnn: 'hidden_channels' (got 6) must be divisible by 'heads' (got 4); "
            "'lr' must be a finite number > 0 (got 0)",
        ),
        ("knn", "torch", {"k": 0, "cost_weight": -1}, "knn: 'cost_weight' must be a finite number ≥ 0 (got -1); "
         "'k' must be an integer ≥ 1 (got 0)"),  # fmt: skip
        ("logreg", "sklearn", {"c": 0, "cost_weight": -1}, "logreg: 'cost_weight' must be a finite number ≥ 0 "
         "(got -1); 'c' must be a finite number > 0 (got 0)"),  # fmt: skip
    ],
)
def test_every_utility_router_names_each_bad_parameter(name: str, needs: str, params: dict, message: str) -> None:
    pytest.importorskip(needs)
    with pytest.raises(ConfigurationError) as info:
        make_router(name, **params)
    assert str(info.value) == message

"""mlp's and mf's learning rate is checked by ``check_range``, as every other router option is.

Was: ``'lr' must be > 0 (got 0)``, their own wording of the rule graph-router words as ``'lr' must be a
finite number > 0``.
"""

from __future__ import annotations

import importlib.util

import pytest

from agentroute.errors import ConfigurationError
from agentroute.routers import make_router

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs the [ml] extra")


@pytest.mark.parametrize("name", ["mlp", "mf", "graph-router"])
@pytest.mark.parametrize("lr", [0, -0.5])
def test_one_wording_for_the_learning_rate(name: str, lr: float) -> None:
    with pytest.raises(ConfigurationError) as refused:
        make_router(name, lr=lr)
    assert str(refused.value) == f"{name}: 'lr' must be a finite number > 0 (got {lr!r})"

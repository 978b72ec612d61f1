"""An unknown option and a value of the wrong type, given together, are named together in one line.

Was: the unknown option alone (``knn takes no parameter kk …``); fixed, the next run said ``k='x' (str)
is not int``: fix, rerun, the next.
"""

from __future__ import annotations

import pytest

from agentroute.errors import ConfigurationError
from agentroute.routers import make_router

SAID = "knn takes no parameter kk (it takes: cost_weight, k, shrinkage, query_chars); did you mean 'k'?; k='x' (str) is not int"


def test_make_router_names_the_unknown_option_and_the_wrong_type() -> None:
    with pytest.raises(ConfigurationError) as refused:
        make_router("knn", kk=1, k="x")
    assert str(refused.value) == SAID


def test_set_params_names_them_together_and_leaves_the_router_as_it_was() -> None:
    router = make_router("knn", k=3)
    with pytest.raises(ConfigurationError) as refused:
        router.set_params(kk=1, k="x")
    assert str(refused.value) == SAID
    assert router.k == 3

"""Routers saved before their torch networks moved out of the router modules (so that `agentroute
routers list` and `make_router` no longer import torch) load and predict as before, and a seeded fit
still writes the same arrays.

``tests/data/routers_8160c6b`` holds mf, mlp and graph-router fitted and saved on commit 8160c6b by
running this file as a script there (``python tests/test_routers_saved_before_lazy_torch.py DIR``),
with their predictions on three contexts (``predictions.npz``). The tolerances only admit another
CPU's last bits: on the machine that saved them every array and prediction is equal to the bit.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from agentroute.loading import load_router
from agentroute.outcomes import OutcomeTable
from agentroute.routers import make_router
from agentroute.types import Agent, RouteContext

SAVED = Path(__file__).parent / "data" / "routers_8160c6b"
PARAMS = {
    "mf": {"dim": 4, "epochs": 3, "seed": 3},
    "mlp": {"hidden": 4, "epochs": 3, "seed": 3},
    "graph-router": {"hidden": 4, "epochs": 10, "patience": 5, "queries_per_step": 6, "seed": 3},
}


def table() -> OutcomeTable:
    queries = [f"question {i}: what is {i} + {i}?" for i in range(12)]
    scores = np.array([[float(i % 2), 1.0, float(i % 3 == 0)] for i in range(12)])
    costs = np.array([[0.001, 0.01, 0.003]] * 12)
    return OutcomeTable([f"q{i}" for i in range(12)], queries, ["small", "large", "mid"], scores, costs)


def contexts() -> list[RouteContext]:
    agents = [Agent(model=m) for m in ("small", "large", "mid")]
    return [RouteContext(query=f"what is {i} times {i}?", query_id=f"t{i}", candidates=agents) for i in range(3)]


def save_all(out: Path) -> None:
    """Fit and save each router into ``out / name``, their predictions into ``predictions.npz``."""
    expected = {}
    for name, params in PARAMS.items():
        router = make_router(name, **params).fit(table())
        router.save(out / name)
        expected[f"{name}.score"], expected[f"{name}.cost"] = router.predict(contexts())  # type: ignore[attr-defined]
    np.savez(out / "predictions.npz", **expected)


@pytest.mark.parametrize("name", list(PARAMS))
def test_a_router_saved_before_loads_and_predicts_the_same(name: str) -> None:
    pytest.importorskip("torch_geometric" if name == "graph-router" else "torch")
    loaded = load_router(SAVED / name)
    score, cost = loaded.predict(contexts())  # type: ignore[attr-defined]
    with np.load(SAVED / "predictions.npz") as expected:
        np.testing.assert_allclose(score, expected[f"{name}.score"], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(cost, expected[f"{name}.cost"], rtol=1e-6, atol=1e-12)


# graph-router's 10 epochs of message passing carry another CPU's last bits further: on an AMD EPYC
# (AVX-512) 1 of its 1,536 weights differs by 7.9e-5 relative (1.1e-6 absolute) from the saving machine's
RTOL = {"graph-router": 1e-3}


@pytest.mark.parametrize("name", list(PARAMS))
def test_a_seeded_fit_gives_the_arrays_saved_before(name: str) -> None:
    pytest.importorskip("torch_geometric" if name == "graph-router" else "torch")
    arrays = make_router(name, **PARAMS[name]).fit(table()).get_arrays()
    with np.load(SAVED / name / "arrays.npz") as before:
        assert list(arrays) == before.files  # the order too: it makes the file's bytes (arrays_sha256)
        for key in before.files:
            np.testing.assert_allclose(arrays[key], before[key], rtol=RTOL.get(name, 1e-5), atol=1e-7, err_msg=key)


if __name__ == "__main__":
    save_all(Path(sys.argv[1]))

"""The learned routers' saved format and seeded initialisation stay what they were when their shared
code moved to one home (``training/embedding_net.py`` for mf and mlp, ``nn/residual_hetero.py``
for the kg-gnn encoders): a router saved before loads and predicts the same, a seed gives the same
weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agentroute.errors import ConfigurationError
from agentroute.loading import load_router
from agentroute.outcomes import OutcomeTable
from agentroute.routers import make_router
from agentroute.types import Agent, RouteContext

torch = pytest.importorskip("torch")

QUERIES = [f"question {i}: what is {i} + {i}?" for i in range(12)]

# the net.* arrays a saved router holds (the torch module's state_dict, under "net.")
NET_ARRAYS = {
    "mf": {"net.P.weight", "net.text_proj.weight", "net.classifier.weight", "net.bias"},
    "mlp": {"net.0.weight", "net.0.bias", "net.3.weight", "net.3.bias"},
}


@pytest.fixture(scope="module")
def table() -> OutcomeTable:
    scores = np.array([[float(i % 2), 1.0, float(i % 3 == 0)] for i in range(12)])
    costs = np.array([[0.001, 0.01, 0.003]] * 12)
    return OutcomeTable([f"q{i}" for i in range(12)], QUERIES, ["small", "large", "mid"], scores, costs)


def contexts() -> list[RouteContext]:
    agents = [Agent(model=m) for m in ("small", "large", "mid")]
    return [RouteContext(query=f"what is {i} times {i}?", query_id=f"t{i}", candidates=agents) for i in range(4)]


@pytest.mark.parametrize(
    ("name", "params"), [("mf", {"dim": 8, "epochs": 3}), ("mlp", {"hidden": 8, "epochs": 3})]
)
def test_a_saved_torch_router_keeps_its_files_and_predicts_the_same(
    tmp_path: Path, table: OutcomeTable, name: str, params: dict
) -> None:
    router = make_router(name, seed=3, **params).fit(table)
    folder = Path(router.save(tmp_path / name))
    loaded = load_router(folder)
    with np.load(folder / "arrays.npz") as arrays:
        assert {k for k in arrays.files if k.startswith("net.")} == NET_ARRAYS[name]
    assert loaded.epochs_run_ == router.epochs_run_ >= 1
    for before, after in zip(router.predict(contexts()), loaded.predict(contexts()), strict=True):
        np.testing.assert_array_equal(before, after)
    again = make_router(name, seed=3, **params).fit(table)  # seeded: the same weights again
    for key, value in again.get_arrays().items():
        np.testing.assert_array_equal(value, router.get_arrays()[key], err_msg=key)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("mf", {"lr": 0}, "mf: 'lr' must be > 0 (got 0)"),
        ("mlp", {"lr": -1.0}, "mlp: 'lr' must be > 0 (got -1.0)"),
        ("mf", {"dim": 0}, "'dim'"),
        ("mlp", {"hidden": 0}, "'hidden'"),
        ("mlp", {"dropout": 1.0}, "mlp: 'dropout' must be in [0, 1) (got 1.0)"),
        ("mf", {"validation_fraction": 1.0}, "'validation_fraction'"),
    ],
)
def test_a_bad_training_parameter_names_the_router_and_the_field(
    table: OutcomeTable, name: str, params: dict, message: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        make_router(name, **params).fit(table)
    assert message in str(info.value) and "\n" not in str(info.value)


METADATA = (["query", "agent"], [("query", "to", "agent"), ("agent", "rev_to", "query")])


def reference_encoder(kind: str, seed: int) -> dict[str, torch.Tensor]:
    """The parameters the encoders always had: HeteroDictLinear ``lin_in``, then ``convs`` of
    torch-geometric's own layers, built and reset in that order under ``seed``."""
    import torch_geometric.nn as pyg_nn

    torch.manual_seed(seed)
    lin_in = pyg_nn.HeteroDictLinear(6, 8, types=METADATA[0])
    if kind == "sage":
        convs = [pyg_nn.HeteroConv({et: pyg_nn.SAGEConv((8, 8), 8) for et in METADATA[1]}, aggr="sum") for _ in range(2)]
    else:
        convs = [pyg_nn.HGTConv(8, 8, METADATA, heads=2) for _ in range(2)]
    lin_in.reset_parameters()
    for conv in convs:
        conv.reset_parameters()
    state = {f"lin_in.{k}": v for k, v in lin_in.state_dict().items()}
    for i, conv in enumerate(convs):
        state.update({f"convs.{i}.{k}": v for k, v in conv.state_dict().items()})
    return state


@pytest.mark.parametrize("kind", ["sage", "hgt"])
def test_the_hetero_encoders_keep_their_parameters_and_seeded_values(kind: str) -> None:
    pytest.importorskip("torch_geometric")
    from agentroute.nn import HeteroSAGE, HGTEncoder

    torch.manual_seed(5)
    if kind == "sage":
        encoder: torch.nn.Module = HeteroSAGE(6, 8, 2, metadata=METADATA)
    else:
        encoder = HGTEncoder(6, 8, 2, metadata=METADATA, heads=2)
    state, reference = encoder.state_dict(), reference_encoder(kind, 5)
    assert list(state) == list(reference)
    for key, value in reference.items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)
    x = {"query": torch.randn(3, 6), "agent": torch.randn(2, 6)}
    edges = {METADATA[1][0]: torch.tensor([[0, 1, 2], [0, 1, 1]]), METADATA[1][1]: torch.tensor([[0, 1], [0, 2]])}
    encoder.eval()
    out = encoder(x, edges)
    assert {t: tuple(v.shape) for t, v in out.items()} == {"query": (3, 8), "agent": (2, 8)}

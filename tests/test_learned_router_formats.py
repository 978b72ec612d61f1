"""The learned routers' saved format and seeded initialisation stay what they were when their shared
code moved to one home (``training/embedding_net.py`` for mf and mlp, ``nn/residual_hetero.py``
for the kg-gnn encoders): a router saved before loads and predicts the same, a seed gives the same
weights, the encoders compute what their torch-geometric layers always computed.

Fitted routers are shared by the module (one small fit each): the file's time is torch's and
torch-geometric's import."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import numpy as np
import pytest

from agentroute.errors import ConfigurationError
from agentroute.loading import load_router
from agentroute.outcomes import OutcomeTable
from agentroute.routers import make_router
from agentroute.routers.base import Router
from agentroute.types import Agent, RouteContext

torch = pytest.importorskip("torch")

QUERIES = [f"question {i}: what is {i} + {i}?" for i in range(12)]
PARAMS = {"mf": {"dim": 8, "epochs": 3, "seed": 3}, "mlp": {"hidden": 8, "epochs": 3, "seed": 3}}

# the members of a saved router's arrays.npz, in the order every version wrote them (the file's
# bytes, and so the manifest's arrays_sha256, depend on it): the means, the router's own, net.*
SAVED_ARRAYS = {
    "mf": [
        "score_mean",
        "cost_mean",
        "net.bias",
        "net.P.weight",
        "net.text_proj.weight",
        "net.classifier.weight",
    ],
    "mlp": [
        "score_mean",
        "cost_mean",
        "log_cost_mean",
        "log_cost_std",
        "net.0.weight",
        "net.0.bias",
        "net.3.weight",
        "net.3.bias",
    ],
}


@pytest.fixture(scope="module")
def table() -> OutcomeTable:
    scores = np.array([[float(i % 2), 1.0, float(i % 3 == 0)] for i in range(12)])
    costs = np.array([[0.001, 0.01, 0.003]] * 12)
    return OutcomeTable([f"q{i}" for i in range(12)], QUERIES, ["small", "large", "mid"], scores, costs)


@pytest.fixture(scope="module")
def saved(table: OutcomeTable, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Router, Path]]:
    """Each torch router fitted once and saved: (router, its folder)."""
    out = {}
    for name, params in PARAMS.items():
        router = make_router(name, **params).fit(table)
        out[name] = router, Path(router.save(tmp_path_factory.mktemp(name)))
    return out


def contexts() -> list[RouteContext]:
    agents = [Agent(model=m) for m in ("small", "large", "mid")]
    return [
        RouteContext(query=f"what is {i} times {i}?", query_id=f"t{i}", candidates=agents) for i in range(4)
    ]


def assert_same_predictions(a: Router, b: Router) -> None:
    for before, after in zip(a.predict(contexts()), b.predict(contexts()), strict=True):  # type: ignore[attr-defined]
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("name", ["mf", "mlp"])
def test_a_saved_torch_router_keeps_its_files_and_predicts_the_same(
    saved: dict[str, tuple[Router, Path]], name: str
) -> None:
    router, folder = saved[name]
    with np.load(folder / "arrays.npz") as arrays:
        assert arrays.files == SAVED_ARRAYS[name]
    loaded = load_router(folder)
    assert loaded.epochs_run_ == router.epochs_run_ >= 1  # type: ignore[attr-defined]
    assert_same_predictions(router, loaded)
    assert_same_predictions(router, pickle.loads(pickle.dumps(loaded)))
    assert_same_predictions(router, copy.deepcopy(router))


@pytest.mark.parametrize("name", ["mf", "mlp"])
def test_a_seed_gives_the_same_weights(
    saved: dict[str, tuple[Router, Path]], table: OutcomeTable, name: str
) -> None:
    first, again = saved[name][0].get_arrays(), make_router(name, **PARAMS[name]).fit(table).get_arrays()
    assert list(again) == list(first)
    for key, value in first.items():
        np.testing.assert_array_equal(again[key], value, err_msg=key)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("mf", {"lr": 0}, "mf: 'lr' must be a finite number > 0 (got 0)"),
        ("mlp", {"lr": -1.0}, "mlp: 'lr' must be a finite number > 0 (got -1.0)"),
        ("mf", {"dim": 0}, "'dim'"),
        ("mlp", {"hidden": 0}, "'hidden'"),
        ("mlp", {"dropout": 1.0}, "mlp: 'dropout' must be a finite number in [0, 1) (got 1.0)"),
        ("mf", {"validation_fraction": 1.0}, "'validation_fraction'"),
    ],
)
def test_a_bad_training_parameter_names_the_router_and_the_field(
    table: OutcomeTable, name: str, params: dict, message: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        make_router(name, **params).fit(table)
    assert message in str(info.value) and "\n" not in str(info.value)


# "entity" only sends: it receives no message, and keeps its projected representation
METADATA = (
    ["query", "agent", "entity"],
    [("query", "to", "agent"), ("agent", "rev_to", "query"), ("entity", "in", "query")],
)
EDGES = [[[0, 1, 2], [0, 1, 1]], [[0, 1], [0, 2]], [[0, 1, 1], [2, 0, 1]]]


def reference_encoder(kind: str, seed: int) -> tuple[torch.nn.Module, list[torch.nn.Module]]:
    """The encoders as they always were: HeteroDictLinear ``lin_in``, then ``convs`` of
    torch-geometric's own layers, built and reset in that order under ``seed``."""
    import torch_geometric.nn as pyg_nn

    torch.manual_seed(seed)
    lin_in = pyg_nn.HeteroDictLinear(6, 8, types=METADATA[0])
    if kind == "sage":
        convs = [
            pyg_nn.HeteroConv({et: pyg_nn.SAGEConv((8, 8), 8) for et in METADATA[1]}, aggr="sum")
            for _ in range(2)
        ]
    else:
        convs = [pyg_nn.HGTConv(8, 8, METADATA, heads=2) for _ in range(2)]
    lin_in.reset_parameters()
    for conv in convs:
        conv.reset_parameters()
    return lin_in, convs


def reference_forward(
    kind: str, lin_in: torch.nn.Module, convs: list[torch.nn.Module], x: dict, edges: dict
) -> dict:
    """h⁰ = ReLU(W_τ x); h^(ℓ+1) = h^ℓ + layer(h^ℓ), through a ReLU for SAGE (eval mode: no dropout)."""
    h = {t: torch.relu(v) for t, v in lin_in(x).items()}
    for conv in convs:
        out = conv(h, edges)
        h = {
            t: v + (torch.relu(out[t]) if kind == "sage" else out[t]) if out.get(t) is not None else v
            for t, v in h.items()
        }
    return h


@pytest.mark.filterwarnings("ignore:There exist node types:UserWarning")  # "entity", on purpose
@pytest.mark.parametrize(("kind", "fused"), [("sage", True), ("sage", False), ("hgt", None)])
def test_the_hetero_encoders_keep_their_parameters_and_what_they_compute(
    kind: str, fused: bool | None
) -> None:
    pytest.importorskip("torch_geometric")
    from agentroute.nn import HeteroSAGE, HGTEncoder

    torch.manual_seed(5)
    if kind == "sage":
        encoder: torch.nn.Module = HeteroSAGE(6, 8, 2, metadata=METADATA, fused=bool(fused))
    else:
        encoder = HGTEncoder(6, 8, 2, metadata=METADATA, heads=2)
    lin_in, convs = reference_encoder(kind, 5)
    reference = {f"lin_in.{k}": v for k, v in lin_in.state_dict().items()}
    for i, conv in enumerate(convs):
        reference.update({f"convs.{i}.{k}": v for k, v in conv.state_dict().items()})
    state = encoder.state_dict()
    assert list(state) == list(reference)
    for key, value in reference.items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)

    torch.manual_seed(6)
    x = {"query": torch.randn(3, 6), "agent": torch.randn(3, 6), "entity": torch.randn(2, 6)}
    edges = {et: torch.tensor(e) for et, e in zip(METADATA[1], EDGES, strict=True)}
    encoder.eval()
    with torch.no_grad():
        out, expected = encoder(x, edges), reference_forward(kind, lin_in, convs, x, edges)
    assert list(out) == list(expected) == METADATA[0]
    for t in METADATA[0]:
        torch.testing.assert_close(out[t], expected[t], rtol=1e-5, atol=1e-6, msg=t)
    torch.testing.assert_close(out["entity"], torch.relu(lin_in(x)["entity"]), rtol=0, atol=0)

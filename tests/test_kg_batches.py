"""kg-gnn training batches: gathered from one collation of every graph, each mini-batch equals
torch-geometric's own (``DataLoader``/``Batch.from_data_list``) tensor for tensor, in the same
order and with the same random draws, so a fit gives the same loss curve as before."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_geometric")

from torch_geometric.data import Batch  # noqa: E402
from torch_geometric.loader import DataLoader  # noqa: E402

from agentroute.kg.graph import METADATA, GraphBuilder  # noqa: E402
from agentroute.kg.trainer import KGTrainConfig, _Batches, _loader, train_kg_net  # noqa: E402
from agentroute.nn import KGRouterNet  # noqa: E402

QUERIES = [
    "Who wrote 'War and Peace' and when was it published in Moscow?",
    "2 + 2",
    "Paris is the capital of France; Berlin is the capital of Germany.",
    "Summarise the 1969 Apollo 11 mission of NASA.",
    "hello",
    "Which is larger, 3.5 or 3.14?",
    "Alan Turing worked at Bletchley Park with Gordon Welchman in 1940.",
]


class HashEmbedder:
    """Deterministic 8-d vectors per text (no model download)."""

    dim = 8

    def embed(self, texts):
        rows = [np.random.default_rng(zlib.crc32(t.encode())).normal(size=self.dim) for t in texts]
        return np.array(rows, dtype=np.float32).reshape(len(texts), self.dim)


def kg_graphs(n: int = 40, seed: int = 0) -> list:
    """Real kg graphs (entities, relations, 1–4 agents; some with no entity) with training labels."""
    rng = np.random.default_rng(seed)
    queries = [QUERIES[i % len(QUERIES)] + f" #{i}" * (i % 3) for i in range(n)]
    agents = [[f"agent {j}" for j in rng.choice(6, size=rng.integers(1, 5), replace=False)] for _ in range(n)]
    graphs = GraphBuilder(HashEmbedder()).build(queries, agents)
    for g, names in zip(graphs, agents, strict=True):
        g["agent"].score = torch.tensor(rng.random(len(names)), dtype=torch.float32)
        g["agent"].cost = torch.tensor(rng.random(len(names)), dtype=torch.float32)
        g["agent"].col = torch.tensor([int(a.split()[1]) for a in names])
    return graphs


def assert_same_batch(got, want) -> None:
    assert type(got) is type(want) and got.num_graphs == want.num_graphs
    assert [s._key for s in got.stores] == [s._key for s in want.stores]
    for a, b in zip(got.stores, want.stores, strict=True):
        assert list(a.keys()) == list(b.keys())
        for key in b.keys():
            x, y = a[key], b[key]
            if torch.is_tensor(y):
                assert x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y), (a._key, key)
            else:
                assert x == y, (a._key, key)
    assert same(got._slice_dict, want._slice_dict) and same(got._inc_dict, want._inc_dict)


def same(a, b) -> bool:
    """Equal nested dicts of tensors (or ``None``)."""
    if isinstance(b, dict):
        return isinstance(a, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in b)
    return a is None if b is None else a.dtype == b.dtype and torch.equal(a, b)


def test_every_gathered_batch_equals_torch_geometric_collation():
    graphs = kg_graphs()
    assert any(g["entity"].num_nodes == 0 for g in graphs) and any(g["relation"].num_nodes > 0 for g in graphs)
    batches = _Batches(graphs)
    assert batches.gather
    rng = np.random.default_rng(1)
    for index in ([0], [len(graphs) - 1, 0], list(range(len(graphs))), *(rng.permutation(len(graphs))[:k].tolist() for k in (3, 7, 16))):
        assert_same_batch(batches(index), Batch.from_data_list([graphs[i] for i in index]))


def test_shuffled_epochs_give_torch_geometric_batches_and_random_draws():
    graphs = kg_graphs(23)
    ours, theirs = _loader(graphs, 5, shuffle=True, seed=7), DataLoader(graphs, batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(7))
    torch.manual_seed(0)
    mine = [b for _ in range(3) for b in ours]
    state = torch.get_rng_state()
    torch.manual_seed(0)
    want = [b for _ in range(3) for b in theirs]
    assert torch.equal(state, torch.get_rng_state())  # each pass draws from the global generator alike
    assert len(mine) == len(want) == 15
    for got, ref in zip(mine, want, strict=True):
        assert_same_batch(got, ref)


def test_graphs_with_other_attributes_are_collated_per_batch():
    graphs = kg_graphs(6)
    for k, g in enumerate(graphs):
        g.weight = float(k)  # a graph-level attribute: not gathered, collated as torch-geometric does
    batches = _Batches(graphs)
    assert not batches.gather
    assert_same_batch(batches([4, 1, 2]), Batch.from_data_list([graphs[i] for i in (4, 1, 2)]))


def test_training_on_gathered_batches_keeps_the_loss_curve():
    """The fit on the new batches equals one written here on torch-geometric's own DataLoader: the
    same losses and, with dropout, the same random draws (validation reads draw one per epoch)."""
    from agentroute.nn.kl import SoftKLLoss

    graphs, val = kg_graphs(30), kg_graphs(6, seed=1)
    config = KGTrainConfig(epochs=3, patience=3, batch_size=8, seed=4, lr=1e-2)
    rng = np.random.default_rng(2)

    def net():
        torch.manual_seed(0)
        return KGRouterNet(HashEmbedder.dim, hidden_channels=8, num_layers=2, metadata=METADATA, dropout=0.3)

    report = train_kg_net(net(), graphs, val, val_scores=rng.random((6, 6)), val_costs=rng.random((6, 6)),
                          cost_estimate=np.full(6, 0.5), config=config)  # fmt: skip
    ref, loss_fn = net(), SoftKLLoss(config.cost_lambda, config.temperature)
    optimiser = torch.optim.Adam(ref.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loader = DataLoader(graphs, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(4))
    curve = []
    for _ in range(config.epochs):
        ref.train()
        total = 0.0
        for b in loader:
            optimiser.zero_grad()
            loss = loss_fn(ref(b.x_dict, b.edge_index_dict, b["agent"].batch), b["agent"].score, b["agent"].cost,
                           b["agent"].batch, b.num_graphs)  # fmt: skip
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * b.num_graphs
        curve.append(total / len(graphs))
        list(DataLoader(val, batch_size=256))  # the validation pass (its draw; its logits are not needed here)
    assert report.train_loss == curve and len(report.val_aiq) == 3

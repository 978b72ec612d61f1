"""The AgentRouter (kg-gnn): soft-supervision loss, descriptors, collaboration, inductive agents,
and learning on real RouterBench outcomes."""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from agentroute.errors import ConfigurationError
from agentroute.kg.agents import card_descriptor
from agentroute.outcomes import OutcomeTable
from agentroute.pool.card import ModelCard
from agentroute.testing import KIT_PARAMS, contexts, sample_cards, sample_outcomes
from agentroute.types import Agent

torch = pytest.importorskip("torch")
pytest.importorskip("torch_geometric")

from agentroute.nn import KGRouterNet, SoftKLLoss, grouped_kl_div, grouped_log_softmax, soft_targets  # noqa: E402
from agentroute.routers.kg_gnn import KGRouter  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DESCRIPTORS = KIT_PARAMS["kg-gnn"]["descriptors"]


class HashEmbedder:
    """Deterministic 32-d unit vectors per text (no model download): for mechanics, not quality."""

    dim = 32

    def embed(self, texts):
        rows = [np.random.default_rng(zlib.crc32(t.encode())).normal(size=self.dim) for t in texts]
        out = np.array(rows, dtype=np.float32).reshape(len(texts), self.dim)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def small_router(**params) -> KGRouter:
    base = {
        "descriptors": DESCRIPTORS,
        "embedder": HashEmbedder(),
        "epochs": 4,
        "hidden_channels": 16,
        "seed": 0,
    }
    return KGRouter(**{**base, **params})


@pytest.fixture(scope="module")
def fitted() -> KGRouter:
    return small_router().fit(sample_outcomes())


# -- the loss -------------------------------------------------------------------------------------
def test_kl_loss_matches_a_hand_computed_value():
    # query 0: three agents, scores (1, 0, 1), uniform p_θ; query 1: two agents, scores (0, 1), p_θ ∝ (e, 1)
    scores = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])
    costs = torch.zeros(5)
    logits = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0])
    index = torch.tensor([0, 0, 0, 1, 1])
    e = math.e
    p0 = [e / (2 * e + 1), 1 / (2 * e + 1), e / (2 * e + 1)]  # softmax((1, 0, 1)/T), T = 1
    kl0 = sum(p * math.log(p / (1 / 3)) for p in p0)
    kl1 = (e - 1) / (e + 1)  # p* = (1, e)/(1+e) against p_θ = (e, 1)/(1+e)
    loss = SoftKLLoss(cost_lambda=0.0, temperature=1.0)(logits, scores, costs, index)
    assert loss.item() == pytest.approx((kl0 + kl1) / 2, rel=1e-6)


def test_soft_targets_trade_score_against_normalised_cost():
    # both right; the dearer one (normalised cost 1) loses λ/T = 0.5/0.1 = 5 nats
    p = soft_targets(
        torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0]), torch.tensor([0, 0]), cost_lambda=0.5
    )
    assert p.tolist() == pytest.approx([1 / (1 + math.exp(-5)), math.exp(-5) / (1 + math.exp(-5))], rel=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        soft_targets(torch.ones(1), torch.zeros(1), torch.zeros(1, dtype=torch.long), temperature=0.0)


def test_grouped_log_softmax_is_stable_and_kl_is_zero_at_the_target():
    logp = grouped_log_softmax(torch.tensor([1000.0, 999.0, -5.0]), torch.tensor([0, 0, 1]))
    assert torch.isfinite(logp).all()
    assert logp.exp().tolist() == pytest.approx(
        [1 / (1 + math.exp(-1)), math.exp(-1) / (1 + math.exp(-1)), 1.0]
    )
    target = torch.tensor([0.7, 0.3, 0.0, 1.0])
    index = torch.tensor([0, 0, 1, 1])
    assert (
        grouped_kl_div(target, torch.log(torch.tensor([0.7, 0.3, 0.5, 0.5]))[[0, 1, 2, 3]], index).item() > 0
    )
    exact = torch.log(torch.tensor([0.7, 0.3, 1e-30, 1.0]))
    assert grouped_kl_div(target, exact, index).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("encoder", ["sage", "hgt"])
def test_the_network_scores_every_agent_of_a_batch(encoder):
    from torch_geometric.data import Batch

    from agentroute.kg import METADATA, GraphBuilder

    graphs = GraphBuilder(HashEmbedder()).build(
        ["Paris is in France.", "two plus two"], [["a", "b", "c"], ["a"]]
    )
    batch = Batch.from_data_list(graphs)
    net = KGRouterNet(32, 16, metadata=METADATA, encoder=encoder, heads=4)
    z = net(batch.x_dict, batch.edge_index_dict, batch["agent"].batch)
    assert z.shape == (4,) and torch.isfinite(z).all()
    with pytest.raises(ValueError, match="divisible by 'heads'"):
        KGRouterNet(32, 18, metadata=METADATA, encoder="hgt", heads=4)


def test_fused_hetero_sage_equals_heteroconv_of_sageconv():
    from torch_geometric.data import Batch

    from agentroute.kg import METADATA, GraphBuilder

    graphs = GraphBuilder(HashEmbedder()).build(
        ["The Eiffel Tower was built in 1889 by Gustave Eiffel.", "two plus two"],
        [["a", "b", "c"], ["a", "d"]],
    )
    batch = Batch.from_data_list(graphs)
    torch.manual_seed(0)
    net = KGRouterNet(32, 16, metadata=METADATA, encoder="sage").eval()
    args = (batch.x_dict, batch.edge_index_dict, batch["agent"].batch)
    with torch.no_grad():
        fused = net(*args)
        net.encoder.fused = False
        reference = net(*args)
    torch.testing.assert_close(fused, reference)
    grads = {}
    for fused in (True, False):  # the same gradients through both paths
        net.encoder.fused = fused
        net.zero_grad()
        net.encoder.dropout = 0.0
        net.train()(*args).square().sum().backward()
        grads[fused] = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    assert grads[True].keys() == grads[False].keys() and len(grads[True]) > 20
    for name, grad in grads[True].items():
        torch.testing.assert_close(grad, grads[False][name], rtol=1e-4, atol=1e-6)


# -- descriptors ----------------------------------------------------------------------------------
def test_training_agent_without_recipe_or_card_is_described_from_the_log():
    router = KGRouter(
        descriptors={"small": "a small model.", "large": "a large model."},
        embedder=HashEmbedder(), epochs=1, hidden_channels=16,
    ).fit(sample_outcomes(12))
    assert router.descriptor_sources_ == {"small": "recipe", "mid": "card (log)", "large": "recipe"}
    assert "logged price" in router.descriptors_["mid"] and "medium" in router.descriptors_["mid"]


def test_candidate_without_card_or_description_is_named(fitted):
    ctx = contexts(sample_outcomes(3), subsets=False)[0]
    ctx.candidates = [*ctx.candidates, Agent(model="mystery")]
    with pytest.raises(ConfigurationError, match=r"'executor:mystery:direct' has no descriptor"):
        fitted.route(ctx)


def test_cards_given_to_fit_describe_the_agents():
    router = KGRouter(embedder=HashEmbedder(), epochs=1, hidden_channels=16).fit(
        sample_outcomes(30), cards=sample_cards()
    )
    assert router.descriptors_["large"] == card_descriptor(sample_cards()["large"], "direct")
    assert set(router.descriptor_sources_.values()) == {"card (cards)"}


def test_fit_accepts_trajectories():
    router = small_router(epochs=1).fit(sample_outcomes(30).to_trajectories())
    assert router.columns_ == ["executor:small:direct", "executor:mid:direct", "executor:large:direct"] and router.is_fitted


def test_a_pool_describes_the_agents_of_trajectories(tmp_path):
    pool = tmp_path / "pool.yaml"
    pool.write_text(yaml.safe_dump({"models": [c.model_dump(mode="json") for c in sample_cards().values()]}))
    router = KGRouter(embedder=HashEmbedder(), epochs=1, hidden_channels=16, pool=str(pool))
    router.fit(sample_outcomes(30).to_trajectories())
    assert router.descriptors_["executor:mid:direct"] == card_descriptor(sample_cards()["mid"], "direct")
    assert router.descriptor_sources_["executor:mid:direct"] == "card (pool)"


# -- routing --------------------------------------------------------------------------------------
def test_a_query_with_no_entities_still_routes(fitted):
    ctx = contexts(sample_outcomes(3), subsets=False)[0]
    ctx.query = ctx.step_input = "what is two plus two"
    decision = fitted.route(ctx)
    assert decision.agents[0] in ctx.candidates and decision.evidence["entities"] == []
    assert sum(decision.evidence["p"].values()) == pytest.approx(1.0)


def test_route_agrees_with_predict_and_choose(fitted):
    ctxs = contexts(sample_outcomes(), subsets=False)[:20]
    fitted.set_params(cost_weight=0.3)
    score, cost = fitted.predict(ctxs)
    picks = fitted.choose(score, cost)
    assert [fitted.route(c).agent for c in ctxs] == [ctxs[i].candidates[j] for i, j in enumerate(picks)]
    np.testing.assert_allclose(fitted.predict(ctxs[:1])[0], score[:1], rtol=1e-5, atol=1e-6)
    fitted.set_params(cost_weight=0.0)


def test_collaboration_names_top_agents_with_weights_within_the_budget(fitted):
    ctx = contexts(sample_outcomes(3), subsets=False)[0]
    single = fitted.route(ctx)
    assert len(single.agents) == 1 and single.weights == [1.0]

    fitted.set_params(collaborate_k=3)
    try:
        ctx.remaining = {"usd": 10.0}
        three = fitted.route(ctx)
        assert len(three.agents) == 3 and three.agents[0] == single.agents[0]
        assert sum(three.weights) == pytest.approx(1.0) and three.weights == sorted(
            three.weights, reverse=True
        )
        p = three.evidence["p"]
        assert three.weights[1] / three.weights[0] == pytest.approx(
            p[three.agents[1].key] / p[three.agents[0].key]
        )

        # the budget limits k: the top agent plus only what still fits
        top_cost = ctx.costs[single.agent.key]
        ctx.remaining = {"usd": top_cost + min(v for k, v in ctx.costs.items() if k != single.agent.key)}
        capped = fitted.route(ctx)
        assert capped.agents[0] == single.agent
        assert sum(ctx.costs[a.key] for a in capped.agents) <= ctx.remaining["usd"] + 1e-12
        assert len(capped.agents) == 2

        # a cumulative-probability cut-off stops once the mass is reached
        ctx.remaining = {}
        fitted.set_params(collaborate_mass=1e-9)
        assert len(fitted.route(ctx).agents) == 1
    finally:
        fitted.set_params(collaborate_k=1, collaborate_mass=None)


def test_shrinkage_pulls_scores_toward_the_agents_prior(fitted):
    assert fitted.shrinkage_ in (0.0, 0.1, 0.2, 0.3, 0.5)  # chosen on the validation AIQ
    assert set(fitted.train_report_["shrinkage_val_aiq"]) == {"0.0", "0.1", "0.2", "0.3", "0.5"}
    full = small_router(shrinkage=1.0).fit(sample_outcomes())
    ctxs = contexts(sample_outcomes(), subsets=False)[:5]
    score, _ = full.predict(ctxs)
    np.testing.assert_allclose(score, np.broadcast_to(full.temperature * full.prior_, score.shape))
    with pytest.raises(ConfigurationError, match="shrinkage"):
        small_router(shrinkage=1.5).fit(sample_outcomes(12))


def test_bad_parameters_are_refused_at_fit():
    with pytest.raises(ConfigurationError, match="collaborate_k"):
        small_router(collaborate_k=0).fit(sample_outcomes(12))
    with pytest.raises(ConfigurationError, match="encoder"):
        small_router(encoder="gcn").fit(sample_outcomes(12))


def test_a_new_agent_is_scored_from_its_descriptor_alone():
    full = sample_outcomes()
    seen = OutcomeTable(
        full.query_ids, full.queries, ["small", "mid"], full.scores[:, :2], full.costs[:, :2], full.task_types
    )
    router = small_router().fit(seen)
    assert router.columns_ == ["small", "mid"]
    ctx = contexts(full, subsets=False)[0]  # candidates small, mid and the unseen large (with a card)
    score, cost = router.predict([ctx])
    assert np.isfinite(score).all() and np.isfinite(cost).all() and score.shape == (1, 3)
    decision = router.route(ctx)
    assert set(decision.evidence["p"]) == {a.key for a in ctx.candidates}
    # the new agent's score comes from its descriptor: change it, its score (only) changes
    ctx.cards = {**ctx.cards, "large": ModelCard(id="large", backend="replay", input_price=10, output_price=10,
                                                  tier="large", description="A very different model.")}  # fmt: skip
    router.set_params(descriptors={"small": DESCRIPTORS["small"], "mid": DESCRIPTORS["mid"]})
    again, _ = router.predict([ctx])
    assert again[0, 2] != pytest.approx(score[0, 2])


# -- real data ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def routerbench(data_dir):
    """The RouterBench dataset, read once for the tests of this module (it is never modified)."""
    from agentroute.eval.datasets import load_dataset

    return load_dataset(f"routerbench:{data_dir / 'routerbench'}")


def test_the_recipe_builds_the_router_and_describes_every_routerbench_model(routerbench):
    recipe = yaml.safe_load((ROOT / "training" / "kg_gnn.yaml").read_text())
    router = KGRouter(**recipe["params"])
    dataset = routerbench
    assert recipe["router"] == router.name
    assert set(router.descriptors or {}) == set(dataset.models)


def test_learns_on_routerbench_and_beats_random_and_the_zero_router(routerbench):
    """Fit on the train split (short training), sweep λ on the held-out test split."""
    from agentroute.eval import metrics as M
    from agentroute.eval.harness import build_contexts
    from agentroute.routers.utility import sweep

    dataset = routerbench
    recipe = yaml.safe_load((ROOT / "training" / "kg_gnn.yaml").read_text())["params"]
    router = KGRouter(**{**recipe, "epochs": 6, "patience": 3}).fit(dataset.train)
    test = dataset.test
    ctxs, _ = build_contexts(dataset, "test")  # costs: each model's mean train cost
    score, cost = router.predict(ctxs)
    picks = sweep(score, cost, router.knob_grid, router.cost_scale_)
    rows = np.arange(len(test))
    points = [(test.costs[rows, p].mean(), test.scores[rows, p].mean()) for p in picks]
    singles = M.single_model_points(test.scores, test.costs)
    router_aiq, zero_aiq = M.aiq(points, singles), M.aiq(singles, singles)
    random_accuracy = float(test.scores.mean())  # uniform random routing, in expectation
    assert points[0][1] > random_accuracy + 0.1, (points[0], random_accuracy)
    assert router_aiq > zero_aiq + 0.01, (router_aiq, zero_aiq)  # ≈ +0.026 measured; noise ±0.010

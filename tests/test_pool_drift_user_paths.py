"""The pool changes after a router was trained: a user reprices, adds, removes or reorders models
and serves the saved router on the new pool (issue: pool drift).

Real logged data: dcrouter (LLMRouter) replay traffic served by an exploring router through a
one-step graph and the dispatcher into a SQLite memory, then routers trained from that memory, as
``agentroute train NAME --from MEMORY_URL`` does. CI-sized: 40 queries served twice.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from agentroute import AgentGraph
from agentroute.loading import load_router
from agentroute.memory import SQLMemory
from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool
from agentroute.routers import Router, make_router
from agentroute.routers.explore import ExploreRouter
from agentroute.types import RouteContext

GRAPH = AgentGraph("logged").add_role("executor", prompt="answer")
#: The model added to the pool after training: logged in the data, never served while training.
NEWCOMER = "gemma-2-9b-it"


@pytest.fixture(scope="module")
def dcrouter(data_dir):
    from agentroute.eval.datasets import load_dataset

    return load_dataset(f"dcrouter:{data_dir / 'llmrouter'}", limit=40, seed=0)


@pytest.fixture(scope="module")
def trajectories(dcrouter, tmp_path_factory):
    """Every train query served twice by a uniformly exploring router into a real SQLite memory."""
    url = f"sqlite:///{tmp_path_factory.mktemp('drift')}/memory.db"
    table = dcrouter.train
    items = [{"query": q, "query_id": i} for q, i in zip(table.queries, table.query_ids, strict=True)] * 2
    items = [{**item, "task_id": f"log-{n}"} for n, item in enumerate(items)]
    pool = pool_of(dcrouter, [m for m in dcrouter.models if m != NEWCOMER], split="train")
    with SQLMemory(url) as memory:
        router = ExploreRouter(base="cheapest", epsilon=1.0, seed=0)
        asyncio.run(GRAPH.compile(pool=pool, router=router, memory=memory).arun_many(items, concurrency=16))
        memory.flush()
        found = memory.trajectories(with_score=True)
    assert found and any(s.tokens_in > 0 and s.cost_usd > 0 for t in found for s in t.steps)
    return found


def trained_models(trajectories) -> list[str]:
    return sorted({s.agent.model for t in trajectories for s in t.steps if s.status == "ok"})


def pool_of(dcrouter, models, split="test", **prices: tuple[float, float]) -> ModelPool:
    """The replay pool of ``split`` restricted to ``models``, with the cards named in ``prices`` repriced."""
    cards = dcrouter.cards()
    backend = dcrouter.replay_pool(split).backend(models[0])

    def card(m: str) -> ModelCard:
        if m not in prices:
            return cards[m]
        return ModelCard(**{**cards[m].model_dump(), "input_price": prices[m][0], "output_price": prices[m][1]})

    return ModelPool([card(m) for m in models], backends={"replay": backend})


def context(pool: ModelPool, query: str, models=None) -> RouteContext:
    """What the dispatcher hands a router: candidates, their card-priced costs and their cards."""
    agents = [a for a in pool.agents() if models is None or a.model in models]
    cards = {a.model: pool.card(a.model) for a in agents}
    costs = {a.key: cards[a.model].usd(len(query) / 4, cards[a.model].max_tokens) for a in agents}
    return RouteContext(query=query, candidates=agents, costs=costs, cards=cards)


@pytest.mark.parametrize("name", ["knn", "per-task", "logreg"])
def test_a_repriced_model_is_routed_at_its_new_price_after_save_and_load(name, dcrouter, trajectories, tmp_path):
    """User trains a cost-aware router, saves it, then the provider cuts one model's price (or a
    model's price goes up): the loaded router's decision follows the pool's new price, not the
    cost logged in training, and says so in ``why``."""
    models = trained_models(trajectories)
    make_router(name, cost_weight=100.0).fit(trajectories).save(tmp_path / name)  # a cost-seeking λ
    same = load_router(str(tmp_path / name), pool=pool_of(dcrouter, models))
    for query in dcrouter.test.queries[:20]:  # a query on which the best-scored model is too dear
        before = same.route(context(pool_of(dcrouter, models), query))
        assert "repriced" not in before.why  # an unchanged pool: factor exactly 1, as trained
        predicted = before.evidence["predicted_score"]
        best = max(predicted, key=lambda k: (predicted[k], k))
        if before.agent.key != best:
            break
    else:
        pytest.fail("the best-scored model was chosen on all 20 queries: no price cut to test")
    best_model = best.split(":")[1]
    # the best-scored model becomes free: it is now the choice
    cut = pool_of(dcrouter, models, **{best_model: (0.0, 0.0)})
    after = load_router(str(tmp_path / name), pool=cut).route(context(cut, query))
    assert after.agent.key == best and f"{best_model} repriced since training: cost ×0" in after.why
    # the chosen model becomes a thousand times dearer: it is no longer chosen
    chosen = before.agent.model
    card = dcrouter.cards()[chosen]
    dear = pool_of(dcrouter, models, **{chosen: (card.input_price * 1000, card.output_price * 1000)})
    again = load_router(str(tmp_path / name), pool=dear).route(context(dear, query))
    assert again.agent.model != chosen
    cost = again.evidence["predicted_cost"]
    assert cost[before.agent.key] == pytest.approx(before.evidence["predicted_cost"][before.agent.key] * 1000)


def test_scores_follow_the_agent_not_its_position_when_the_pool_is_reordered_or_shrunk(dcrouter, trajectories):
    """Removing a trained model or listing the pool in another order never shifts one model's
    predictions onto another (no index misalignment), and a removed model is never chosen."""
    models = trained_models(trajectories)
    router = make_router("knn", cost_weight=1.0).fit(trajectories)
    pool = pool_of(dcrouter, models)
    query = dcrouter.test.queries[1]
    full = router.route(context(pool, query)).evidence["predicted_score"]
    removed = max(full, key=full.get).split(":")[1]
    rest = [m for m in models if m != removed]
    reordered = pool_of(dcrouter, rest[::-1])
    decision = router.route(context(reordered, query))
    assert decision.agent.model != removed
    shrunk = decision.evidence["predicted_score"]
    assert list(shrunk) == [a.key for a in reordered.agents()]
    assert all(shrunk[k] == pytest.approx(full[k]) for k in shrunk)
    assert all(math.isfinite(v) for v in decision.scores.values())


def test_a_model_added_after_training_gets_a_card_priced_cost_and_says_so(dcrouter, trajectories, tmp_path):
    """A model the router never saw: refused at load unless new agents are allowed; then scored by
    the training mean at its card's price, finite, and named in ``why`` when chosen — also when a
    budget filter left it as the only candidate."""
    models, newcomer = trained_models(trajectories), NEWCOMER
    assert newcomer not in models
    make_router("knn", cost_weight=1.0).fit(trajectories).save(tmp_path / "knn")
    grown = pool_of(dcrouter, [*models, newcomer])
    warnings: list[str] = []
    router = load_router(str(tmp_path / "knn"), pool=grown, allow_new_agents=True, warn=warnings.append)
    assert len(warnings) == 1 and f"executor:{newcomer}:direct" in warnings[0]
    decision = router.route(context(grown, dcrouter.test.queries[2]))
    assert all(math.isfinite(v) for v in decision.scores.values())
    alone = router.route(context(grown, dcrouter.test.queries[2], models=[newcomer]))
    assert alone.agent.model == newcomer and "unseen in training" in alone.why


def test_a_router_saved_before_prices_were_kept_still_loads_and_routes(dcrouter, trajectories, tmp_path):
    """A router directory written by an older agentroute (no ``prices`` in its state) loads and
    routes at the logged costs, as before."""
    import json

    models = trained_models(trajectories)
    path = make_router("knn", cost_weight=1.0).fit(trajectories).save(tmp_path / "old")
    manifest = json.loads((path / "router.json").read_text())
    del manifest["state"]["prices"]
    (path / "router.json").write_text(json.dumps(manifest))
    loaded = Router.load(path)
    pool = pool_of(dcrouter, models, **{models[0]: (0.0, 0.0)})
    decision = loaded.route(context(pool, dcrouter.test.queries[0]))
    assert "repriced" not in decision.why and decision.agent.model in models


def test_ant_colony_says_how_it_treats_a_new_model_and_learns_it_online(dcrouter, trajectories, tmp_path):
    """User adds a model to the pool of a trained ant colony: at load a note (not silence) says the
    newcomer starts at τ_init and is learned online; serving it in explore mode with online
    learning grows a node for it, and the colony saved afterwards knows it (no note on reload).
    A pool with none of the colony's agents is refused, as for the other trained routers."""
    from agentroute.errors import ConfigurationError

    models = trained_models(trajectories)
    make_router("ant-colony").fit(trajectories).save(tmp_path / "colony")
    grown = pool_of(dcrouter, [*models, NEWCOMER])
    warnings: list[str] = []
    colony = load_router(str(tmp_path / "colony"), pool=grown, warn=warnings.append)
    assert colony.known_agents() and NEWCOMER not in colony.known_agents()
    assert len(warnings) == 1 and f"executor:{NEWCOMER}:direct" in warnings[0] and "learned online" in warnings[0]
    alone = colony.route(context(grown, dcrouter.test.queries[0], models=[NEWCOMER]))
    assert alone.agent.model == NEWCOMER and "unseen in training" in alone.why
    table = dcrouter.test
    items = [{"query": q, "query_id": i, "task_id": f"new-{n}"} for n, (q, i) in enumerate(zip(table.queries, table.query_ids, strict=True))]
    asyncio.run(GRAPH.compile(pool=grown, router=colony.explore()).arun_many(items, concurrency=8))
    assert colony.flush(timeout=30)
    assert NEWCOMER in colony.known_agents()
    colony.save(tmp_path / "grown")
    again: list[str] = []
    load_router(str(tmp_path / "grown"), pool=grown, warn=again.append)
    assert again == []
    with pytest.raises(ConfigurationError, match="offers none of them"):
        load_router(str(tmp_path / "colony"), pool=pool_of(dcrouter, [NEWCOMER]))


def test_graph_planner_is_checked_against_the_pool_it_serves(dcrouter):
    """graph-planner learned agent embeddings for its training pool: a newcomer was routed through
    the shared unknown-agent row in silence, and a pool with none of its agents was served as if
    trained. Now the pool check names the newcomer (and how it is scored) and refuses a disjoint pool."""
    from agentroute.errors import ConfigurationError
    from agentroute.routers.base import check_pool
    from agentroute.testing import KIT_PARAMS

    table = dcrouter.train.rows(range(20))
    trained = [m for m in table.models if m != NEWCOMER]
    planner = make_router("graph-planner", **KIT_PARAMS["graph-planner"]).fit(table.columns([table.models.index(m) for m in trained]))
    assert sorted(planner.known_agents()) == sorted(trained)
    grown = pool_of(dcrouter, [*trained, NEWCOMER])
    notes = check_pool(planner, grown.agents())
    assert len(notes) == 1 and f"executor:{NEWCOMER}:direct" in notes[0] and "unknown-agent embedding" in notes[0]
    alone = planner.route(context(grown, dcrouter.test.queries[0], models=[NEWCOMER]))
    assert alone.agent.model == NEWCOMER and "unseen in training" in alone.why
    with pytest.raises(ConfigurationError, match="offers none of them"):
        check_pool(planner, pool_of(dcrouter, [NEWCOMER]).agents())


def test_cli_ask_routes_a_saved_router_at_the_pool_files_new_price(dcrouter, trajectories, tmp_path):
    """`agentroute ask --router DIR --pool pool.yaml`: the user edits the pool file to make the
    best-scored model free; the saved router now picks it (the dispatcher hands the file's cards to
    the router), and the step's decision says why. The endpoint is a closed loopback port: the call
    fails, the routing decision is what is checked (in the JSON and the memory)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from tests.test_cli import closed_port

    models = trained_models(trajectories)
    router = make_router("knn", cost_weight=100.0).fit(trajectories)
    router.save(tmp_path / "knn")
    query = dcrouter.test.queries[3]
    before = router.route(context(pool_of(dcrouter, models), query))
    predicted = before.evidence["predicted_score"]
    best = max(predicted, key=predicted.get).split(":")[1]
    assert before.agent.model != best, "precondition: the best-scored model is too dear at the old price"
    cards, port, memory = dcrouter.cards(), closed_port(), f"sqlite:///{tmp_path}/m.db"
    pool = tmp_path / "pool.yaml"
    pool.write_text("models:\n" + "".join(
        f"  - id: {m}\n    backend: openai\n    model: {m}\n    base_url: http://127.0.0.1:{port}/v1\n    timeout_s: 2\n"
        f"    input_price: {0 if m == best else cards[m].input_price}\n    output_price: {0 if m == best else cards[m].output_price}\n"
        for m in models))  # fmt: skip
    (tmp_path / "one.py").write_text('from agentroute import AgentGraph\n\ngraph = AgentGraph("one").add_role("executor", prompt="answer")\n')
    exe = Path(sys.executable).parent / "agentroute"
    args = ["ask", query, "--graph", str(tmp_path / "one.py"), "--router", str(tmp_path / "knn"), "--pool", str(pool),
            "--memory", memory, "--json", "--budget-calls", "1"]  # fmt: skip
    result = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)
    assert result.stdout, result.stderr
    assert json.loads(result.stdout)["steps"][0]["model"] == best
    with SQLMemory(memory) as store:
        why = store.trajectories()[0].steps[0].decision.why
    assert f"{best} repriced since training: cost ×0" in why


def test_a_model_renamed_in_the_pool_is_named_with_the_fix(dcrouter, trajectories, tmp_path):
    """User renames a card after training (the provider's new model name as the card id): the load
    error names the pair and the fix — keep the trained id, put the new name in ``model:`` —, and
    the pool written that way loads."""
    from agentroute.errors import ConfigurationError

    models = trained_models(trajectories)
    make_router("knn").fit(trajectories).save(tmp_path / "knn")
    old = models[0]
    cards = [c for c in pool_of(dcrouter, models)]
    backend = dcrouter.replay_pool("test").backend(old)
    renamed = ModelPool([ModelCard(**{**c.model_dump(), "id": f"{old}-2025"}) if c.id == old else c for c in cards], backends={"replay": backend})
    with pytest.raises(ConfigurationError) as err:
        load_router(str(tmp_path / "knn"), pool=renamed)
    assert f"Renamed since training? '{old}-2025' (trained as '{old}')" in str(err.value)
    assert "keep the old id and put the provider's new name in the card's `model:` field" in str(err.value)
    fixed = ModelPool([ModelCard(**{**c.model_dump(), "model": f"{old}-2025"}) if c.id == old else c for c in cards], backends={"replay": backend})
    assert load_router(str(tmp_path / "knn"), pool=fixed).known_agents()


def test_kg_gnn_routes_a_repriced_model_at_its_new_price(dcrouter):
    """kg-gnn builds its own cost matrix: trained on the dataset (its cards' prices kept), the model
    it picks becomes a thousand times dearer in the pool and is dropped; cut to a tenth and picked
    again, with why saying so."""
    pytest.importorskip("torch_geometric")
    models = list(dcrouter.train.models)
    router = make_router("kg-gnn", epochs=10, cost_weight=100.0).fit(dcrouter)
    query = dcrouter.test.queries[0]
    before = router.route(context(pool_of(dcrouter, models), query))
    chosen = before.agent.model
    card = dcrouter.cards()[chosen]
    dear = pool_of(dcrouter, models, **{chosen: (card.input_price * 1000, card.output_price * 1000)})
    assert router.route(context(dear, query)).agent.model != chosen
    cheap = pool_of(dcrouter, models, **{chosen: (card.input_price / 10, card.output_price / 10)})
    again = router.route(context(cheap, query))
    assert again.agent.model == chosen and f"{chosen} repriced since training: cost ×0.1" in again.why


def test_explore_the_new_pool_then_retrain_and_the_router_knows_the_newcomer(dcrouter, trajectories, tmp_path):
    """The documented way to teach a utility router a model added after training: serve the new
    pool with an exploring wrapper around the saved router (new agents allowed), then train again
    from the memory — the retrained router knows the newcomer and loads on the new pool in silence."""
    models = trained_models(trajectories)
    make_router("knn").fit(trajectories).save(tmp_path / "knn")
    grown = pool_of(dcrouter, [*models, NEWCOMER])
    url = f"sqlite:///{tmp_path}/new.db"
    table = dcrouter.test
    items = [{"query": q, "query_id": i, "task_id": f"grown-{n}"} for n, (q, i) in enumerate(zip(table.queries, table.query_ids, strict=True))]
    explorer = ExploreRouter(base=str(tmp_path / "knn"), epsilon=0.5, seed=0)
    with SQLMemory(url) as memory:
        app = GRAPH.compile(pool=grown, router=explorer, memory=memory, allow_new_agents=True)
        asyncio.run(app.arun_many(items, concurrency=8))
        memory.flush()
        logged = memory.trajectories(with_score=True)
    assert any(s.agent.model == NEWCOMER for t in logged for s in t.steps)
    retrained = make_router("knn").fit([*trajectories, *logged])
    assert f"executor:{NEWCOMER}:direct" in retrained.known_agents() and NEWCOMER in retrained.prices_
    retrained.save(tmp_path / "knn2")
    warnings: list[str] = []
    load_router(str(tmp_path / "knn2"), pool=grown, warn=warnings.append)
    assert warnings == []


def test_a_strategy_added_to_a_card_is_named_as_a_new_agent_not_a_rename(dcrouter, trajectories, tmp_path):
    """User adds ``cot`` to a trained model's strategies: the load error says the strategy was never
    logged (no bogus "renamed 'm' (trained as 'm')" hint); allowed, the router routes over it."""
    from agentroute.errors import ConfigurationError

    models = trained_models(trajectories)
    make_router("knn").fit(trajectories).save(tmp_path / "knn")
    m = models[0]
    backend = dcrouter.replay_pool("test").backend(m)
    cards = [ModelCard(**{**c.model_dump(), "strategies": ("direct", "cot")}) if c.id == m else c for c in pool_of(dcrouter, models)]
    pool = ModelPool(cards, backends={"replay": backend})
    with pytest.raises(ConfigurationError) as err:
        load_router(str(tmp_path / "knn"), pool=pool)
    assert f"Strategies never logged: {m}:cot (logged as {m}:direct)" in str(err.value)
    assert "Renamed" not in str(err.value)
    router = load_router(str(tmp_path / "knn"), pool=pool, allow_new_agents=True, warn=lambda _: None)
    decision = router.route(context(pool, dcrouter.test.queries[0]))
    assert all(math.isfinite(v) for v in decision.scores.values())


def test_best_single_breaks_a_tie_at_todays_price_not_the_logged_one():
    """Two models tied on validation: best-single kept the one that was cheaper in the logs after
    the other's price was cut."""
    import numpy as np

    from agentroute.outcomes import OutcomeTable
    from agentroute.types import Agent

    n = 20
    table = OutcomeTable(
        query_ids=[f"q{i}" for i in range(n)], queries=[f"question {i}" for i in range(n)], models=["a", "b"],
        scores=np.ones((n, 2)), costs=np.tile([0.001, 0.002], (n, 1)),
    )
    router = make_router("best-single").fit(table)
    candidates = [Agent(model="a"), Agent(model="b")]
    a, b = (c.key for c in candidates)
    at_logged = RouteContext(query="x", candidates=candidates, costs={a: 0.001, b: 0.002})
    assert router.route(at_logged).agent.model == "a"
    repriced = RouteContext(query="x", candidates=candidates, costs={a: 0.001, b: 0.0001})
    assert router.route(repriced).agent.model == "b"

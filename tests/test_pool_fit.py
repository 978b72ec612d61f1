"""A trained router fits the pool it is used with, or says why not (issue 12, req 5)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agentroute import ModelCard, ModelPool, make_router
from agentroute.errors import ConfigurationError
from agentroute.loading import graph_agents, load_router
from agentroute.routers.base import check_pool, pool_fit
from agentroute.testing import sample_cards, sample_outcomes
from agentroute.types import Agent, RouteContext
from tests.test_cli import closed_port


@pytest.fixture(scope="module")
def knn_dir(tmp_path_factory):
    """knn trained on a dataset over models small, mid, large (role-free columns)."""
    path = tmp_path_factory.mktemp("routers") / "knn"
    make_router("knn").fit(sample_outcomes(60)).save(path)
    return path


def pool_of(*ids: str) -> ModelPool:
    return ModelPool([ModelCard(id=i, backend="replay", input_price=1, output_price=1) for i in ids])


def pool_file(tmp_path, *ids: str):
    path = tmp_path / "pool.yaml"
    port = closed_port()
    cards = "".join(
        f"  - id: {i}\n    backend: openai\n    model: {i}\n    base_url: http://127.0.0.1:{port}/v1\n"
        "    input_price: 1\n    output_price: 2\n"
        for i in ids
    )
    path.write_text("models:\n" + cards)
    return path


def test_a_pool_with_none_of_the_routers_agents_is_an_error_naming_them(knn_dir):
    with pytest.raises(ConfigurationError) as err:
        load_router(str(knn_dir), pool=pool_of("gpt-x", "llama-y"))
    message = str(err.value)
    assert "missing from the pool: small, mid, large" in message
    assert "executor:gpt-x:direct" in message and "offers none of them" in message
    with pytest.raises(ConfigurationError, match="offers none of them"):  # allowing new agents does not help
        load_router(str(knn_dir), pool=pool_of("gpt-x"), allow_new_agents=True)


def test_partial_overlap_is_an_error_unless_new_agents_are_allowed(knn_dir):
    with pytest.raises(ConfigurationError) as err:
        load_router(str(knn_dir), pool=pool_of("small", "large", "newcomer"))
    assert "unseen in training: executor:newcomer:direct" in str(err.value)
    assert "--allow-new-agents" in str(err.value)
    warnings: list[str] = []
    router = load_router(str(knn_dir), pool=pool_of("small", "large", "newcomer"), allow_new_agents=True, warn=warnings.append)
    assert len(warnings) == 1 and "executor:newcomer:direct" in warnings[0]
    cands = [Agent(model=m) for m in ("small", "large", "newcomer")]
    ctx = RouteContext(query=sample_outcomes(60).queries[0], candidates=cands)
    decision = router.route(ctx)
    if decision.agent.model == "newcomer":
        assert "unseen in training" in decision.why


def test_a_pool_with_a_subset_of_the_routers_agents_is_fine(knn_dir):
    router = load_router(str(knn_dir), pool=pool_of("small", "large"))
    assert pool_fit(router, pool_of("small", "large").agents()).missing == ["mid"]


def test_roles_count_memory_trained_routers_fit_only_the_roles_they_saw():
    from agentroute import AgentGraph

    router = make_router("strongest").fit(sample_outcomes(30).to_trajectories())  # executor:small:direct …
    pool = pool_of("small", "mid")
    one = AgentGraph("one").add_role("executor", prompt="p")
    assert check_pool(router, graph_agents(pool, one)) == []
    two = AgentGraph("two").add_role("planner", prompt="p").add_role("executor", prompt="q")
    assert {a.key for a in graph_agents(pool, two)} >= {"planner:small:direct", "executor:mid:direct"}
    with pytest.raises(ConfigurationError, match="planner:small:direct") as err:
        check_pool(router, graph_agents(pool, two))
    assert "no outcome at all for role(s) planner" in str(err.value)


def test_with_new_agents_allowed_a_role_never_seen_goes_to_the_cheapest_card():
    router = make_router("knn").fit(sample_outcomes(30).to_trajectories())  # executor steps only
    cards = sample_cards()
    planners = [Agent(role="planner", model=m) for m in ("large", "small", "mid")]
    costs = {a.key: cards[a.model].input_price * 1e-4 for a in planners}
    ctx = RouteContext(query="plan this", candidates=planners, role="planner", costs=costs)
    decision = router.route(ctx)
    assert decision.agent.model == "small" and "unseen in training" in decision.why


def test_rules_over_cards_have_no_trained_agents_to_fit():
    assert pool_fit(make_router("cheapest"), pool_of("x").agents()) is None
    assert check_pool(make_router("strongest"), pool_of("x").agents()) == []  # not fitted: card strength


def test_an_exploring_wrapper_is_checked_by_its_base(knn_dir):
    from agentroute.routers.explore import ExploreRouter

    with pytest.raises(ConfigurationError, match="offers none of them"):
        check_pool(ExploreRouter(base=str(knn_dir)), pool_of("zzz").agents())


def test_inductive_routers_are_allowed_and_say_so_in_why():
    pytest.importorskip("torch_geometric")
    from agentroute.testing import KIT_PARAMS

    router = make_router("graph-router", **KIT_PARAMS["graph-router"]).fit(sample_outcomes(60), cards=sample_cards())
    assert router.inductive
    cards = [*sample_cards().values(), ModelCard(id="newcomer", backend="replay", input_price=0.01, output_price=0.01, tier="small")]
    notes = check_pool(router, ModelPool(cards).agents())
    assert len(notes) == 1 and "scored from their descriptors: executor:newcomer:direct" in notes[0]
    newcomer = Agent(model="newcomer")
    ctx = RouteContext(query="What is 2 plus 2?", candidates=[newcomer], cards={c.id: c for c in cards},
                       costs={newcomer.key: 0.0001})  # fmt: skip
    decision = router.route(ctx)
    assert "executor:newcomer:direct unseen in training: scored from its descriptor" in decision.why


def _cli(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "agentroute"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300)


def test_cli_ask_and_run_exit_2_naming_the_missing_agents(knn_dir, tmp_path):
    memory = f"sqlite:///{tmp_path}/m.db"
    foreign = pool_file(tmp_path, "remote-a", "remote-b")
    result = _cli("ask", "hi", "--router", str(knn_dir), "--pool", str(foreign), "--memory", memory)
    assert result.returncode == 2, result.stdout + result.stderr
    err = " ".join(result.stderr.split())
    assert "missing from the pool: small, mid, large" in err and "planner:remote-a:direct" in err
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"query": "hi", "answer": "hello"}) + "\n")
    result = _cli("run", "qa", "--input", str(queries), "--router", str(knn_dir), "--pool", str(foreign), "--memory", memory)
    assert result.returncode == 2 and "offers none of them" in " ".join(result.stderr.split())


def test_cli_allow_new_agents_turns_the_partial_misfit_into_a_warning(knn_dir, tmp_path):
    memory = f"sqlite:///{tmp_path}/m.db"
    partial = pool_file(tmp_path, "small", "remote-b")
    graph = tmp_path / "one.py"
    graph.write_text('from agentroute import AgentGraph\ngraph = AgentGraph("one").add_role("executor", prompt="Answer.")\n')
    args = ["ask", "hi", "--graph", str(graph), "--router", str(knn_dir), "--pool", str(partial), "--memory", memory]
    result = _cli(*args)
    assert result.returncode == 2 and "executor:remote-b:direct" in " ".join(result.stderr.split())
    result = _cli(*args, "--allow-new-agents", "--json")
    err = " ".join(result.stderr.split())
    assert "warning" in err and "unseen in training: executor:remote-b:direct" in err
    assert result.returncode != 2  # it ran (the endpoint is closed: the task fails, exit 1)



def test_counterfactual_eval_of_a_trained_directory_checks_the_logged_candidates(knn_dir, tmp_path):
    import asyncio

    from agentroute import AgentGraph
    from agentroute.eval.counterfactual import evaluate_from_memory
    from agentroute.memory import SQLMemory
    from agentroute.routers.explore import ExploreRouter
    from tests.helpers import replay_pool

    url = f"sqlite:///{tmp_path}/m.db"
    pool = replay_pool(40)  # small and large
    with SQLMemory(url) as memory:
        app = AgentGraph("one").add_role("executor", prompt="p").compile(
            pool=pool, router=ExploreRouter(base="cheapest", epsilon=0.5), memory=memory
        )
        asyncio.run(app.arun_many([{"query": f"question {i}", "query_id": f"q{i}"} for i in range(40)]))
    result = evaluate_from_memory(url, [str(knn_dir)], pool=pool, n_boot=40)  # knows small, mid, large
    # no warning about the candidates (one about an estimate outside the logged scores' range may
    # come: the explorer's draws follow the fresh task ids, so each run logs another realisation)
    assert [w for w in result["warnings"] if "logged scores' range" not in w] == []
    assert result["routers"][0]["n"] == 40
    foreign = tmp_path / "foreign"
    make_router("strongest").fit(sample_outcomes(30).to_trajectories(role="planner")).save(foreign)
    with pytest.raises(ConfigurationError, match="offers none of them"):
        evaluate_from_memory(url, [str(foreign)], pool=pool, n_boot=40)


def test_compiling_a_graph_checks_the_router_against_the_pool(knn_dir, caplog):
    """Python users who compile their own graph get the same rule as the CLI."""
    from agentroute import AgentGraph, Router

    router = Router.load(knn_dir)
    graph = AgentGraph("one").add_role("executor", prompt="Answer.")
    with pytest.raises(ConfigurationError, match="offers none of them"):
        graph.compile(pool=pool_of("gpt-x"), router=router)
    with pytest.raises(ConfigurationError, match="unseen in training: executor:newcomer:direct"):
        graph.compile(pool=pool_of("small", "newcomer"), router=router)
    with caplog.at_level("WARNING", logger="agentroute.graph"):
        app = graph.compile(pool=pool_of("small", "newcomer"), router=router, allow_new_agents=True)
    assert app.dispatcher.router is router and "newcomer" in caplog.text
    graph.compile(pool=pool_of("small", "large"), router=router)  # a subset of its agents: fine

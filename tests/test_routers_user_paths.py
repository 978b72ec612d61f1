"""Routers as a user reaches them: the CLI (ask, train, eval, the README's eval line) and the
Python API of a RouteLLM or scikit-learn user (make_router, fit, save/load, route)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from agentroute.cli import app
from agentroute.errors import StateFileError
from agentroute.routers.base import Router
from tests.helpers import replay_pool
from tests.test_pool_fit import _cli, pool_file

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def routerbench(data_dir: Path) -> str:
    return f"routerbench:{data_dir / 'routerbench'}"


def _train(name: str, dataset: str, out: Path) -> None:
    result = runner.invoke(app, ["train", name, "--dataset", dataset, "--out", str(out), "--limit", "200"])
    assert result.exit_code == 0, result.output


# -- the CLI -------------------------------------------------------------------------------------
def test_ask_allow_new_agents_warns_once(tmp_path: Path, routerbench: str) -> None:
    _train("knn", routerbench, tmp_path / "knn")
    trained = Router.load(tmp_path / "knn").known_agents() or []
    pool = pool_file(tmp_path, next(a for a in trained if "/" not in a), "remote-b")
    graph = tmp_path / "one.py"
    graph.write_text('from agentroute import AgentGraph\ngraph = AgentGraph("one").add_role("executor", prompt="Answer.")\n')
    result = _cli("ask", "hi", "--graph", str(graph), "--router", str(tmp_path / "knn"), "--pool", str(pool),
                  "--memory", f"sqlite:///{tmp_path}/m.db", "--allow-new-agents", "--json")  # fmt: skip
    err = " ".join(result.stderr.split())
    assert err.count("unseen in training: executor:remote-b:direct") == 1, err
    assert "warning" in err and result.returncode != 2


@pytest.mark.parametrize(("first", "second"), [("knn", "mlp"), ("mlp", "knn"), ("mlp", "best-single")])
def test_retraining_another_router_into_one_folder_leaves_only_its_files(
    tmp_path: Path, routerbench: str, first: str, second: str
) -> None:
    out = tmp_path / "r"
    _train(first, routerbench, out)
    _train(second, routerbench, out)
    loaded = Router.load(out)
    assert loaded.name == second
    expected = {"router.json", "arrays.npz"} if loaded.get_arrays() else {"router.json"}
    assert {p.name for p in out.iterdir()} == expected


def test_loading_refuses_arrays_another_save_left(tmp_path: Path, routerbench: str) -> None:
    _train("knn", routerbench, tmp_path / "knn")
    _train("mlp", routerbench, tmp_path / "mlp")
    knn_arrays = dict(np.load(tmp_path / "knn" / "arrays.npz"))
    np.savez(tmp_path / "mlp" / "arrays.npz", **knn_arrays)
    with pytest.raises(StateFileError, match=r"arrays\.npz: holds arrays .*embeddings.* not the .*net\.0\.weight"):
        Router.load(tmp_path / "mlp")


@pytest.fixture
def logged_memory(tmp_path: Path) -> str:
    import asyncio

    from agentroute import AgentGraph, make_router
    from agentroute.memory import SQLMemory

    url = f"sqlite:///{tmp_path}/m.db"
    with SQLMemory(url) as memory:
        graph = AgentGraph("one").add_role("executor", prompt="p")
        compiled = graph.compile(pool=replay_pool(), router=make_router("explore"), memory=memory)
        asyncio.run(compiled.arun_many([{"query": f"question {i}", "query_id": f"q{i}"} for i in range(12)]))
    return url


def test_eval_from_memory_with_an_empty_router_list_is_exit_2(logged_memory: str) -> None:
    result = runner.invoke(app, ["eval", "--from", logged_memory, "--routers", ""])
    assert result.exit_code == 2 and "--routers is empty" in result.output, result.output


@pytest.mark.parametrize("extra", [[], ["--agentic"]])
def test_eval_dataset_with_an_empty_router_list_is_exit_2(routerbench: str, extra: list[str]) -> None:
    result = runner.invoke(app, ["eval", "--dataset", routerbench, "--routers", "", *extra])
    assert result.exit_code == 2 and "--routers is empty" in result.output, result.output


def test_readme_eval_line_runs_from_a_folder_of_ones_own(tmp_path: Path, data_dir: Path) -> None:
    """The README's `agentroute eval` line, run outside the checkout (made quick by --limit)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    line = next(ln for ln in text.splitlines() if ln.startswith("agentroute eval --dataset routerbench"))
    args = shlex.split(line.split("#", 1)[0])[1:]
    env = {**os.environ, "AGENTROUTE_DATA": str(data_dir)}
    exe = Path(sys.executable).parent / "agentroute"
    done = subprocess.run(
        [str(exe), *args, "--limit", "60", "--boot", "0", "--no-peers", "--json", "--out", str(tmp_path / "out")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "out" / "results.json").is_file()


# -- the Python API ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "params", "says"),
    [
        ("knn", {"cost_wieght": 1.0}, ["knn takes no parameter cost_wieght", "did you mean 'cost_weight'", "shrinkage"]),
        ("mlp", {"hiden": 64}, ["mlp takes no parameter hiden", "did you mean 'hidden'"]),
        ("cheapest", {"seed": 1}, ["cheapest takes no parameters"]),
        ("knn", {"k": "five"}, ["knn: k='five' (str) is not int"]),
        ("knn", {"k": True}, ["knn: k=True (bool) is not int"]),
        ("logreg", {"cost_weight": "high"}, ["logreg: cost_weight='high' (str) is not float"]),
        ("kg-gnn", {"encoder": "gcn"}, ["kg-gnn: encoder='gcn' (str) is not one of 'sage', 'hgt'"]),
        ("stack", {"bases": 3}, ["stack: bases=3 (int) is not str or a sequence"]),
    ],
)
def test_make_router_with_a_bad_parameter_names_the_router_and_its_parameters(
    name: str, params: dict, says: list[str]
) -> None:
    from agentroute import make_router
    from agentroute.errors import ConfigurationError

    with pytest.raises(ConfigurationError) as err:
        make_router(name, **params)
    for text in says:
        assert text in str(err.value)


def test_good_parameters_pass_and_set_params_checks_as_make_router_does() -> None:
    from agentroute import make_router
    from agentroute.errors import ConfigurationError

    router = make_router("knn", k=np.int64(5), cost_weight=1, query_chars=None)  # an int is a float
    assert make_router("stack", bases=["knn", "logreg"]).bases == ["knn", "logreg"]
    with pytest.raises(ConfigurationError, match=r"knn: k=2\.5 \(float\) is not int"):
        router.set_params(k=2.5)
    with pytest.raises(ConfigurationError, match=r"knn takes no parameter kk"):
        router.set_params(kk=3)
    assert router.get_params()["k"] == 5


#: Learned routers made quick for the tiny-table and save/load checks (others: their defaults).
QUICK = {
    "mlp": {"epochs": 3},
    "mf": {"epochs": 3},
    "graph-router": {"epochs": 3},
    "kg-gnn": {"epochs": 2},
    "stack": {"bases": ["knn", "logreg"]},
    "graph-planner": {"episodes": 32, "episodes_per_update": 32},
    "bopo": {"config": {"iterations": 2, "sft_epochs": 2, "boundary_rollouts": 2, "sweep": 2, "group_size": 2, "tasks_per_iteration": 8}},
}
#: Routers that cannot learn from one model, with what their error says.
NEEDS_TWO_MODELS = {"bopo": "bopo: routes between two or more models; the table has 1 (gpt-4-1106-preview)"}


def _learned() -> list[str]:
    from agentroute.routers import get_router_class, router_names

    return [n for n in router_names() if get_router_class(n).learned and n != "graph-planner"]  # its own tests


@pytest.fixture(scope="module")
def routerbench_train(data_dir: Path):
    from agentroute.eval.datasets import load_dataset

    return load_dataset(f"routerbench:{data_dir / 'routerbench'}", limit=150).train


@pytest.fixture(scope="module")
def tiny(routerbench_train):
    """3 real RouterBench queries, 1 model (gpt-4), all scored 1."""
    j = routerbench_train.models.index("gpt-4-1106-preview")
    rows = [i for i in range(len(routerbench_train)) if routerbench_train.scores[i, j] == 1.0][:3]
    table = routerbench_train.rows(rows).columns([j])
    assert len(table) == 3 and table.scores.ravel().tolist() == [1.0, 1.0, 1.0]
    return table


@pytest.mark.parametrize("name", _learned())
def test_fit_on_a_tiny_table_routes_or_says_why_not(name: str, tiny) -> None:
    from agentroute import make_router
    from agentroute.errors import ConfigurationError
    from agentroute.outcomes import column_agent
    from agentroute.types import RouteContext

    router = make_router(name, **QUICK.get(name, {}))
    if name in NEEDS_TWO_MODELS:
        with pytest.raises(ConfigurationError, match=re.escape(NEEDS_TWO_MODELS[name])):
            router.fit(tiny)
        return
    assert router.fit(tiny) is router
    agent = column_agent(tiny.models[0])
    for query in tiny.queries:
        decision = router.route(RouteContext(query=query, candidates=[agent]))
        assert decision.agent == agent
        assert all(np.isfinite(float(v)) for v in (decision.scores or {}).values()), decision.scores


@pytest.mark.parametrize("name", _learned())
@pytest.mark.parametrize("data", ["outcomes.jsonl", 42, {"query": "hi"}])
def test_fit_on_what_is_not_training_data_is_an_error_naming_the_router(name: str, data: object) -> None:
    from agentroute import make_router
    from agentroute.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=rf"^{name}: fit\(\) takes an OutcomeTable"):
        make_router(name).fit(data)


def test_save_then_load_in_a_fresh_process_decides_the_same(tmp_path: Path, data_dir: Path, routerbench_train) -> None:
    from agentroute import make_router

    names = _learned()
    mine = {}
    for name in names:
        router = make_router(name, **QUICK.get(name, {})).fit(routerbench_train)
        router.save(tmp_path / name)
        mine[name] = _decisions(router, _contexts(routerbench_train))
    script = (
        "import json, sys\nfrom agentroute.routers.base import Router\nfrom agentroute.eval.datasets import load_dataset\n"
        "from tests.test_routers_user_paths import _contexts, _decisions\n"
        "table = load_dataset(sys.argv[1], limit=150).train\n"
        "print(json.dumps({n: _decisions(Router.load(sys.argv[2] + '/' + n), _contexts(table)) for n in sys.argv[3:]}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, f"routerbench:{data_dir / 'routerbench'}", str(tmp_path), *names],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONHASHSEED": "123"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    for name in names:
        assert theirs[name] == mine[name], name


def _contexts(table) -> list:
    from agentroute.testing import contexts

    return contexts(table.rows(list(range(24))))


def _decisions(router: Router, ctxs: list) -> list:
    """Each context's chosen agents and scores (rounded), as JSON types."""
    out = []
    for ctx in ctxs:
        decision = router.route(ctx)
        scores = {k: round(float(v), 9) for k, v in (decision.scores or {}).items()}
        out.append([[a.key for a in decision.agents], scores])
    return json.loads(json.dumps(out))


def test_stack_fit_summary_before_fit_is_not_fitted() -> None:
    from agentroute import make_router
    from agentroute.errors import NotFittedError

    with pytest.raises(NotFittedError):
        make_router("stack").fit_summary()


def _all_but_planner() -> list[str]:
    from agentroute.routers import router_names

    return [n for n in router_names() if n != "graph-planner" and n not in NEEDS_TWO_MODELS]


@pytest.mark.parametrize("name", _all_but_planner())
def test_route_on_a_bare_query_string_says_what_route_takes(name: str, tiny) -> None:
    """RouteLLM routes a prompt string; here route() takes a RouteContext, and says so."""
    from agentroute import make_router
    from agentroute.errors import ConfigurationError

    params = {"fixed": {"model": tiny.models[0]}}.get(name, QUICK.get(name, {}))
    router = make_router(name, **params)
    if router.learned:
        router.fit(tiny)
    with pytest.raises(ConfigurationError, match=rf"^{name}: route\(\) takes a RouteContext"):
        router.route("What is 2+2?")  # type: ignore[arg-type]


def test_a_router_path_that_does_not_exist_is_named_as_a_missing_directory(tmp_path: Path) -> None:
    from agentroute.errors import ConfigurationError
    from agentroute.loading import load_router

    missing = tmp_path / "runs" / "knnn"
    with pytest.raises(ConfigurationError, match=rf"{re.escape(str(missing))}: no such directory"):
        load_router(str(missing))
    result = runner.invoke(app, ["ask", "hi", "--router", "runs/knnn", "--memory", f"sqlite:///{tmp_path}/m.db"])
    assert result.exit_code == 2 and "runs/knnn: no such directory" in result.output, result.output


def test_load_router_applies_parameters_to_a_saved_router(tmp_path: Path, tiny) -> None:
    from agentroute import make_router
    from agentroute.errors import ConfigurationError
    from agentroute.loading import load_router

    make_router("knn").fit(tiny).save(tmp_path / "knn")
    assert load_router(str(tmp_path / "knn"), cost_weight=5.0).cost_weight == 5.0
    with pytest.raises(ConfigurationError, match="knn takes no parameter cost_wieght"):
        load_router(str(tmp_path / "knn"), cost_wieght=5.0)

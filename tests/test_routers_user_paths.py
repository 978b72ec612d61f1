"""Routers as a user reaches them: the CLI (ask, train, eval, the README's eval line) and the
Python API of a RouteLLM or scikit-learn user (make_router, fit, save/load, route)."""

from __future__ import annotations

import os
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

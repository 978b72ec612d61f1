"""A ``fixed`` router whose model is in the pool but that no role of the graph may use
(``add_role(models=[...])``) is refused, at ``compile`` and in the CLI, with an error that says so —
not "is not in the pool", about a model the pool file lists. A valid one is not refused. Real graph,
the replay pool (``small``, ``large``); the CLI in-process through Typer's runner, a real pool file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentroute import AgentGraph, Budget, make_router
from agentroute.cli.app import app
from agentroute.errors import ConfigurationError
from tests.helpers import replay_pool

ROLES = "the pool models the roles of graph 'qa' may use"


def test_compile_names_the_roles_models_not_the_pool() -> None:
    graph = AgentGraph("qa").add_role("executor", prompt="answer", models=["small"])
    # was: "fixed: model 'large' is not in the pool; its models: small" (the pool has 'large')
    with pytest.raises(ConfigurationError, match=rf"^fixed: model 'large' is not in {ROLES}; its models: small$"):
        graph.compile(pool=replay_pool(), router=make_router("fixed", model="large"))
    with pytest.raises(ConfigurationError, match=r"^fixed: model 'typo' is not in the pool; its models: large, small$"):
        AgentGraph("qa").add_role("executor", prompt="a").compile(pool=replay_pool(), router=make_router("fixed", model="typo"))
    app_ = graph.compile(pool=replay_pool(), router=make_router("fixed", model="small"), budget=Budget(calls=1))
    assert app_.run("q", query_id="q1").steps[0].agent.model == "small"


def test_cli_names_the_roles_models(tmp_path: Path) -> None:
    pool = tmp_path / "pool.yaml"
    pool.write_text(
        "models:\n"
        + "".join(f"  - {{id: {m}, backend: openai, model: m, base_url: 'http://127.0.0.1:9/v1', input_price: 0.1, "
                  "output_price: 0.4}\n" for m in ("small", "large"))  # fmt: skip
    )
    (tmp_path / "g.py").write_text(
        "from agentroute import AgentGraph\n"
        "graph = AgentGraph('qa').add_role('executor', prompt='answer', models=['small'])\n"
    )
    common = ["--graph", str(tmp_path / "g.py"), "--pool", str(pool), "--memory", f"sqlite:///{tmp_path / 'm.db'}"]
    done = CliRunner().invoke(app, ["ask", "Who wrote Hamlet?", "--router", "fixed:model=large", *common])
    assert done.exit_code == 2, done.output
    assert done.stderr.strip() == f"error: fixed: model 'large' is not in {ROLES}; its models: small"

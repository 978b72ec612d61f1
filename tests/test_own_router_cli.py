"""A router of one's own on the command line: a package that registers it under the
``agentroute.routers`` entry-point group is listed and evaluated by name; a ``module:Class`` spec is
refused (a spec never imports code) with the way that works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROUTER = '''
from agentroute.routers import Router
from agentroute.routers.base import decide


class ShortestPromptFirst(Router):
    name = "shortest-first"

    def route(self, ctx):
        return decide(self, ctx, min(range(len(ctx.candidates)), key=ctx.cost_of), why="cheapest")
'''


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    """An installed package as pip leaves it: the module and a dist-info with its entry point."""
    site = tmp_path / "site"
    (site / "myrouters").mkdir(parents=True)
    (site / "myrouters" / "__init__.py").write_text(ROUTER)
    info = site / "myrouters-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: myrouters\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[agentroute.routers]\nshortest-first = myrouters:ShortestPromptFirst\n")
    return site


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    path = tmp_path / "logs.csv"
    rows = ["query,model,score,cost_usd"]
    for i in range(60):
        rows += [f"question {i},small,{int(i % 3 == 0)},0.001", f"question {i},big,{int(i % 5 != 0)},0.01"]
    path.write_text("\n".join(rows) + "\n")
    return path


def _cli(*args: str, cwd: Path, site: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "agentroute", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_a_registered_plugin_router_is_listed_and_evaluated_by_name(plugin: Path, logs: Path, tmp_path: Path) -> None:
    listed = _cli("routers", "list", cwd=tmp_path, site=plugin)
    assert listed.returncode == 0 and "shortest-first" in listed.stdout, listed.stderr
    result = _cli("eval", "--dataset", f"outcomes:{logs}", "--routers", "shortest-first,cheapest", "--boot", "0",
                  "--no-peers", "--out", "ev", "--json", cwd=tmp_path, site=plugin)  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout.splitlines()[-1])["routers"]}
    assert rows["shortest-first"]["error"] is None and rows["shortest-first"]["aiq"] == rows["cheapest"]["aiq"]


@pytest.mark.parametrize("spec", ["myrouters:ShortestPromptFirst", "shortest-first"])
def test_a_router_the_cli_cannot_find_says_how_to_plug_one_in(spec: str, logs: Path, tmp_path: Path) -> None:
    result = _cli("eval", "--dataset", f"outcomes:{logs}", "--routers", spec, "--out", "ev", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    err = " ".join(result.stderr.split())
    assert "entry-point group" in err and "evaluate(data, [MyRouter()" in err, err
    assert not (tmp_path / "ev").exists()

"""`agentroute train graph-planner` with a bad recipe: the one-line error comes before torch
loads (was: the router's module imported torch at the top, ~5-7 s on a loaded machine before
the line). The saved router's Python API is unchanged: torch loads when it fits or decides."""

from __future__ import annotations

import os
import subprocess
import sys


def test_a_bad_recipe_is_refused_without_importing_torch(tmp_path):
    recipe = tmp_path / "gp.yaml"
    recipe.write_text("router: graph-planner\nparams:\n  lr_policy: -1.0e-4\n")
    command = [sys.executable, "-X", "importtime", "-m", "agentroute", "train", "graph-planner", "--dataset",
               f"routerbench:{tmp_path / 'nowhere'}", "--config", str(recipe), "--out", str(tmp_path / "gp")]
    run = subprocess.run(command, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"})
    lines = [x for x in run.stderr.splitlines() if not x.startswith("import time:")]
    assert run.returncode == 2 and len(lines) == 1 and "'lr_policy' must be a finite number > 0" in lines[0], lines
    imported = {x.split("|")[-1].strip() for x in run.stderr.splitlines() if x.startswith("import time:")}
    assert not [m for m in imported if m.split(".")[0] == "torch"]  # (importtime omits the line of `torch` itself)
    assert "agentroute.routers.graph_planner.router" in imported


def test_the_router_module_alone_needs_no_torch():
    script = ("import sys; from agentroute.routers.graph_planner.router import GraphPlannerRouter; "
              "GraphPlannerRouter(episodes=64); print('torch' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.stdout.split() == ["False"], run.stderr[-2000:]

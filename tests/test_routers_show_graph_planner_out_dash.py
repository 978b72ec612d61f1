"""`agentroute routers show graph-planner --out -`: the option takes a folder, so `-` is refused in one
line before any work, as for the other routers (it made a folder named `-`)."""

from __future__ import annotations

import subprocess
import sys


def test_routers_show_graph_planner_refuses_out_dash_before_loading(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "agentroute", "routers", "show", "graph-planner", "--state", str(tmp_path / "gp"),
         "--out", "-"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(lines) == 1 and "--out -" in lines[0] and "folder" in lines[0], proc.stderr
    assert not (tmp_path / "-").exists()

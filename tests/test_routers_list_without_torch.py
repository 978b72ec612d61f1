"""`agentroute routers list`, `import agentroute.routers` and building a torch router (`make_router`,
the CLI's `--router mlp`) do not import torch: it loads (seconds) when a network is fitted or loaded.

Was: mf, mlp and graph-router built their torch networks at import, so listing the routers (and stack,
which builds an mlp and an mf) imported torch: `routers list` took 4.7 s, now 1.2 s (median of 5, here).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

CHECK = """
import json, sys
import agentroute.routers
seen = {"import": sorted(m for m in ("torch", "torch_geometric") if m in sys.modules)}
from agentroute.routers import make_router
for name in ("mf", "mlp", "graph-router", "stack"):
    make_router(name)
seen["built"] = sorted(m for m in ("torch", "torch_geometric") if m in sys.modules)
sys.argv = ["agentroute", "routers", "list"]
from agentroute.cli import main
try:
    main()
except SystemExit:
    pass
seen["listed"] = sorted(m for m in ("torch", "torch_geometric") if m in sys.modules)
print(json.dumps(seen))
"""


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("torch_geometric") is None,
    reason="needs the [ml] extra (without it the routers are listed unavailable: test_routers_core_install.py)",
)
def test_listing_and_building_the_routers_imports_no_torch() -> None:
    run = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"})  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    table, _, last = run.stdout.rstrip().rpartition("\n")
    rows = {m[1]: m[2] for m in re.finditer(r"^│ (\S+)\s+│ (\S+)", table, re.M)}
    assert rows["mf"] == rows["mlp"] == rows["graph-router"] == rows["stack"] == "yes"  # listed available
    assert json.loads(last) == {
        "import": [],
        "built": [],
        "listed": [],
    }


def test_the_networks_old_homes_still_give_them() -> None:
    """Code (and pickles) naming a network by its router's module get the moved class; in this
    process, so that the torch import (seconds) is the one the other tests share."""
    pytest.importorskip("torch_geometric")
    from agentroute.routers import graph_router, graph_router_net, mf, mf_net, mlp, mlp_net

    assert mf.MatrixFactorization is mf_net.MatrixFactorization
    assert mlp.ScoreCostMLP is mlp_net.ScoreCostMLP
    assert graph_router.GraphRouterNet is graph_router_net.GraphRouterNet
    with pytest.raises(AttributeError, match="has no attribute 'Nothing'"):
        _ = mf.Nothing  # type: ignore[attr-defined]


NO_GEOMETRIC = """
import sys
sys.modules["torch_geometric"] = None  # torch installed, torch-geometric not: find_spec finds nothing
sys.argv = ["agentroute", "routers", "list"]
from agentroute.cli import main
main()
"""


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
def test_without_torch_geometric_only_the_graph_routers_are_unavailable() -> None:
    run = subprocess.run([sys.executable, "-c", NO_GEOMETRIC], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"})  # fmt: skip
    rows = {m[1]: m[2] for m in re.finditer(r"^│ (\S+)\s+│ (\S+)", run.stdout, re.M)}
    assert rows["mf"] == rows["mlp"] == rows["stack"] == "yes", run.stdout[-2000:] + run.stderr[-2000:]
    assert rows["graph-router"] == rows["kg-gnn"] == "?"
    assert "unavailable graph-router, kg-gnn: 'torch_geometric' is not installed (extra [ml])" in run.stdout

"""`agentroute routers list` where torch is not installed (a core install, no [ml] extra) lists
graph-planner and stack among the routers that need the extra, with its install command, as it does
mf, mlp and graph-router (was: both shown available; graph-planner imports torch only when it fits,
stack builds an mlp). torch is hidden from this subprocess as a core install lacks it; the real core
venv is tests/test_install_user_paths.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys

NO_TORCH = """
import sys

class NoTorch:  # an environment where torch is not installed: it cannot be found nor imported
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NoTorch())
sys.argv = ["agentroute", "routers", "list"]
from agentroute.cli import main

main()
"""


def test_routers_that_need_torch_say_which_extra():
    run = subprocess.run([sys.executable, "-c", NO_TORCH], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "250"})
    assert run.returncode == 0, run.stderr[-2000:]
    rows = {m[1]: m[2] for m in re.finditer(r"^│ (\S+)\s+│ (\S+)", run.stdout, re.M)}
    line = next(x for x in run.stdout.splitlines() if x.startswith("unavailable"))
    names, _, why = line.removeprefix("unavailable ").partition(": ")
    assert {"graph-planner", "stack", "mf", "mlp", "graph-router"} <= set(names.split(", ")), run.stdout
    assert why == "'torch' is not installed (extra [ml]); install it with: pip install torch==2.13.0 && pip install 'agentroute[ml]'"
    assert rows["graph-planner"] == "?" and rows["cheapest"] == "no"  # the others are still listed as usable

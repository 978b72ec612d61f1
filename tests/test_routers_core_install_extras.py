"""In a core install (no [ml] extra), knn, logreg, bopo and kg-gnn say at once that they need it, as
mf and mlp do: `agentroute routers list` lists them unavailable with the install command, and building
one (`make_router`, the CLI's `--router`, `eval --routers`) raises the one-line MissingDependencyError
before any data is read. Was: listed available, built, and an ImportError-born error only at fit or at
the first decision. The [ml] modules are hidden from this subprocess as a core install lacks them (the
real core venv: tests/test_install_user_paths.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

CORE = """
import json, sys
from agentroute._optional import _EXTRA_OF

HIDDEN = {m for m, extra in _EXTRA_OF.items() if extra == "ml"}

class NoML:  # the [ml] extra is not installed: its modules can be neither found nor imported
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NoML())
from agentroute.errors import MissingDependencyError
from agentroute.routers import make_router

built = {}
for name in ("knn", "logreg", "bopo", "kg-gnn"):
    try:
        make_router(name)
        built[name] = "built"
    except MissingDependencyError as exc:
        built[name] = str(exc)
print(json.dumps(built))
sys.argv = ["agentroute", "routers", "list"]
from agentroute.cli import main
main()
"""


def test_routers_that_need_the_ml_extra_say_so_when_built():
    run = subprocess.run([sys.executable, "-c", CORE], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "250"})
    assert run.returncode == 0, run.stderr[-2000:]
    first, _, table = run.stdout.partition("\n")
    built = json.loads(first)
    install = "install it with: pip install torch==2.13.0 && pip install 'agentroute[ml]'"
    assert built == {
        "knn": f"'torch' is not installed (extra [ml]); {install}",
        "logreg": f"'sklearn' is not installed (extra [ml]); {install}",
        "bopo": f"'torch' is not installed (extra [ml]); {install}",
        "kg-gnn": f"'torch' is not installed (extra [ml]); {install}",
    }
    unavailable = {
        name: why for line in table.splitlines() if line.startswith("unavailable ")
        for names, _, why in [line.removeprefix("unavailable ").partition(": ")] for name in names.split(", ")
    }  # fmt: skip
    assert {n: unavailable.get(n) for n in built} == built  # the same line, with the install command
    rows = {m[1]: m[2] for m in re.finditer(r"^│ (\S+)\s+│ (\S+)", table, re.M)}
    assert rows["knn"] == rows["logreg"] == "?" and rows["cheapest"] == "no"  # the others are still listed as usable

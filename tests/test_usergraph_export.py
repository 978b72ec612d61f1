"""``from agentroute import claiming``: a lazy export beside ``routed_node`` (LangGraph is imported
only when it is used)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import agentroute

ROOT = Path(agentroute.__file__).resolve().parents[1]


def test_claiming_is_exported_lazily_next_to_routed_node():
    code = (
        "import sys, agentroute\n"
        "assert 'langgraph' not in sys.modules\n"
        "from agentroute import claiming, routed_node\n"
        "import agentroute.graph as g\n"
        "assert claiming is g.claiming and routed_node is g.routed_node\n"
        "assert 'claiming' in agentroute.__all__ and 'claiming' in dir(agentroute)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]

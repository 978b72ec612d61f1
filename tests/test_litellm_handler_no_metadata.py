"""A LiteLLM without package metadata (a vendored copy, or one installed as ``litellm-core``) whose
``AsyncHTTPHandler`` moved: the self-hosted card still fails in one line naming the fix.

Before: ``importlib.metadata.PackageNotFoundError: No package metadata was found for litellm``,
raised while building that line, in place of it. Run as a user runs it: ``agentroute ask --json``
in a process of its own whose packages are the environment's, but LiteLLM's ``dist-info``
left out (``python -S`` over a folder of links to site-packages), against a real server on
127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.fixtures_reply_server import ReplyServer
from tests.test_litellm_handler_moved import MOVED, ROOT, pytestmark, server  # noqa: F401 (fixture)


def _vendored_site(tmp_path: Path) -> Path:
    """Links to everything of site-packages but LiteLLM's package metadata."""
    site = Path(sysconfig.get_paths()["purelib"])
    folder = tmp_path / "site"
    folder.mkdir()
    for entry in site.iterdir():
        if not (entry.name.startswith("litellm-") and entry.name.endswith(".dist-info")):
            (folder / entry.name).symlink_to(entry)
    return folder


def test_a_litellm_without_metadata_still_names_the_fix(tmp_path: Path, server: ReplyServer) -> None:  # noqa: F811
    (tmp_path / "moved").mkdir()
    (tmp_path / "moved" / "sitecustomize.py").write_text(MOVED)
    (tmp_path / "pool.yaml").write_text(
        f"models:\n  - {{id: m, backend: litellm, model: openai/echo, base_url: '{server.url}', input_price: 1.0, "
        "output_price: 2.0, max_tokens: 8, timeout_s: 30}\n"
    )
    path = [str(tmp_path / "moved"), str(ROOT), str(_vendored_site(tmp_path))]
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": os.pathsep.join(path)}
    script = "import runpy, sitecustomize; runpy.run_module('agentroute', run_name='__main__')"
    done = subprocess.run(
        [sys.executable, "-S", "-c", script, "ask", "q", "--pool", "pool.yaml", "--router", "cheapest", "--json",
         "--memory", f"sqlite:///{tmp_path / 'memory.db'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.stdout.strip(), done.stderr[-3000:]
    task = json.loads(done.stdout)
    error = str(task["error"])
    assert task["status"] == "failed" and task["cost_usd"] == 0.0, task
    assert "\n" not in error and error.startswith("m: LiteLLM ") and "AsyncHTTPHandler" in error, error
    assert "backend: openai" in error, error

"""A LiteLLM release that moves ``AsyncHTTPHandler`` out of ``litellm.llms.custom_httpx.http_handler``
(no documented API: the litellm backend calls self-hosted ``openai/`` and ``hosted_vllm/``
endpoints through it) fails those cards with one line naming the fix, charged nothing; every other
LiteLLM card still answers.

Before: every litellm card failed, hosted providers too (``openrouter/…``), with ``ImportError:
cannot import name 'AsyncHTTPHandler' …`` and no word of what to do, each step charged its worst
case although nothing was sent. Run as a user runs it: ``agentroute ask --json`` in a process of
its own, whose ``sitecustomize`` hides the class from every importer outside LiteLLM (LiteLLM's own
modules still find it, as they would at its new home), against a real server on 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures_reply_server import ReplyServer

pytestmark = pytest.mark.skipif(importlib.util.find_spec("litellm") is None, reason="litellm is not installed")

ROOT = Path(__file__).resolve().parents[1]

#: ``sitecustomize`` of a LiteLLM whose ``AsyncHTTPHandler`` moved: importers outside ``litellm`` no longer find it.
MOVED = '''
import importlib.util, sys, types

NAME = "litellm.llms.custom_httpx.http_handler"


class _Moved(types.ModuleType):
    def __getattribute__(self, attr):
        caller = str(sys._getframe(1).f_globals.get("__name__", ""))
        if attr == "AsyncHTTPHandler" and caller.split(".")[0] != "litellm":
            raise AttributeError(attr)
        return super().__getattribute__(attr)


class _Finder:
    def find_spec(self, name, path, target=None):
        if name != NAME:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            module.__class__ = _Moved

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _Finder())
'''


@pytest.fixture(scope="module")
def server() -> Iterator[ReplyServer]:
    with ReplyServer() as running:
        yield running


def _ask(tmp_path: Path, model: str, url: str) -> dict[str, object]:
    (tmp_path / "moved").mkdir()
    (tmp_path / "moved" / "sitecustomize.py").write_text(MOVED)
    (tmp_path / "pool.yaml").write_text(
        f"models:\n  - {{id: m, backend: litellm, model: {model}, base_url: '{url}', input_price: 1.0, "
        "output_price: 2.0, max_tokens: 8, timeout_s: 30}\n"
    )
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": os.pathsep.join([str(tmp_path / "moved"), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-m", "agentroute", "ask", "q", "--pool", "pool.yaml", "--router", "cheapest", "--json",
         "--memory", f"sqlite:///{tmp_path / 'memory.db'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    task = dict(json.loads(done.stdout))
    assert done.returncode == (0 if task["status"] == "done" else 1), done.stderr
    return task


def test_a_self_hosted_card_fails_in_one_line_naming_the_fix_charged_nothing(tmp_path: Path, server: ReplyServer) -> None:
    sent = len(server.requests)
    task = _ask(tmp_path, "openai/echo", server.url)
    error = str(task["error"])
    assert task["status"] == "failed" and task["cost_usd"] == 0.0, task
    assert "\n" not in error and error.startswith("m: LiteLLM ") and "AsyncHTTPHandler" in error, error
    assert "pip install 'litellm<" in error and "backend: openai" in error, error
    assert len(server.requests) == sent  # never sent


def test_a_hosted_provider_card_still_answers(tmp_path: Path, server: ReplyServer) -> None:
    task = _ask(tmp_path, "openrouter/echo", server.url)
    assert task["status"] == "done" and task["answer"] == "echo", task

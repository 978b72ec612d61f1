"""``pool.preload()`` (``agentroute run`` and ``agentroute serve`` call it before the first query)
imports LiteLLM for a litellm card, off the event loop.

Before: the litellm backend had no ``preload``: the first call imported LiteLLM (3 s, 8 s on a busy
machine) inside its card's ``timeout_s`` — a 5 s card timed out and was retried, paid twice — and
blocked the event loop meanwhile (``agentroute serve`` answered nothing else). In a fresh process.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("litellm") is None, reason="litellm is not installed")

_SCRIPT = """
import asyncio, sys
from agentroute.pool import ModelCard, ModelPool
from agentroute.pool.backends.litellm import LiteLLMBackend
card = ModelCard(id="m", backend="litellm", model="hosted_vllm/m", base_url="http://127.0.0.1:9/v1",
                 input_price=1.0, output_price=2.0)
pool = ModelPool([card], {"litellm": LiteLLMBackend()})
assert "litellm" not in sys.modules
asyncio.run(pool.preload())
print("litellm" in sys.modules)
"""


def test_preload_imports_litellm_before_the_first_call() -> None:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True"], done.stdout

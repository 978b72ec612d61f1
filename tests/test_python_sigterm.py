"""SIGTERM in a user's own Python training script: within ``terminate_as_interrupt()`` a fit keeps its
last finished state in the checkpoint as on Ctrl-C (docs/learning.md), and the script's own SIGTERM
handler is back once the block ends; without the block Python's default applies (the process ends)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

SCRIPT = """
import signal, sys
import numpy as np
from agentroute.eval.datasets import load_dataset
from agentroute.routers.bopo import BoPORouter
from agentroute.training.checkpoint import checkpoint_done
from agentroute.training.rewards import boundary_reward
from agentroute.training.stopping import Terminated, terminate_as_interrupt
import agentroute.training.bopo_trainer as bt

calls = [0]
def reward(**kwargs):
    calls[0] += 1
    if calls[0] == 12:
        print("some iterations done", flush=True)
    return boundary_reward(**kwargs)
bt.boundary_reward = reward  # the trainer's default reward, counting its calls (to know when to stop it)
bt.default_embed = lambda texts: np.stack([np.bincount(np.frombuffer(t.encode(), np.uint8) % 16, minlength=16)
                                           for t in texts]).astype(np.float32)
signal.signal(signal.SIGTERM, lambda signum, frame: print("the script's own handler"))
data = load_dataset("routerbench:" + sys.argv[1], limit=60)
router = BoPORouter(config=dict(steps=2, tiers=["mistralai/mixtral-8x7b-chat", "gpt-4-1106-preview"], variants=2,
                                boundary_rollouts=2, sweep=2, sft_epochs=2, iterations=100000, tasks_per_iteration=6,
                                group_size=2, emb_proj=8, hidden=8))
try:
    with terminate_as_interrupt():
        router.fit(data, checkpoint=sys.argv[2], checkpoint_every_s=3600)
except Terminated:
    print("kept:", checkpoint_done(sys.argv[2]))
print("handler back:", signal.getsignal(signal.SIGTERM).__name__)
"""


def test_a_python_fit_within_terminate_as_interrupt_keeps_its_state_on_sigterm(tmp_path: Path, data_dir: Path) -> None:
    checkpoint = tmp_path / "ckpt.pt"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(data_dir / "routerbench"), str(checkpoint)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=tmp_path)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == "some iterations done\n", proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    kept, handler = out.splitlines()
    assert kept.startswith("kept: ") and kept.endswith(" BoPO iterations") and int(kept.split()[1]) >= 1, out
    assert handler == "handler back: <lambda>"

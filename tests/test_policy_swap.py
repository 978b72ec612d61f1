"""A ``kill -9`` between the two renames of a policy save: loading the policy finds the whole previous
one (``policy.old``) instead of failing, and never the half-swapped new one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

SAVE_THEN_DIE_MID_SWAP = """
import os, signal, sys
from pathlib import Path
import transformers
from agentroute.routers.router_r1.trainer import save_atomically  # where the trainer saves from

tok = transformers.AutoTokenizer.from_pretrained(sys.argv[1])
target = Path(sys.argv[2])

def tiny(hidden):
    config = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=2)
    return transformers.LlamaForCausalLM(config)

save_atomically(target, tiny(16).save_pretrained, tok.save_pretrained)
renames = []
real_replace = os.replace
def replace(src, dst):
    renames.append(src)
    if len(renames) == 2:  # policy -> policy.old is done; policy.partial -> policy is next: a kill -9 now
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)
os.replace = replace
save_atomically(target, tiny(32).save_pretrained, tok.save_pretrained)
"""


@pytest.fixture(scope="module")
def tokenizer_dir() -> Path:
    """The default policy's converted cache (a tokenizer on disk), made once if it is not there."""
    from agentroute.pool.backends.local import ModelSource
    from agentroute.training.lm_policy import DEFAULT_POLICY, HFPolicy

    folder = ModelSource.resolve(DEFAULT_POLICY).cache_dir()
    if not (folder / "tokenizer.json").is_file():
        HFPolicy.load()
    return folder


@pytest.fixture(scope="module")
def killed_mid_swap(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("r1")
    done = subprocess.run([sys.executable, "-c", SAVE_THEN_DIE_MID_SWAP, str(tokenizer_dir), str(out / "policy")],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == -9, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["policy.old", "policy.partial"]  # the crash window, as a kill leaves it
    return out


def test_loading_a_policy_killed_mid_swap_finds_the_whole_previous_one(killed_mid_swap: Path) -> None:
    """Was: "policy '…/policy' is not a model directory (no config.json)" until the next training run."""
    from agentroute.training.lm_policy import HFPolicy

    policy = HFPolicy.load(killed_mid_swap / "policy")
    assert policy.model.config.hidden_size == 16  # the previous save, not the new one cut short
    assert len(policy.generate([[1, 2, 3]], max_tokens=2)[0].ids) <= 2
    assert sorted(p.name for p in killed_mid_swap.iterdir()) == ["policy.old", "policy.partial"]  # a load moves nothing


def test_the_router_r1_graph_serves_it(killed_mid_swap: Path) -> None:
    """``ask --graph router_r1 --policy OUT/policy`` loads through ``load_policy``."""
    from agentroute.routers.router_r1.graph import _tokenizer, load_policy

    assert load_policy(killed_mid_swap / "policy").model.config.hidden_size == 16  # type: ignore[attr-defined]
    assert len(_tokenizer(killed_mid_swap / "policy")) > 1000  # --policy-url: the tokenizer of the served folder

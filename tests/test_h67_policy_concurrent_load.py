"""A server loading a Router-R1 policy while training saves it (``save_atomically``) gets one whole
policy — the previous save or the new one — never a mix of both, and never an error about a
folder the swap moved or deleted under it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("transformers")

SAVE_IN_A_LOOP = """
import sys, time
from pathlib import Path
import transformers
from agentroute.training.lm_policy import save_atomically

tok = transformers.AutoTokenizer.from_pretrained(sys.argv[1])
target, seconds = Path(sys.argv[2]), float(sys.argv[3])

def tiny(hidden):
    config = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=2)
    return transformers.LlamaForCausalLM(config)

models = {16: tiny(16), 32: tiny(32)}
end, saves = time.monotonic() + seconds, 0
while time.monotonic() < end:
    hidden = 16 if saves % 2 else 32
    tok.model_max_length = hidden  # each save's tokenizer says which model it was saved with
    save_atomically(target, models[hidden].save_pretrained, tok.save_pretrained)
    saves += 1
    print(saves, flush=True)
    time.sleep(2)  # a save every few seconds: far more often than training saves; many loads still meet one
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


def test_loads_while_training_saves_each_get_one_whole_policy(tmp_path: Path, tokenizer_dir: Path) -> None:
    """Was: a load met the swap — "not a loadable policy checkpoint" (the folder renamed or deleted
    mid-read), or the tokenizer of one save with the weights of the next."""
    from agentroute.training.lm_policy import HFPolicy

    target = tmp_path / "policy"
    writer = subprocess.Popen([sys.executable, "-c", SAVE_IN_A_LOOP, str(tokenizer_dir), str(target), "40"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"})
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "1", writer.stderr
        loads, problems = 0, []
        end = time.monotonic() + 30
        while time.monotonic() < end and writer.poll() is None:
            try:
                policy = HFPolicy.load(target)
            except Exception as exc:  # noqa: BLE001  (what a server would have failed with)
                problems.append(f"{type(exc).__name__}: {exc}")
                continue
            loads += 1
            hidden, max_length = policy.model.config.hidden_size, policy.tokenizer.model_max_length
            if hidden != max_length:
                problems.append(f"a mixed policy: weights of a {hidden}-wide save, the tokenizer of a {max_length}-wide one")
        assert loads >= 5, problems
        assert problems == [], f"{len(problems)} bad loads of {loads + len(problems)}: {problems[:3]}"
    finally:
        writer.kill()
        writer.wait()

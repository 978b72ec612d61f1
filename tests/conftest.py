"""Shared fixtures. Server fixtures live in their own plugin modules, listed here."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("COLUMNS", "200")  # rich tables in CLI tests: no wrapping at 80 columns

# Property tests: no per-example deadline on shared 2-core machines; in CI the examples are
# derandomised, so a run is reproducible (locally they stay random, to keep finding new cases).
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("dev"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

pytest_plugins = [
    "tests.fixtures_postgres", "tests.fixtures_openai_server", "tests.fixtures_web", "tests.fixtures_sigterm",
    "tests.fixtures_leaks",
]

ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path | None:
    """``$AGENTROUTE_DATA``, else ``../shared/data`` beside the checkout."""
    path = Path(os.environ.get("AGENTROUTE_DATA", ROOT.parent / "shared" / "data"))
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = data_root()
    if path is None:
        pytest.skip("logged-outcome data not found: set AGENTROUTE_DATA (CI always has it)")
    return path


@pytest.fixture(scope="session")
def routerbench(data_dir: Path) -> Callable[..., Any]:
    """RouterBench parsed once per session: ``routerbench(limit=None)`` is a fresh copy (tests may
    change it) of ``load_dataset("routerbench", limit=limit)``, cut from the full parse with
    :func:`subsample`, which gives the very same rows (tests/test_routerbench_subset.py checks it)."""
    from agentroute.eval.datasets import load_dataset, subsample

    full = load_dataset("routerbench")

    def copy_of(limit: int | None = None) -> Any:
        return copy.deepcopy(full if limit is None else subsample(full, limit=limit))

    return copy_of


@pytest.fixture(scope="session")
def tiny_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Router-R1 policy directory: SmolLM2's tokenizer (the default policy's prompts and traces, token
    for token) on a random 1-layer, 16-wide model with SmolLM2's tied embeddings — SFT and GRPO steps and saves take a blink instead of
    the 135M model's seconds and 0.5–2 GB. For tests of the training run's mechanics (trace caches,
    resume, interrupts), not of what the policy learns."""
    import transformers

    from agentroute.pool.backends.local import ModelSource
    from agentroute.training.lm_policy import DEFAULT_POLICY, HFPolicy

    source = ModelSource.resolve(DEFAULT_POLICY).cache_dir()
    if not (source / "tokenizer.json").is_file():
        HFPolicy.load()  # converts the default policy once, its tokenizer included
    tok = transformers.AutoTokenizer.from_pretrained(source)
    config = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=2, pad_token_id=tok.pad_token_id,
                                      eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id,
                                      tie_word_embeddings=True)
    folder = tmp_path_factory.mktemp("tiny-policy")
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder

"""A server loading a Router-R1 policy while training saves it (``save_atomically``) gets one whole
policy — the previous save or the new one — never a mix of both, and never an error about a
folder the swap moved or deleted under it.

The swap is made to land at the worst instant of a real load (between its tokenizer read and its
weights read, or between the swap's two renames) every time, rather than by racing a saving
process for half a minute: the same two interleavings, met on each run in about a second."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from agentroute.training.lm_policy import HFPolicy, save_atomically  # noqa: E402


def _writers(hidden: int) -> tuple[Callable[[Path], object], ...]:
    """A tiny policy whose tokenizer says which model it was saved with (``model_max_length``)."""
    vocab = {"[UNK]": 0, "[PAD]": 1, "a": 2, "b": 3, "c": 4, "d": 5, "e": 6, "f": 7}
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]")),
        unk_token="[UNK]", pad_token="[PAD]", model_max_length=hidden)
    config = transformers.LlamaConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=hidden,
                                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2)
    return transformers.LlamaForCausalLM(config).save_pretrained, tok.save_pretrained


@pytest.fixture(scope="module")
def saves() -> dict[int, tuple[Callable[[Path], object], ...]]:
    return {hidden: _writers(hidden) for hidden in (16, 32)}


def _assert_whole(policy: HFPolicy, hidden: int) -> None:
    got = policy.model.config.hidden_size, policy.tokenizer.model_max_length
    assert got == (hidden, hidden), f"a mixed policy: weights of a {got[0]}-wide save, the tokenizer of a {got[1]}-wide one"


def _once(original: Any, before: Callable[[], object], after: Callable[[], object] = lambda: None) -> Any:
    """``original`` (a ``from_pretrained``) with ``before()``/``after()`` around its first call only."""
    calls: list[int] = []

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) > 1:
            return original(*args, **kwargs)
        before()
        try:
            return original(*args, **kwargs)
        finally:
            after()

    return wrapped


def test_a_save_swapped_in_between_the_tokenizer_and_the_weights_is_read_again(
        tmp_path: Path, saves: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Was: the tokenizer of one save with the weights of the next (a 32-wide tokenizer, 16-wide weights)."""
    target = tmp_path / "policy"
    save_atomically(target, *saves[32])
    load_weights = transformers.AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        _once(load_weights, lambda: save_atomically(target, *saves[16])))
    _assert_whole(HFPolicy.load(target), 16)


def test_a_load_between_the_swaps_two_renames_reads_the_save_swapped_in(
        tmp_path: Path, saves: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Was: "not a loadable policy checkpoint" — the folder was renamed away mid-read."""
    target = tmp_path / "policy"
    save_atomically(target, *saves[32])
    partial, old = target.with_name("policy.partial"), target.with_name("policy.old")
    for write in saves[16]:
        write(partial)  # the next save, written; its swap (save_atomically's two renames) lands mid-read

    def finish_swap() -> None:
        os.replace(partial, target)
        shutil.rmtree(old)

    load_weights = transformers.AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        _once(load_weights, lambda: os.replace(target, old), finish_swap))
    _assert_whole(HFPolicy.load(target), 16)

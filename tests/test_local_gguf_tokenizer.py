"""A GGUF file whose tokenizer transformers cannot build fails before the model's conversion, in
one line naming the file and the tokenizer kind (was ``could not load local model '…': 'scores'``,
after the ~30 s conversion of a real model)."""

from __future__ import annotations

from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("torch")

from agentroute.errors import ConfigurationError  # noqa: E402
from agentroute.pool.backends.local import LocalModel, ModelSource  # noqa: E402
from tests.tiny_gguf import write_tiny_gguf  # noqa: E402


@pytest.mark.parametrize(
    ("kind", "merges", "why"),
    [("llama", False, "its metadata has no tokenizer.ggml.scores"), ("bert", True, "Cannot build a tokenizer")],
)
def test_an_unbuildable_tokenizer_fails_first_naming_file_and_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, merges: bool, why: str
) -> None:
    path = write_tiny_gguf(tmp_path / f"{kind}.gguf", layers=1, tokenizer=kind, merges=merges)
    converted: list[object] = []
    load = transformers.AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(
        transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: converted.append(a) or load(*a, **k)
    )
    with pytest.raises(ConfigurationError) as info:
        LocalModel.load(ModelSource.resolve(str(path)), cache=tmp_path / "cache")
    assert converted == []  # the model was never converted
    message = str(info.value)
    assert message.startswith(f"GGUF file '{path}' has a tokenizer of kind '{kind}' that transformers cannot build")
    assert why in message and "\n" not in message
    assert not (tmp_path / "cache").exists()

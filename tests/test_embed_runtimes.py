"""Embedding runtimes (issue 16): ONNX Runtime gives the torch vectors, int8 only above the cosine
bar, the torch fallback, the chunked on-disk cache and the progress switch."""

from __future__ import annotations

import numpy as np
import pytest

from agentroute import embed as E
from agentroute import progress
from agentroute.errors import ConfigurationError

pytest.importorskip("sentence_transformers")
onnx = pytest.importorskip("onnxruntime")

@pytest.fixture(autouse=True)
def _whole_texts_unless_asked(monkeypatch):
    """These tests set their piece windows themselves: ignore $AGENTROUTE_EMBED_PIECES."""
    monkeypatch.delenv("AGENTROUTE_EMBED_PIECES", raising=False)


TEXTS = [
    "What is the capital of France?",
    "Write a Python function that reverses a linked list.",
    "Question: Which gas do plants absorb? A. oxygen B. carbon dioxide C. helium D. neon\nAnswer:",
    "x " * 400,  # longer than MiniLM's 256 word pieces: truncated the same way by both runtimes
    "",
]


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return E.SentenceEmbedder(cache=False, runtime="torch", pieces="all").embed(TEXTS)


def test_onnx_gives_the_torch_vectors(torch_vectors):
    emb = E.SentenceEmbedder(cache=False, runtime="onnx")
    got = emb.embed(TEXTS)
    assert emb.runtime_ == "onnx-fp32" and got.shape == (len(TEXTS), 384) and got.dtype == np.float32
    assert np.min(np.sum(got * torch_vectors, axis=1)) > 0.9999
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_batching_by_length_does_not_change_a_vector():
    from agentroute.embed_onnx import OnnxEmbedder

    one = OnnxEmbedder(batch_size=1).embed(TEXTS)
    many = OnnxEmbedder(batch_size=4).embed(TEXTS[::-1])[::-1]
    assert np.max(np.abs(one - many)) < 1e-5


def test_int8_is_kept_only_above_the_cosine_bar():
    from agentroute.embed_onnx import OnnxEmbedder

    strict = OnnxEmbedder(precision="int8", min_cosine=0.999999).load()
    assert strict.precision_ == "fp32" and strict.min_cosine_ < 0.999999
    loose = OnnxEmbedder(precision="int8", min_cosine=0.0).load()
    assert loose.precision_ == "int8"
    with pytest.raises(ConfigurationError, match="'precision'"):
        OnnxEmbedder(precision="fp16")  # type: ignore[arg-type]


def test_auto_falls_back_to_torch_when_onnxruntime_is_missing(monkeypatch, torch_vectors):
    from agentroute import embed_onnx

    monkeypatch.setattr(embed_onnx, "available", lambda: False)
    emb = E.SentenceEmbedder(cache=False)
    assert emb.runtime == "auto"
    got = emb.embed(TEXTS[:2])
    assert emb.runtime_ == "torch" and np.allclose(got, torch_vectors[:2], atol=1e-6)
    monkeypatch.setenv("AGENTROUTE_EMBED_RUNTIME", "tensorflow")
    with pytest.raises(ConfigurationError, match="AGENTROUTE_EMBED_RUNTIME"):
        E.SentenceEmbedder()


def test_cache_is_written_chunk_by_chunk_and_shared_by_fp32_runtimes(tmp_path, monkeypatch, torch_vectors):
    monkeypatch.setattr(E, "CHUNK", 2)
    file = tmp_path / "emb.sqlite"
    first = E.SentenceEmbedder(cache=file, runtime="onnx")
    calls = []
    real = first._encode
    monkeypatch.setattr(first, "_encode", lambda texts, advance: calls.append(len(texts)) or real(texts, advance))
    first.embed(TEXTS)
    assert calls == [2, 2, 1]
    again = E.SentenceEmbedder(cache=file, runtime="torch")  # reads, never loads torch's model
    got = again.embed(TEXTS)
    assert again._model is None and np.min(np.sum(got * torch_vectors, axis=1)) > 0.9999


def test_progress_switch(monkeypatch):
    monkeypatch.setenv("AGENTROUTE_PROGRESS", "0")
    assert not progress.enabled(True)
    monkeypatch.setenv("AGENTROUTE_PROGRESS", "1")
    assert progress.enabled(False)
    monkeypatch.delenv("AGENTROUTE_PROGRESS")
    assert progress.enabled(True) and not progress.enabled(False)
    with progress.bar(3, "x", show=False) as b, progress.phase("y", show=False) as p:
        b.update(1)
        p.set_postfix_str("z")
    assert list(progress.track([1, 2], "t", show=False)) == [1, 2]


def test_int8_keeps_the_ffn_down_projections_fp32_and_passes_the_bar(torch_vectors):
    """The int8 export quantises the weight MatMuls but not the FFN down-projections: at the
    default bar (0.99) it is kept, and its vectors stay within 0.99 of torch's."""
    import onnx as onnx_lib

    from agentroute.embed_onnx import OnnxEmbedder, _fp32_matmuls

    emb = OnnxEmbedder(precision="int8").load()
    assert emb.precision_ == "int8" and emb.min_cosine_ >= 0.99
    kept = _fp32_matmuls(onnx_lib.load(str(emb.folder / "model.onnx")))
    assert sum("/output/dense/MatMul" in n and "attention" not in n for n in kept) == 6  # one per layer
    got = emb.embed(TEXTS)
    assert np.min(np.sum(got * torch_vectors, axis=1)) >= 0.99
    q = onnx_lib.load(str(emb.folder / "model.int8-pc-ffn32.onnx"))
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in q.graph.node)

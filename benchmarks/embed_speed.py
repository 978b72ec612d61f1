"""Embedding throughput per runtime for the same all-MiniLM-L6-v2 weights, and the cosine to torch.

Runtimes: torch (sentence-transformers, batch 64, one thread), ONNX Runtime fp32 (the weights
exported locally, batches of 32 sorted by length, one thread) and ONNX Runtime int8 (dynamic
quantisation of the linear layers, measured even when the embedder would reject it). The runtimes
are timed in alternation for ``--rounds`` rounds on the same texts, reporting the median texts per
CPU-second of the process (comparable on a shared machine, where wall time mostly measures the
load; wall texts/s and the load average are printed too); the cosine to the
torch vectors is reported as min / mean over the texts.

    python benchmarks/embed_speed.py --n 400 --rounds 3
    python benchmarks/embed_speed.py --pieces 48,16+32   # also ONNX on piece windows (window cut timed too)

With ``--pieces`` each window adds an fp32 and an int8 ONNX row; their cosine is to the torch vectors
of the whole text (how far the window moves a vector), not a runtime's error.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np


def sample_texts(n: int, datasets: list[str], seed: int = 0) -> list[str]:
    """``n`` train prompts of the datasets (equal shares), seeded."""
    from agentroute.eval import load_dataset

    rng = np.random.default_rng(seed)
    out: list[str] = []
    for spec in datasets:
        queries = list(load_dataset(spec).train.queries)
        out += [queries[i] for i in rng.choice(len(queries), size=n // len(datasets), replace=False)]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--datasets", default="routellm-mmlu,routerbench")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pieces", default="", help="comma-separated piece windows (N or HEAD+TAIL) to time too")
    args = parser.parse_args(argv)
    print(f"command: python {' '.join(sys.argv)}")
    from agentroute._optional import torch_module
    from agentroute.embed import SentenceEmbedder, default_model_path
    from agentroute.embed_onnx import OnnxEmbedder

    texts = sample_texts(args.n, args.datasets.split(","))
    torch_module()
    st = __import__("sentence_transformers")
    model = st.SentenceTransformer(default_model_path(), device="cpu")
    fp32 = OnnxEmbedder().load()
    int8 = OnnxEmbedder(precision="int8", min_cosine=-1.0).load()  # kept whatever its cosine
    runtimes = {
        "torch (sentence-transformers)": lambda: model.encode(
            texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True
        ),
        "onnx fp32": lambda: fp32.embed(texts),
        "onnx int8": lambda: int8.embed(texts),
    }
    for spec in [p for p in args.pieces.split(",") if p.strip()]:
        cut = SentenceEmbedder(cache=False, pieces=spec)
        runtimes[f"onnx fp32, pieces {spec}"] = lambda c=cut: fp32.embed([c.window(t) for t in texts])
        runtimes[f"onnx int8, pieces {spec}"] = lambda c=cut: int8.embed([c.window(t) for t in texts])
    times: dict[str, list[float]] = {k: [] for k in runtimes}
    cpu: dict[str, list[float]] = {k: [] for k in runtimes}
    vectors: dict[str, np.ndarray] = {}
    loads = []
    for _ in range(args.rounds):
        for name, run in runtimes.items():
            loads.append(os.getloadavg()[0])
            start, start_cpu = time.perf_counter(), time.process_time()
            vectors[name] = np.asarray(run(), dtype=np.float32)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    ref = vectors["torch (sentence-transformers)"]
    base = len(texts) / statistics.median(cpu["torch (sentence-transformers)"])
    print(f"{len(texts)} texts, {args.rounds} rounds, load average {min(loads):.1f}–{max(loads):.1f}")
    print("| runtime | texts per CPU-second (median) | × torch | texts/s wall (median) | cosine to torch min / mean |")
    print("|---|---:|---:|---:|---|")
    for name in runtimes:
        rate = len(texts) / statistics.median(cpu[name])
        wall = len(texts) / statistics.median(times[name])
        cos = np.sum(vectors[name] * ref, axis=1)
        print(f"| {name} | {rate:.1f} | {rate / base:.2f} | {wall:.1f} | {cos.min():.5f} / {cos.mean():.5f} |")
    print(f"int8 probe-set min cosine to fp32: {int8.min_cosine_:.4f} (kept by default only if ≥ 0.99)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

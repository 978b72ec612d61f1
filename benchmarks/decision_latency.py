"""Routing decision latency for a fresh query, end to end: embedding included.

Each router is fitted on the RouterBench train split (embeddings of the train queries come from
the cache), put in serving mode, then routes ``--n`` test queries one at a time, each made new by a
per-run nonce so that its embedding is computed (never read from the cache): wall time and CPU
time of the process (``time.process_time``: what the decision costs, whatever the machine's load)
of ``router.route(ctx)``, p50 and p99. One torch / ONNX Runtime thread (the package default).

    python benchmarks/decision_latency.py --n 200
    python benchmarks/decision_latency.py --routers knn,logreg --runtime torch
    python benchmarks/decision_latency.py --routers none --dataset routellm-mmlu --precision int8 --threads 2
    python benchmarks/decision_latency.py --pieces 16+48     # the encoder reads a 16 + 48 piece window

``--routers none`` times the embedding alone. The word-piece length of the queries is printed: the
encoder's cost grows with it (MiniLM reads at most 256), so the datasets differ.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import uuid

import numpy as np

ROUTERS = "random,cheapest,best-single,per-task,knn,logreg,mlp,mf,ant-colony,graph-router,kg-gnn"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--routers", default=ROUTERS)
    parser.add_argument("--runtime", default=None, help="embedding runtime: onnx or torch (default: auto)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--dataset", default="routerbench")
    parser.add_argument("--precision", default=None, help="ONNX precision: fp32 or int8 (default: fp32)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default 1)")
    parser.add_argument("--pieces", default=None,
                        help="word pieces the encoder reads: N (the last N), HEAD+TAIL, or all "
                             "(default: $AGENTROUTE_EMBED_PIECES)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.runtime:
        os.environ["AGENTROUTE_EMBED_RUNTIME"] = args.runtime
    if args.precision:
        os.environ["AGENTROUTE_EMBED_PRECISION"] = args.precision
    if args.threads:
        os.environ["AGENTROUTE_ORT_THREADS"] = str(args.threads)
    if args.pieces is not None:
        os.environ["AGENTROUTE_EMBED_PIECES"] = args.pieces
    print(f"command: python {' '.join(sys.argv)}")
    from agentroute.embed import default_embedder
    from agentroute.eval import load_dataset
    from agentroute.eval.harness import build_contexts, make_eval_router

    data = load_dataset(args.dataset)
    ctxs, _ = build_contexts(data, "test")
    rng = np.random.default_rng(0)
    picks = rng.choice(len(ctxs), size=args.n + args.warmup, replace=False)

    def fresh_queries() -> list:
        """New texts for every router: a query embedded once is memoised for the process."""
        nonce = uuid.uuid4().hex[:8]
        return [
            dataclasses.replace(ctxs[int(i)], query=f"{ctxs[int(i)].query} [{nonce}-{k}]",
                                step_input=f"{ctxs[int(i)].query} [{nonce}-{k}]")
            for k, i in enumerate(picks)
        ]  # fmt: skip

    emb = default_embedder()
    for _ in range(args.warmup):
        emb.embed([f"warm-up {uuid.uuid4().hex}"])
    solo, solo_cpu = [], []
    for ctx in fresh_queries()[: args.n]:
        start, start_cpu = time.perf_counter(), time.process_time()
        emb.embed([ctx.query])
        solo.append(1e3 * (time.perf_counter() - start))
        solo_cpu.append(1e3 * (time.process_time() - start_cpu))
    pieces = _word_pieces(emb, [c.query for c in fresh_queries()[: args.n]])
    print(f"load average {os.getloadavg()[0]:.1f}; {args.n} fresh {args.dataset} test queries, "
          f"{len(ctxs[0].candidates)} candidates; word pieces embedded p50 {np.median(pieces):.0f}, "
          f"max {max(pieces)}; threads {os.environ.get('AGENTROUTE_ORT_THREADS', '1')}; "
          f"piece window {emb.pieces or 'all'}")  # fmt: skip
    print("| router | p50 ms | p99 ms | CPU p50 ms | CPU p99 ms |")
    print("|---|---:|---:|---:|---:|")
    print(f"| (embedding alone, {emb.runtime_}) | {_row(solo, solo_cpu)} |")
    for spec in [r for r in args.routers.split(",") if r and r != "none"]:
        fresh = fresh_queries()
        name, router = make_eval_router(spec)
        router.train().fit(data.train if not getattr(router, "replay_only", False) else data.test)
        router.serve()
        for ctx in fresh[: args.warmup]:
            router.route(ctx)
        times, cpu = [], []
        for ctx in fresh[args.warmup :]:
            start, start_cpu = time.perf_counter(), time.process_time()
            router.route(ctx)
            times.append(1e3 * (time.perf_counter() - start))
            cpu.append(1e3 * (time.process_time() - start_cpu))
        print(f"| {name} | {_row(times, cpu)} |", flush=True)
    print(f"embedding runtime: {default_embedder().runtime_}")
    return 0


def _word_pieces(emb, texts: list[str]) -> list[int]:  # noqa: ANN001
    """Word pieces the encoder reads per text (truncated at its maximum length)."""
    onnx = getattr(emb, "_onnx", None)
    if onnx is None:
        return [0]
    return [len(ids) for ids in onnx._encode_ids([emb.window(t) for t in texts])]


def _row(wall: list[float], cpu: list[float]) -> str:
    w, c = np.array(wall), np.array(cpu)
    return " | ".join(f"{np.percentile(x, q):.2f}" for x in (w, c) for q in (50, 99))


if __name__ == "__main__":
    raise SystemExit(main())

"""Routing decision latency for a fresh query, end to end: embedding included.

Each router is fitted on the RouterBench train split (embeddings of the train queries come from
the cache), put in serving mode, then routes ``--n`` test queries one at a time, each made new by a
per-run nonce so that its embedding is computed (never read from the cache): wall time and CPU
time of the process (``time.process_time``: what the decision costs, whatever the machine's load)
of ``router.route(ctx)``, p50 and p99. One torch / ONNX Runtime thread (the package default).

    python benchmarks/decision_latency.py --n 200
    python benchmarks/decision_latency.py --routers knn,logreg --runtime torch
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
    args = parser.parse_args(argv)
    if args.runtime:
        os.environ["AGENTROUTE_EMBED_RUNTIME"] = args.runtime
    print(f"command: python {' '.join(sys.argv)}")
    from agentroute.embed import default_embedder
    from agentroute.eval import load_dataset
    from agentroute.eval.harness import build_contexts, make_eval_router

    data = load_dataset("routerbench")
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
    print(f"load average {os.getloadavg()[0]:.1f}; {args.n} fresh RouterBench test queries, 11 candidates")
    print("| router | p50 ms | p99 ms | CPU p50 ms | CPU p99 ms |")
    print("|---|---:|---:|---:|---:|")
    print(f"| (embedding alone, {emb.runtime_}) | {_row(solo, solo_cpu)} |")
    for spec in args.routers.split(","):
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


def _row(wall: list[float], cpu: list[float]) -> str:
    w, c = np.array(wall), np.array(cpu)
    return " | ".join(f"{np.percentile(x, q):.2f}" for x in (w, c) for q in (50, 99))


if __name__ == "__main__":
    raise SystemExit(main())

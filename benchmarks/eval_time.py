"""Where a cold ``agentroute eval`` spends its time, and cold/warm wall times per embedding runtime.

Each run is a fresh process with its own empty ``$AGENTROUTE_CACHE`` (cold: no cached
embeddings, token counts or ONNX export), then the same command again on that cache (warm). The
cold run also reports its phases: loading the dataset (CSV + token counts), embedding every
train and test query, then each router's fit and sweep.

    python benchmarks/eval_time.py --dataset routellm-mmlu --runtimes torch,onnx
    python benchmarks/eval_time.py --dataset routellm-mmlu:/tmp/mmlu_small --routers knn,per-task
    python benchmarks/eval_time.py --dataset routerbench --runtimes onnx,onnx-int8 --limit 1000

Runtimes: ``torch``, ``onnx`` (fp32) and ``onnx-int8`` (:func:`agentroute.embed_onnx.quantize_int8`).
``--limit N`` keeps a seeded subset of N queries per split (in both the cold and the warm run).

Runtimes are measured back to back in one invocation, so compare them within a run (the machine
is shared; absolute times move with its load, which is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROUTERS = "random,cheapest,strongest,per-task,knn,logreg,mlp,mf"


def phases(dataset: str, routers: str, limit: int | None = None) -> dict[str, float]:
    """Run in a child process: time each phase of an evaluation, return {phase: seconds} (wall;
    "cpu …" entries: CPU seconds of the process)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out: dict[str, float] = {}
    from agentroute.embed import default_embedder
    from agentroute.eval import load_dataset
    from agentroute.eval.harness import build_contexts, evaluate

    data = load_dataset(dataset, limit=limit)
    out["load dataset"] = time.perf_counter() - t0
    t = time.perf_counter()
    build_contexts(data, "test")
    out["contexts (token counts)"] = time.perf_counter() - t
    t, c = time.perf_counter(), time.process_time()
    emb = default_embedder()
    texts = list(data.train.queries) + list(data.test.queries)
    emb.embed(texts)
    out[f"embed {len(texts)} queries ({emb.runtime_})"] = time.perf_counter() - t
    out["cpu: embedding"] = time.process_time() - c
    t = time.perf_counter()
    result = evaluate(data, routers.split(","), progress=False)
    for r in result.routers:
        out[f"router {r.name}: fit"] = r.fit_s or 0.0
    out["evaluate (all routers, fit + sweep)"] = time.perf_counter() - t
    out["total"] = time.perf_counter() - t0
    out["cpu: total"] = time.process_time() - c0
    return out


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s of the child)."""
    before = _child_cpu()
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, _child_cpu() - before


def _child_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="routellm-mmlu")
    parser.add_argument("--routers", default=ROUTERS)
    parser.add_argument("--runtimes", default="torch,onnx")
    parser.add_argument("--limit", type=int, default=None, help="at most N queries per split (seeded subset)")
    parser.add_argument("--phases", action="store_true", help="child: print phase times as JSON")
    args = parser.parse_args(argv)
    if args.phases:
        print(json.dumps(phases(args.dataset, args.routers, args.limit)))
        return 0
    print(f"command: python {' '.join(sys.argv)}")
    for runtime in args.runtimes.split(","):
        with tempfile.TemporaryDirectory(prefix="agentroute-cold-") as cache:
            env = {**os.environ, "AGENTROUTE_CACHE": cache, "AGENTROUTE_EMBED_RUNTIME": runtime.split("-")[0],
                   "AGENTROUTE_EMBED_PRECISION": "int8" if runtime.endswith("int8") else "fp32",
                   "AGENTROUTE_PROGRESS": "0"}  # fmt: skip
            limit = ["--limit", str(args.limit)] if args.limit else []
            load = os.getloadavg()[0]
            start = time.perf_counter()
            child = subprocess.run(
                [sys.executable, __file__, "--phases", "--dataset", args.dataset, "--routers", args.routers, *limit],
                env=env, capture_output=True, text=True,
            )  # fmt: skip
            if child.returncode:
                print(child.stderr[-3000:])
                return child.returncode
            cold = time.perf_counter() - start
            detail = json.loads(child.stdout.strip().splitlines()[-1])
            cli = [sys.executable, "-c", "from agentroute.cli import main; main()", "eval", "--dataset", args.dataset,
                   "--routers", args.routers, "--json", "--out", os.path.join(cache, "out"), *limit]  # fmt: skip
            warm, warm_cpu = run(cli, env)
            print(f"\n{runtime}: cold {cold:.1f} s (process, load average {load:.1f}), warm CLI {warm:.1f} s "
                  f"({warm_cpu:.1f} CPU s)")  # fmt: skip
            for phase, secs in detail.items():
                print(f"  {phase:<48} {secs:8.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

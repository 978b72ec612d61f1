"""Local model benchmark: load times and micro-batched throughput of SmolLM2-135M-Instruct.

Measures, on this machine:

1. cold load from the GGUF file (a fresh process with an empty ``AGENTROUTE_CACHE``: parse,
   dequantize, write the safetensors cache);
2. load from that safetensors cache in another fresh process;
3. greedy generation of 64 tokens through :class:`LocalBackend`: one request alone, then 8
   concurrent requests (micro-batched into one ``generate`` call), as generated tokens per second.

Run: ``python benchmarks/local_model.py`` (``--repeats N`` for the throughput runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

TOPICS = [
    "the sea",
    "a mountain",
    "a city at night",
    "an old library",
    "a train",
    "the desert",
    "a forest",
    "a river",
]


def child_load() -> None:
    """In a fresh process: load the default model (cache per $AGENTROUTE_CACHE) and report timings."""
    started = time.perf_counter()
    from agentroute.pool.backends.local import DEFAULT_GGUF, LocalModel

    model = LocalModel.load(DEFAULT_GGUF)
    timings = {
        "loaded_from": model.loaded_from,
        "load_s": model.load_s,
        "process_s": time.perf_counter() - started,
    }
    print(json.dumps(timings))


def load_in_fresh_process(cache: str) -> dict[str, float | str]:
    env = {**os.environ, "AGENTROUTE_CACHE": cache}
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--child-load"], env=env, capture_output=True, text=True, check=True
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - started
    return result


async def throughput(repeats: int, max_tokens: int) -> dict[int, tuple[float, float, float, int]]:
    """For 1 and 8 concurrent requests: median tokens per wall second, per CPU second (this process,
    all threads: robust to other load on the machine), wall seconds a run, generate calls a run."""
    from agentroute.pool.backends.local import DEFAULT_GGUF, LocalBackend
    from agentroute.pool.card import ModelCard
    from agentroute.types import CompletionRequest

    card = ModelCard(
        id="smol", backend="local", model=DEFAULT_GGUF, input_price=0.05, output_price=0.2, timeout_s=600
    )
    backend = LocalBackend(max_batch=8)
    await backend.preload(card)

    def request(topic: str) -> CompletionRequest:
        content = f"Write a long, detailed story about {topic}."
        return CompletionRequest(
            model=card.model, messages=[{"role": "user", "content": content}], max_tokens=max_tokens
        )

    await backend.complete(request("warm-up"), card)
    figures: dict[int, tuple[float, float, float, int]] = {}
    for concurrency in (1, 8):
        rates, cpu_rates, walls = [], [], []
        calls_before = backend.batcher(card).generate_calls
        for _ in range(repeats):
            started, cpu_started = time.perf_counter(), time.process_time()
            done = await asyncio.gather(*(backend.complete(request(t), card) for t in TOPICS[:concurrency]))
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            tokens = sum(c.tokens_out for c in done)
            rates.append(tokens / wall)
            cpu_rates.append(tokens / cpu)
            walls.append(wall)
        calls = (backend.batcher(card).generate_calls - calls_before) // repeats
        figures[concurrency] = (
            statistics.median(rates),
            statistics.median(cpu_rates),
            statistics.median(walls),
            calls,
        )
    await backend.aclose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="throughput runs per concurrency (median)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--child-load", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_load:
        child_load()
        return

    with tempfile.TemporaryDirectory(prefix="agentroute-bench-") as cache:
        cold = load_in_fresh_process(cache)
        warm = load_in_fresh_process(cache)
    figures = asyncio.run(throughput(args.repeats, args.max_tokens))

    threads = os.environ.get("AGENTROUTE_TORCH_THREADS", "1")
    print(f"\nSmolLM2-135M-Instruct (Q4_1 GGUF, dequantized fp32), CPU, torch threads: {threads}")
    print(f"{'measure':<44} {'value':>12}")
    print("-" * 57)
    print(f"{'cold load from GGUF (load only)':<44} {cold['load_s']:>10.1f} s")
    print(f"{'cold load, whole fresh process':<44} {cold['wall_s']:>10.1f} s")
    print(f"{'load from safetensors cache (load only)':<44} {warm['load_s']:>10.1f} s")
    print(f"{'cache load, whole fresh process':<44} {warm['wall_s']:>10.1f} s")
    for concurrency, (rate, cpu_rate, wall, calls) in figures.items():
        label = f"greedy {args.max_tokens} tok, {concurrency} concurrent ({calls} generate call{'s' * (calls != 1)})"
        print(f"{label:<44} {rate:>6.1f} tok/s  ({cpu_rate:.1f} tok per CPU-s, {wall:.1f} s/run)")
    print(f"\nmedian of {args.repeats} runs; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()

"""Budgets at the provider's bill: many tasks through the real Dispatcher against adversarial servers.

An aiohttp OpenAI-compatible server on 127.0.0.1 (``tests/fixtures_adversary.py``) bills every
request it receives with SmolLM2's real tokenizer. Each task gets a random budget of one kind
(usd, tokens, calls, large_calls, seconds) and makes up to four routed steps (random router, pool of
``backend: openai`` cards, some with ``sc@3``). Two pools:

- **honest**: servers that keep their contract (500, 429, hangs, dropped connections and garbage
  replies allowed; usage honest). Every task's bill must stay within its limit.
- **liars**: usage missing, negative, NaN, hundreds of hidden tokens above ``max_tokens``, streams
  that ignore ``max_tokens``. Every overrun must be audited and the stored cost must not be below
  the bill (except the tokens a cut stream generated after the client left: reported as "unseen").

For each pool and limit kind it prints tasks over their limit (by the server's bill) / tasks,
provider calls (requests the server received) vs ledger calls (attempts the ledger charged), and
for ``seconds`` the worst lateness of a task past its deadline.

The server runs in its own process (a provider is not in our interpreter); a runaway stream
generates a token every ``--pace`` seconds (200 tokens/s by default, fast for an LLM).

    python benchmarks/budget_adversarial.py [--tasks 10000] [--concurrency 100] [--pool honest|liars|both]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the adversarial server lives with the tests

from tests.fixtures_adversary import (  # noqa: E402
    HONEST_POOL,
    LIAR_POOL,
    RemoteAdversary,
    adversary_pool,
    run_tasks,
    summary,
)


async def one_pool(name: str, spec: dict, server: RemoteAdversary, args: argparse.Namespace, console: Console) -> None:
    server.reset()
    timeout = args.timeout if name == "honest" else 60.0
    pool = adversary_pool(server.url, spec, timeout_s=timeout, max_tokens=args.max_tokens)
    started = time.perf_counter()
    kinds = tuple(k for k in args.kinds.split(",") if name == "honest" or k != "seconds")
    lags: list[float] = []

    async def watch_loop() -> None:  # how late the event loop wakes a 50 ms sleep: its saturation
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.05)
            lags.append(time.perf_counter() - before - 0.05)

    watcher = asyncio.create_task(watch_loop())
    outcomes = await run_tasks(server, pool, tasks=args.tasks, concurrency=args.concurrency, seed=args.seed, kinds=kinds)
    watcher.cancel()
    wall = time.perf_counter() - started
    large = frozenset(m for m, v in spec.items() if v[2] == "large")
    table = summary(outcomes, large, seconds_slack=0.1)
    out = Table(title=f"{name} servers: {args.tasks} tasks, concurrency {args.concurrency}, {wall:.1f} s")
    for column in ("limit kind", "tasks over / tasks", "provider calls", "ledger calls", "worst lateness (s)"):
        out.add_column(column, justify="right")
    for kind, row in table.items():
        late = f"{row['max_over_s']:.3f}" if kind == "seconds" else ""
        out.add_row(kind, f"{row['over']:.0f} / {row['tasks']:.0f}", f"{row['provider_calls']:.0f}", f"{row['ledger_calls']:.0f}", late)
    console.print(out)
    statuses = statistics.multimode([o.status for o in outcomes])
    below = [o for o in outcomes if o.stored_usd < o.bill.usd - 1e-12]
    price_out = {m: v[1] for m, v in spec.items()}
    unseen = [
        c.completion_tokens - c.max_tokens - 1 for o in outcomes for c in o.bill.charges if c.behaviour == "runaway" and c.completion_tokens > c.max_tokens
    ]
    unseen_usd = sum(
        max(0, c.completion_tokens - c.max_tokens - 1) * price_out[c.model] / 1e6
        for o in outcomes for c in o.bill.charges if c.behaviour == "runaway"
    )
    over = [o for o in outcomes if o.kind != "seconds" and o.billed(large) > o.limit + 1e-12]
    unaudited = [o for o in over if not any(k in ("overrun", "protocol_error") for k, _ in o.audit)]
    lags.sort()
    console.print(
        f"  event-loop lag (a 50 ms sleep woken late): median {statistics.median(lags) * 1000:.0f} ms, "
        f"p95 {lags[int(0.95 * (len(lags) - 1))] * 1000:.0f} ms, max {lags[-1] * 1000:.0f} ms"
    )
    late = sorted(o.elapsed_s - o.limit for o in outcomes if o.kind == "seconds")
    if late:
        console.print(
            f"  seconds budgets, lateness past the deadline: median {statistics.median(late):.3f} s, "
            f"p95 {late[int(0.95 * (len(late) - 1))]:.3f} s, max {late[-1]:.3f} s"
        )
    console.print(
        f"  most common status: {statuses}; audited overruns: {sum(1 for o in outcomes for k, _ in o.audit if k == 'overrun')}, "
        f"protocol errors: {sum(1 for o in outcomes for k, _ in o.audit if k == 'protocol_error')}"
    )
    console.print(
        f"  tasks over their limit by the bill: {len(over)} (unaudited: {len(unaudited)}); "
        f"tasks stored below the bill: {len(below)} (${sum(o.bill.usd - o.stored_usd for o in below):.6f}); "
        f"cut streams: {len(unseen)}, tokens generated after the client left: "
        f"median {statistics.median(unseen) if unseen else 0}, max {max(unseen, default=0)} (${unseen_usd:.6f})"
    )


async def main(args: argparse.Namespace) -> None:
    console = Console()
    prices = {m: v[:2] for m, v in {**HONEST_POOL, **LIAR_POOL}.items()}
    server_args = ["--hang-s", str(4 * args.timeout), "--pace-s", str(args.pace), "--seed", str(args.seed), "--prices", json.dumps(prices)]
    with RemoteAdversary(*server_args) as server:  # its own process: a provider is not in our interpreter
        if args.pool in ("honest", "both"):
            await one_pool("honest", HONEST_POOL, server, args, console)
        if args.pool in ("liars", "both"):
            await one_pool("liars", LIAR_POOL, server, args, console)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--pool", choices=("honest", "liars", "both"), default="both")
    parser.add_argument("--timeout", type=float, default=2.0, help="card timeout on the honest servers (hangs last 4× longer)")
    parser.add_argument("--pace", type=float, default=0.005, help="seconds per token of a stream that ignores max_tokens")
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", default="usd,tokens,calls,large_calls,seconds", help="limit kinds, comma-separated")
    asyncio.run(main(parser.parse_args()))

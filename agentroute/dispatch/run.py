"""The live state of one task (:class:`TaskRun`) and its checkpointable snapshot.

A :class:`TaskRun` lives in memory while its steps run. :meth:`TaskRun.checkpoint` turns it into a
small JSON-able dict — the task's identity, its ledger (open reservations counted as spent), the
next step index, the stage and a sequence number — that a LangGraph checkpointer saves with the
graph state; :meth:`TaskRun.from_checkpoint` rebuilds the run from it in another process, so a
resumed thread continues the same task within the same budget.

:data:`LIVE` is the in-process registry of live runs keyed by task id: every node of one graph
invocation — concurrent ones included — finds the same :class:`TaskRun`, hence one ledger.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from agentroute.budget import RESOURCES, Budget, Ledger
from agentroute.memory.settle import settling_audits, settling_steps, spent, unsettled
from agentroute.types import Step, Task

if TYPE_CHECKING:
    from agentroute.memory.base import MemoryStore

#: Version of the checkpoint format written by :meth:`TaskRun.checkpoint`.
CHECKPOINT_VERSION = 1


@dataclass
class TaskRun:
    """The live state of one task: its record, ledger, steps so far and context for skills."""

    task: Task
    ledger: Ledger
    steps: list[Step] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)
    stage: str | None = None
    exhausted: bool = False
    failed: bool = False
    _index: int = 0
    _seq: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _fixed: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    #: Set once the task's record is final: the graph that opened the task has finished it.
    finished: bool = False
    #: JSON-able facts about the task's origin, carried in every checkpoint (who opened it, where).
    carry: dict[str, Any] = field(default_factory=dict)

    def next_index(self) -> int:
        with self._lock:  # concurrent steps (fan-out, parallel nodes, sync nodes in threads)
            self._index += 1
            return self._index - 1

    @property
    def stop_status(self) -> Literal["budget_exhausted", "failed"]:
        """The status a task stopped short of its answer takes: ``budget_exhausted`` once a limit
        was reached (a partial answer is not a failure of the agents), else ``failed``."""
        return "budget_exhausted" if self.exhausted else "failed"

    @property
    def best_answer(self) -> str | None:
        """The latest successful output: the partial answer when the budget runs out."""
        for step in reversed(self.steps):
            if step.status == "ok" and step.output:
                return step.output
        return None

    # -- checkpoints --------------------------------------------------------------------------
    def checkpoint(self, **extra: Any) -> dict[str, Any]:
        """A JSON-able snapshot of the run; a later ``seq`` always reflects a later state."""
        fixed = self._fixed
        if fixed is None:
            task = self.task
            self._fixed = fixed = {
                "v": CHECKPOINT_VERSION,
                "task_id": task.id,
                "query": task.query,
                "graph": task.graph,
                "task_type": task.task_type,
                "metadata": task.metadata,
                "budget": task.budget.given() if task.budget is not None else None,
                "carry": self.carry,
            }
        with self._lock:
            self._seq += 1
            seq, index = self._seq, self._index
        return {
            **fixed,
            **extra,
            "ledger": self.ledger.snapshot(),
            "index": index,
            "stage": self.stage,
            "status": self.task.status if self.finished else "running",
            "exhausted": self.exhausted,
            "failed": self.failed,
            "seq": seq,
        }

    @classmethod
    def from_checkpoint(cls, snapshot: dict[str, Any], memory: MemoryStore | None = None) -> TaskRun:
        """Rebuild a run from :meth:`checkpoint`, reconciled with what ``memory`` recorded.

        The task record and its steps come from ``memory`` when it has them (the record is kept
        as it is, never reset). Steps recorded *after* the checkpoint was taken — a step paid for
        just before a crash — are charged to the ledger and advance the step index, so spending
        stays continuous across the crash. So are attempts in flight at the crash (their write-ahead
        records with no stored step, :class:`~agentroute.budget.Attempt`): each is charged its worst
        case, audited, and settled by a failed step stored at that cost. A task the memory holds as
        ``running`` (its process died) is stored again as this process's before this returns, so
        ``memory reconcile`` leaves it to the run that continues it.
        """
        budget = Budget(**snapshot["budget"]) if snapshot.get("budget") is not None else None
        stored = None
        if memory is not None:
            memory.flush()
            stored = memory.get_task(snapshot["task_id"])
        reclaim = (
            stored is not None and stored.task.status == "running"
        )  # its row names the process that left it
        if stored is not None:
            task, steps = stored.task, list(stored.steps)
            task.status = "running"
        else:
            task = Task(
                id=snapshot["task_id"],
                query=snapshot.get("query", ""),
                graph=snapshot.get("graph", ""),
                task_type=snapshot.get("task_type"),
                budget=budget,
                metadata=dict(snapshot.get("metadata") or {}),
            )
            steps = []
        ledger_state = dict(snapshot["ledger"])
        index = int(snapshot.get("index", 0))
        later = [s for s in steps if s.index >= index]
        # write-ahead records of the attempts made after the checkpoint (each retry, fallback, sample)
        made = (
            [a for a in memory.attempts(task.id) if a.step_index >= index]
            if memory is not None and stored
            else []
        )
        in_flight = unsettled(made, steps)
        if later or in_flight:  # paid after the checkpoint: book them, as the provider did
            booked = spent(later, made)
            ledger_state["spent"] = [
                was + booked.get(r) for was, r in zip(ledger_state["spent"], RESOURCES, strict=True)
            ]
            index = max([s.index for s in later] + [a.step_index for a in in_flight]) + 1
        run = cls(
            task=task,
            ledger=Ledger.restore(ledger_state, budget),
            steps=steps,
            context={"query": task.query},
            stage=snapshot.get("stage"),
            exhausted=bool(snapshot.get("exhausted")),
            failed=bool(snapshot.get("failed")),
            _index=index,
            _seq=int(snapshot.get("seq", 0)),
            carry=dict(snapshot.get("carry") or {}),
        )
        if in_flight and memory is not None:  # settled now: the task's record holds what they cost
            for step in settling_steps(in_flight):
                steps.append(step)
                memory.record_step(step)
            for event in settling_audits(in_flight):
                run.context.setdefault("audit", []).append(event)
                memory.record_audit(event)
        if memory is not None and reclaim:
            memory.start_task(
                task
            )  # run by this process now: a reconcile elsewhere no longer takes it for gone
            memory.flush()
        return run


def merge_checkpoints(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """LangGraph reducer of the task channel: another task replaces, the same task keeps the latest.

    ``None`` clears the channel (the next routed node starts a new task); a request without a
    ledger (a new task asked for by the input) always wins.

    >>> merge_checkpoints({"task_id": "a", "seq": 3, "ledger": {}}, {"task_id": "a", "seq": 2, "ledger": {}})["seq"]
    3
    >>> merge_checkpoints({"task_id": "a", "seq": 3, "ledger": {}}, {"task_id": "b", "seq": 1})["task_id"]
    'b'
    """
    if right is None:
        return {}
    if (
        not left
        or right.get("task_id") != left.get("task_id")
        or "ledger" not in right
        or "ledger" not in left
    ):
        return right
    return right if right.get("seq", 0) >= left.get("seq", 0) else left


class LiveRuns:
    """In-process registry of live :class:`TaskRun` s, keyed by task id.

    A run in use (``hold``) or pinned by the invocation that owns it is never dropped; idle runs
    beyond ``idle_limit`` are dropped oldest first — a dropped run is rebuilt from its checkpoint
    when needed again, so the limit bounds memory, never correctness.
    """

    def __init__(self, idle_limit: int = 4096):
        self.idle_limit = idle_limit
        self._runs: OrderedDict[str, TaskRun | None] = OrderedDict()
        self._holds: dict[str, int] = {}
        self._pins: dict[str, int] = {}
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._runs)

    def get(self, task_id: str) -> TaskRun | None:
        return self._runs.get(task_id)

    def hold(self, task_id: str, make: Callable[[], TaskRun]) -> TaskRun:
        """The live run of ``task_id`` (``make()`` builds it if absent), held until :meth:`release`."""
        with self._lock:
            run = self._runs.get(task_id)
            if run is None:
                run = self._runs[task_id] = make()
            self._holds[task_id] = self._holds.get(task_id, 0) + 1
            return run

    def pin(self, task_id: str) -> None:
        """Keep ``task_id``'s run (present or future) until :meth:`unpin`: its invocation is running."""
        with self._lock:
            self._runs.setdefault(task_id, None)
            self._holds[task_id] = self._holds.get(task_id, 0) + 1
            self._pins[task_id] = self._pins.get(task_id, 0) + 1

    def pinned(self, task_id: str) -> bool:
        return task_id in self._pins

    def unpin(self, task_id: str) -> None:
        with self._lock:
            left = self._pins.get(task_id, 0) - 1
            if left > 0:
                self._pins[task_id] = left
            else:
                self._pins.pop(task_id, None)
            self.release(task_id)

    def release(self, task_id: str) -> None:
        with self._lock:
            left = self._holds.get(task_id, 0) - 1
            if left > 0:
                self._holds[task_id] = left
                return
            self._holds.pop(task_id, None)
            run = self._runs.get(task_id)
            if run is None or run.finished:
                self._runs.pop(task_id, None)
            else:
                self._runs.move_to_end(task_id)
                self._evict()

    def drop(self, task_id: str) -> None:
        with self._lock:
            if task_id not in self._holds:
                self._runs.pop(task_id, None)

    def _evict(self) -> None:
        excess = len(self._runs) - len(self._holds) - self.idle_limit
        if excess <= 0:
            return
        for task_id in [t for t in self._runs if t not in self._holds][:excess]:
            del self._runs[task_id]


#: The registry every graph of this process shares.
LIVE = LiveRuns()

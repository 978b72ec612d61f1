"""Durable batches of tasks: read queries from JSONL, run them once each, survive crashes and signals.

>>> items, bad = read_jsonl_queries("questions.jsonl")  # doctest: +SKIP
>>> report = asyncio.run(BatchRunner(compiled, memory, batch_id=default_batch_id(compiled.name, items)).run(items))  # doctest: +SKIP

Reading (:func:`read_jsonl_queries`): one JSON object (or string) per line, split on ``\\n`` only —
U+2028, U+2029 and other Unicode line breaks inside a line are text, not line ends; a UTF-8 BOM
and ``\\r\\n`` endings are accepted. Bad lines are reported with their number, not fatal; a
directory, a missing file or binary (non-UTF-8) input is a :class:`~agentroute.errors.ConfigurationError`.
Every item gets a ``query_id``: the input's, or a stable one from a hash of its content
(:func:`content_query_id`), so that a rerun of the same file names the same queries.

Running (:class:`BatchRunner`): the items go into the memory's durable work queue
(:class:`~agentroute.memory.batches.BatchQueue`) under a batch id; workers claim them from the
database, so several processes over one PostgreSQL memory share a batch, and ``resume`` skips
what is finished. Each item runs as one task through ``compiled.arun``; whatever one task raises
ends that task ``failed`` with its reason (in the task's ``metadata["error"]`` and the item), never
the batch. An item rerun after its task was interrupted (a kill, a stop) runs as a new task under
the budget that task left (:meth:`BatchRunner._budget_left`), so a query's bill stays within its budget
across kills. An item with a gold answer (``answer`` or ``answers`` on its line) is scored when its
task ends ``done`` or ``budget_exhausted``: ``metric(answer, gold)`` (:mod:`agentroute.eval.answers`)
becomes the task's score through ``compiled.arun(gold=, metric=)``: scored as the graph finishes the
task (the router's ``observe`` learns it) and stored by ``memory.add_feedback(task_id, score,
source="metric:<name>")``, written before the item is marked finished. :meth:`BatchRunner.stop` (wired to SIGTERM/SIGINT by the CLI) stops claiming, lets the
tasks in flight finish for ``grace_s`` seconds and then cancels them: they end ``interrupted`` with
the cost of their recorded steps, and are claimable again on resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentroute.budget import Attempt, Budget
from agentroute.errors import ConfigurationError
from agentroute.memory.batches import EDITABLE, FINISHED, META_KEY, BatchQueue, Claimed, Reconciled, continued
from agentroute.memory.errors import MemoryWriteError
from agentroute.memory.settle import spent
from agentroute.memory.sql import SQLMemory, watch_tasks
from agentroute.out_path import check_out
from agentroute.types import Step, Task, new_id

__all__ = [
    "BatchReport",
    "BatchRunner",
    "ItemResult",
    "adopt_unbatched",
    "content_query_id",
    "default_batch_id",
    "done_elsewhere",
    "fresh_batch_id",
    "latest_fresh_batch",
    "read_jsonl_queries",
]

log = logging.getLogger("agentroute.batch")

REFUSED = "the memory refuses writes"
"""The stop reason of a run whose memory gave up writes the database refused: it claims nothing
more, lets the items in flight end, and raises :class:`~agentroute.memory.errors.MemoryStoreError`."""

RETIRED = "retired by another worker's reconcile (taken for dead)"
"""The stop reason of a worker found retired, by its heartbeat or its next claim: it stops paying for queries run elsewhere."""

_QUERY_KEYS = ("query", "question", "prompt")
_BOM = b"\xef\xbb\xbf"


def content_query_id(item: dict[str, Any]) -> str:
    """A stable id from an item's content (query, task type, metadata): ``q`` + 16 hex digits.

    >>> content_query_id({"query": "What is 2+2?"}) == content_query_id({"query": "What is 2+2?"})
    True
    """
    text = json.dumps(
        _what_is_asked(item), sort_keys=True, ensure_ascii=True, separators=(",", ":"), default=str
    )
    return "q" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _what_is_asked(item: dict[str, Any]) -> dict[str, Any]:
    """The part of an item that makes it the query it is (its gold answers do not): what its content id hashes."""
    return {k: item.get(k) for k in ("query", "task_type", "metadata")}


def read_jsonl_queries(path: str | Path) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Valid items and ``(line, reason)`` of the bad lines of a JSONL file (see the module docstring).

    An item is ``{"query", "query_id"}`` plus ``task_type`` and ``metadata`` when given (``metadata``
    as given, even when it is not an object: the batch then fails that one task with the reason).
    ``question`` and ``prompt`` are accepted for ``query``. A gold answer (``answer``: a string,
    or ``answers``: a list of strings; both may be given) becomes ``gold`` (a list of strings);
    it does not enter the content id. A duplicate ``query_id`` is a bad line;
    identical queries without ids get ``#2``, ``#3`` … after their content id.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigurationError(f"input {path} is a directory; expected a JSONL file")
    if not path.exists():
        raise ConfigurationError(f"input file {path} does not exist")
    items: list[dict[str, Any]] = []
    bad: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise ConfigurationError(f"cannot read input {path}: {exc.strerror or exc}") from exc
    with fh:
        for number, raw in enumerate(fh, start=1):  # binary lines end at b"\n" only
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            if b"\x00" in raw:
                raise ConfigurationError(
                    f"input {path} line {number} holds a NUL byte: binary input, not JSONL text"
                )
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ConfigurationError(
                    f"input {path} line {number} is not UTF-8 text (byte {exc.start}): binary input, not JSONL"
                ) from None
            line = line.removesuffix("\n").removesuffix("\r").lstrip("\ufeff")
            if not line.strip():
                continue
            item, reason = _parse_line(line)
            if item is None:
                bad.append((number, reason))
                continue
            qid = item.get("query_id")
            if qid is None:
                base = content_query_id(item)
                n = seen.get(base, 0) + 1
                seen[base] = n
                item["query_id"] = base if n == 1 else f"{base}#{n}"
            elif qid in seen:
                bad.append((number, f"duplicate query_id {qid!r} (first on line {seen[qid]})"))
                continue
            else:
                seen[qid] = number
            items.append(item)
    return items, bad


def _parse_line(line: str) -> tuple[dict[str, Any] | None, str]:
    try:
        obj = json.loads(line, strict=False)  # raw control characters (tabs …) inside strings are text
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc.msg} (column {exc.colno})"
    if isinstance(obj, str):
        obj = {"query": obj}
    if not isinstance(obj, dict):
        return None, f"expected an object or a string (got {type(obj).__name__})"
    query = next((obj[k] for k in _QUERY_KEYS if isinstance(obj.get(k), str) and obj[k].strip()), None)
    if query is None:
        wrong = next((k for k in _QUERY_KEYS if obj.get(k) is not None and not isinstance(obj[k], str)), None)
        if wrong is not None:
            return None, f"{wrong} is not text (got {type(obj[wrong]).__name__} {obj[wrong]!r:.40})"
        return None, f"no non-empty {' / '.join(_QUERY_KEYS)} field"
    item: dict[str, Any] = {"query": query}
    qid = obj.get("query_id")
    if qid is not None:
        if isinstance(qid, bool | dict | list) or not str(qid).strip():
            return None, f"query_id must be a non-empty string or number (got {qid!r:.40})"
        item["query_id"] = str(qid)
    if obj.get("task_type") is not None:
        item["task_type"] = str(obj["task_type"])
    if "metadata" in obj:
        item["metadata"] = obj["metadata"]
    gold, reason = _gold(obj)
    if reason:
        return None, reason
    if gold:
        item["gold"] = gold
    return item, ""


def _gold(obj: dict[str, Any]) -> tuple[list[str], str]:
    """The gold answers of a line (``answer`` and/or ``answers``), or the reason they are unusable."""
    gold: list[str] = []
    for key in ("answer", "answers"):
        value = obj.get(key)
        if value is None:
            continue
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in values):
            return [], f"{key!r} must be a string, a number or a list of them"
        gold.extend(str(v) for v in values if str(v).strip())
    return gold, ""


def default_batch_id(graph: str, items: Iterable[dict[str, Any]]) -> str:
    """``GRAPH-<12 hex>`` from the graph's name and the items' query ids: the same input over the
    same graph names the same batch, on any machine."""
    digest = hashlib.sha256(graph.encode())
    for item in items:
        digest.update(b"\n" + str(item["query_id"]).encode("utf-8", "surrogatepass"))
    return f"{graph}-{digest.hexdigest()[:12]}"


def fresh_batch_id(default: str) -> str:
    """The batch of a run without ``--resume``: ``DEFAULT-<8 hex>``, a new one each run."""
    return f"{default}-{new_id()[-8:]}"


def _starting_with(text: str) -> str:
    """A ``LIKE`` pattern (escape ``\\``) of the strings that start with ``text``."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def latest_fresh_batch(memory: SQLMemory, default: str) -> str | None:
    """The most recently updated batch that a run without ``--resume`` started on this input
    (:func:`fresh_batch_id` of ``default``), or None: what ``--resume`` continues when the input's
    default batch does not exist (a first run without ``--resume`` that crashed)."""
    import sqlalchemy as sa

    from agentroute.memory.tables import BATCH_ITEMS

    prefix = _starting_with(default + "-")
    last = sa.func.max(BATCH_ITEMS.c.updated_at)
    query = (
        sa.select(BATCH_ITEMS.c.batch_id)
        .where(BATCH_ITEMS.c.batch_id.like(prefix, escape="\\"))
        .where(sa.func.length(BATCH_ITEMS.c.batch_id) == len(default) + 9)
        .group_by(BATCH_ITEMS.c.batch_id)
        .order_by(last.desc())
        .limit(1)
    )
    with memory.engine.connect() as conn:
        return conn.execute(query).scalar()


def done_elsewhere(
    memory: SQLMemory, graph: str, batch_id: str, items: list[tuple[str, dict[str, Any]]]
) -> tuple[str, int] | None:
    """The other batch of ``graph`` (a :func:`default_batch_id` or :func:`fresh_batch_id` one) where
    most of ``items`` (``(query_id, item)``) are finished as the same query (gold answers aside), and
    how many: what a ``--resume`` of an edited input (whose default batch id is new) would otherwise
    run and pay for again. ``None`` when there is none."""
    import sqlalchemy as sa

    from agentroute.memory.tables import BATCH_ITEMS

    prefix, default = _starting_with(graph + "-"), default_batch_id(graph, [])  # the ids' lengths: theirs
    column = BATCH_ITEMS.c
    given = {query_id: _what_is_asked(item) for query_id, item in items}
    ids = list(given)
    found: dict[str, int] = {}
    with memory.engine.connect() as conn:
        batches = list(  # one pass over an index of batch ids, then key lookups
            conn.execute(
                sa.select(column.batch_id)
                .distinct()
                .where(column.batch_id.like(prefix, escape="\\"), column.batch_id != batch_id)
                .where(sa.func.length(column.batch_id).in_([len(default), len(fresh_batch_id(default))]))
            ).scalars()
        )
        for start in range(0, len(ids) if batches else 0, 5000):  # bounded statements on any input
            rows = conn.execute(  # by primary key: a status filter here made SQLite scan each batch's items
                sa.select(column.batch_id, column.query_id, column.item, column.status).where(
                    column.batch_id.in_(batches), column.query_id.in_(ids[start : start + 5000])
                )
            )
            for (
                name,
                query_id,
                text,
                status,
            ) in rows:  # the same id over another query (ids per file) is not it
                if status in FINISHED and given[query_id] == _what_is_asked(json.loads(text)):
                    found[name] = found.get(name, 0) + 1
    return max(found.items(), key=lambda kv: (kv[1], kv[0])) if found else None


def adopt_unbatched(memory: SQLMemory, graph: str, batch_id: str, items: list[dict[str, Any]]) -> int:
    """Queries of ``items`` finished by a run of an agentroute older than durable batches (its tasks
    have no batch: memory revision 0001), taken into the new, empty batch ``batch_id`` as finished
    with those tasks, so that ``--resume`` does not run them again; returns how many.

    A query is taken only when its latest such task is of ``graph``, has its ``query_id``, asks the
    same (:func:`_what_is_asked`; those releases stored the line's metadata, ``{}`` when none, with
    ``query_id`` added) and ended ``done`` or ``budget_exhausted``; a failed or unfinished one runs.
    Nothing is taken into a batch that holds items, or when another batch holds the input's finished
    queries (:func:`done_elsewhere`: the edited-input refusal)."""
    queue = BatchQueue(memory, batch_id)
    rows = [(str(i["query_id"]), {k: v for k, v in i.items() if k != "query_id"}) for i in items]
    if queue.counts() or done_elsewhere(memory, graph, batch_id, rows) is not None:
        return 0
    asked = {qid: {**_what_is_asked(item), "metadata": {} if item.get("metadata") is None else item["metadata"]}
             for qid, item in rows}  # fmt: skip
    tasks = {qid: task for qid, task in _unbatched_tasks(memory, graph, list(asked)).items()
             if task["status"] in FINISHED and _what_is_asked(task) == asked[qid]}  # fmt: skip
    if not tasks:
        return 0
    queue.add(rows)
    queue.join()
    try:  # an item is written finished only as its worker's claim: claim them in input order, give the rest back
        claimed: list[str] = []
        while len(tasks.keys() & claimed) < len(tasks) and (more := queue.claim(1000)):
            claimed += [c.query_id for c in more]
        for qid in claimed:
            if (task := tasks.get(qid)) is not None:
                queue.finish(
                    qid, status=task["status"], task_id=task["id"], cost_usd=float(task["cost_usd"] or 0.0)
                )
        rest = [qid for qid in claimed if qid not in tasks]
        for start in range(0, len(rest), 1000):
            queue.release(rest[start : start + 1000])
    finally:
        queue.leave()  # the memory flushed first: the items are written
    return sum(queue.counts().get(s, 0) for s in FINISHED)


def _unbatched_tasks(memory: SQLMemory, graph: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The latest task without a batch of ``graph`` for each of the query ids ``ids`` that has one, as
    :func:`_what_is_asked` reads an item (``metadata`` without the ``query_id`` those releases added)."""
    import sqlalchemy as sa

    from agentroute.memory.tables import TASKS

    qid = TASKS.c.meta["query_id"].as_string()
    found: dict[str, dict[str, Any]] = {}
    with memory.engine.connect() as conn:
        for start in range(0, len(ids), 5000):  # bounded statements on any input
            query = (
                sa.select(
                    TASKS.c.id,
                    TASKS.c.query,
                    TASKS.c.task_type,
                    TASKS.c.status,
                    TASKS.c.cost_usd,
                    TASKS.c.meta,
                )
                .where(TASKS.c.graph == graph, qid.in_(ids[start : start + 5000]))
                .order_by(TASKS.c.created_at, TASKS.c.id)
            )
            for row in conn.execute(query).mappings():
                meta = row["meta"] if isinstance(row["meta"], dict) else {}
                if META_KEY not in meta:  # a batch's task: its batch says whether it is done
                    found[str(meta["query_id"])] = {
                        **row, "metadata": {k: v for k, v in meta.items() if k != "query_id"}
                    }  # fmt: skip
    return found


def out_usd(cost: float) -> float:
    """A cost as an ``--out`` line writes it: a float (a run without a step costs an int 0), a sum
    of step costs without its float noise (``1.61e-05``, not ``1.6100000000000002e-05``): to 12
    decimals, a millionth of a micro-dollar."""
    return round(float(cost), 12)


@dataclass
class ItemResult:
    """How one item of the batch ended (one ``--out`` line).

    :attr:`cost_usd` is what the query cost: its task's own cost (:attr:`task_cost_usd`) plus that of
    the interrupted tasks it continues (:attr:`continues`), which get no line of their own. Summed
    over an ``--out`` file, it is what the batch cost."""

    query_id: str
    query: str
    status: str
    task_id: str | None
    answer: str | None = None
    task_cost_usd: float = 0.0
    error: str | None = None
    steps: list[Step] = field(default_factory=list)
    score: float | None = None
    continues: dict[str, float] = field(default_factory=dict)
    """The query's earlier tasks, interrupted, that this one reran: id → cost."""

    @property
    def cost_usd(self) -> float:
        """The query's cost across its tasks: this one and those it continues."""
        return self.task_cost_usd + sum(self.continues.values())

    def line(self) -> dict[str, Any]:
        return {
            "query_id": self.query_id,
            "query": self.query,
            "task_id": self.task_id,
            "status": self.status,
            "answer": self.answer,
            "cost_usd": out_usd(self.cost_usd),
            "task_cost_usd": out_usd(self.task_cost_usd),
            "continues": list(self.continues),
            "error": self.error,
            "score": self.score,
            "steps": [
                {
                    "index": s.index, "stage": s.stage, "role": s.agent.role, "model": s.agent.model,
                    "strategy": s.agent.strategy, "cost_usd": out_usd(s.cost_usd), "tokens_in": s.tokens_in,
                    "tokens_out": s.tokens_out, "latency_ms": round(s.latency_ms, 2), "status": s.status,
                }
                for s in self.steps
            ],
        }  # fmt: skip


@dataclass
class BatchReport:
    """What one :meth:`BatchRunner.run` did, and where the whole batch stands."""

    batch_id: str
    worker_id: str
    results: list[ItemResult]
    counts: dict[str, int]
    """Items of the whole batch by status (all workers, all runs)."""
    added: int = 0
    reconciled: Reconciled = field(default_factory=Reconciled)
    stopped: str | None = None
    """The reason :meth:`BatchRunner.stop` was called (e.g. ``"SIGTERM"``), if it was."""

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)

    @property
    def remaining(self) -> int:
        """Items not finished yet (pending, interrupted, or running in another worker)."""
        return sum(n for s, n in self.counts.items() if s not in (*FINISHED, "failed"))


def _as_stored(result: ItemResult, row: dict[str, Any]) -> ItemResult:
    """``result`` as its batch item was stored: the memory's writer stores the item of a task that lost a
    step ``failed``, and its ``--out`` line says so (a ``done`` line there was written again by the rerun)."""
    if row.get("status") == result.status:
        return result
    return dataclasses.replace(result, status=row["status"], error=row.get("error"))


def _line_bytes(result: ItemResult) -> bytes:
    return (json.dumps(result.line(), ensure_ascii=True) + "\n").encode()


class BatchRunner:
    """Run a batch's items through a compiled graph, once each, with a durable queue in ``memory``.

    Args:
        compiled: a compiled agent graph (``arun(query, budget=, query_id=, task_type=, metadata=)``,
            and ``gold=``, ``metric=`` for an item with a gold answer;
            its ``budget``, the limit of each query across its reruns).
        memory: the :class:`SQLMemory` the graph records to (it also holds the batch's queue).
        batch_id: the batch's name (:func:`default_batch_id` for an input file).
        concurrency: tasks in flight at once in this process.
        resume: also claim ``failed`` items left by earlier runs (``pending`` and ``interrupted``
            ones are always claimable), reconcile dead workers first, and append to ``out``.
        out: write one JSON line per finished item here, as soon as its task is stored; its
            missing folders are created by :meth:`run`, and a path that cannot be written (under a
            file, a folder) is a :class:`ConfigurationError` here (:func:`~agentroute.out_path.check_out`).
        grace_s: after :meth:`stop`, how long tasks in flight may run before they are cancelled.
        lease_s: a worker on another host silent for this long is taken as dead.
        on_done: called with each :class:`ItemResult` on the event loop (progress bars).
        metric: how items with a gold answer are scored (``em``, ``f1``, ``contains``; see
            :mod:`agentroute.eval.answers`); ``None`` leaves every task unscored.
    """

    def __init__(
        self,
        compiled: Any,
        memory: SQLMemory,
        *,
        batch_id: str,
        concurrency: int = 4,
        resume: bool = False,
        out: str | Path | None = None,
        grace_s: float = 30.0,
        lease_s: float = 60.0,
        on_done: Callable[[ItemResult], None] | None = None,
        metric: str | None = "em",
    ) -> None:
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be at least 1 (got {concurrency})")
        if grace_s < 0:
            raise ConfigurationError(f"grace_s must be non-negative (got {grace_s})")
        self.compiled, self.memory = compiled, memory
        self.concurrency, self.resume, self.grace_s = concurrency, resume, grace_s
        self.out = Path(out) if out is not None else None
        if self.out is not None:  # refused before anything is queued; its folders are made at the first write
            check_out(self.out, create=False, name="out")
        self.on_done = on_done
        self.metric = metric
        self._score_fn = None
        if metric is not None:
            from agentroute.eval.answers import get_metric

            self._score_fn = get_metric(metric)
        self.queue = BatchQueue(memory, batch_id, lease_s=lease_s)
        self.stopped: str | None = None
        self._claimed: list[Claimed] = []
        self._claim_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._fd: int | None = None
        self._grace: asyncio.TimerHandle | None = None
        self._reconciled_at_end = False
        self._fenced = False  # stopped as possibly taken for dead (:meth:`_fence`)
        self._refused = memory.refused_writes  # writes the database refused before this run

    @property
    def batch_id(self) -> str:
        return self.queue.batch_id

    # -- control ----------------------------------------------------------------------------------
    def stop(self, reason: str = "stop") -> None:
        """Stop gracefully: claim nothing more; in-flight tasks get ``grace_s`` to finish, then are
        cancelled (ending ``interrupted``). A second call cancels them at once."""
        if self.stopped is not None:
            self._cancel_all()
            return
        self.stopped = reason
        log.warning("batch %s: %s: finishing %d task(s) in flight", self.batch_id, reason, len(self._tasks))
        with contextlib.suppress(RuntimeError):
            self._grace = asyncio.get_running_loop().call_later(self.grace_s, self._cancel_all)

    def _cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    # -- the run ----------------------------------------------------------------------------------
    async def run(self, items: Iterable[dict[str, Any]] = ()) -> BatchReport:
        """Add ``items`` (each with ``query_id``) to the batch, then work until nothing is claimable."""
        queue = self.queue
        rows = [(str(i["query_id"]), {k: v for k, v in i.items() if k != "query_id"}) for i in items]
        if self.resume and rows:
            await asyncio.to_thread(self._check_edited_input, rows)
        # dead workers' items first: interrupted, they take an edited line's content in add()
        reconciled = await asyncio.to_thread(queue.reconcile) if self.resume else Reconciled()
        added = await asyncio.to_thread(queue.add, rows)
        joined = time.monotonic()  # before its first heartbeat_at
        await asyncio.to_thread(queue.join)
        results: list[ItemResult] = []
        heartbeat = asyncio.create_task(self._heartbeat(joined))
        try:
            if self.out is not None:
                await asyncio.to_thread(self._open_out)
            workers = [asyncio.create_task(self._worker(results)) for _ in range(self.concurrency)]
            try:
                await asyncio.gather(*workers)
            except BaseException:  # cancelled, or a worker failed (the database): stop the others first
                for worker in workers:
                    worker.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                raise
        finally:
            heartbeat.cancel()
            if self._grace is not None:
                self._grace.cancel()
            unstarted, self._claimed = [c.query_id for c in self._claimed], []
            if self._fenced:  # its tasks all ended: their steps (the cancelled ones too) are queued or stored
                await asyncio.to_thread(self._taken_for_dead)
            try:
                await asyncio.to_thread(self._close, unstarted)
            finally:
                if self.memory.refused_writes > self._refused:
                    await asyncio.to_thread(self._settle_refused)
        if self.stopped == REFUSED and (refusal := self.memory.write_refusal) is not None:
            raise queue._failed(refusal)  # noqa: SLF001 - the one wording of this error
        results = await asyncio.to_thread(self._stored_outcomes, results)
        counts = await asyncio.to_thread(queue.counts)
        return BatchReport(self.batch_id, queue.worker_id, results, counts, added, reconciled, self.stopped)

    def _stored_outcomes(self, results: list[ItemResult]) -> list[ItemResult]:
        """``results`` as this worker's items were stored (:func:`_as_stored`): one whose task lost a
        step is ``failed``, one whose task's end was lost ``interrupted`` — as the batch counts them."""
        if not results:
            return results
        mine = self.queue.worker_id
        stored = {
            row["query_id"]: row
            for row in self.queue.items(("failed", "interrupted"))
            if row["worker"] == mine
        }
        return [_as_stored(r, stored[r.query_id]) if r.query_id in stored else r for r in results]

    def _check_edited_input(self, rows: list[tuple[str, dict[str, Any]]]) -> None:
        """A resume whose input's default batch is new while its queries are finished in another batch of
        the graph (a line added, removed or edited since): refused, naming that batch, rather than
        running and paying for them all again."""
        graph = getattr(self.compiled, "name", None)  # a stand-in for a compiled graph may have none
        if not isinstance(graph, str) or self.batch_id != default_batch_id(
            graph, ({"query_id": q} for q, _ in rows)
        ):
            return
        if self.queue.counts():
            return
        if (earlier := done_elsewhere(self.memory, graph, self.batch_id, rows)) is None:
            return
        name, done = earlier
        given = {
            query_id for query_id, _ in rows
        }  # what that batch's resume also runs: lines since removed or edited
        gone = [
            i["query_id"] for i in BatchQueue(self.memory, name).items(EDITABLE) if i["query_id"] not in given
        ]
        also = ""
        if gone:
            which = "query" if len(gone) == 1 else "queries"
            also = f"; its {len(gone)} unfinished {which} not in this input ({gone[0]}{', …' if len(gone) > 1 else ''}) run too"
        raise ConfigurationError(
            f"this input's batch {self.batch_id} is new, but {done} of its {len(rows)} queries are done in "
            f"batch {name} (the input changed since?): continue that batch with `--resume --batch {name}` (the "
            f"input's new queries are added to it{also}), or run without --resume to do them all again"
        )

    def _close(self, unstarted: list[str]) -> None:
        try:
            self.queue.release(unstarted)
            self.queue.leave()  # flushes the memory first: every --out line is written by then
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _taken_for_dead(self) -> None:
        """Stopped as possibly taken for dead (retired, or no heartbeat stored for ``lease_s``): each
        call a reconcile elsewhere settled at its worst case is charged once, at what this worker's
        own step of it says (:meth:`SQLMemory.taken_for_dead`; a cancelled call's step: its worst case)."""
        try:
            self.memory.taken_for_dead(self.queue.own_tasks())
        except Exception as exc:  # noqa: BLE001 - the run ends anyway; the reconcile's worst case stays
            log.error("batch %s: replacing the settled calls of its tasks failed: %s", self.batch_id, exc)

    def _settle_refused(self) -> None:
        """The writes the database refused were logged as they failed, and their queries stay to do
        in the batch: collected here, so the run ends with one error (:data:`REFUSED`), not theirs."""
        try:
            self.memory.flush()
        except MemoryWriteError as exc:
            log.debug("batch %s: %s", self.batch_id, exc)

    async def _heartbeat(self, since: float) -> None:
        """Beat every ``lease_s``/3. ``since``: :func:`time.monotonic` when the last heartbeat stored
        began (its ``heartbeat_at`` is no older). From ``since + lease_s`` another host may take this
        worker for dead and hand its queries over, so a worker retired by another's reconcile, or
        with no heartbeat stored by then — one that failed, or one still waiting (its retries, a
        lock, a lost network: not waited for) — stops at once, its tasks in flight ``interrupted``."""
        lease_s = self.queue.lease_s
        period = max(lease_s / 3, 0.1)
        while True:
            deadline = since + lease_s
            await asyncio.sleep(min(period, max(deadline - time.monotonic(), 0.0)))
            started = time.monotonic()
            try:  # a beat late itself (a busy event loop) still gets a period: stored, it says nobody took over
                alive = await asyncio.wait_for(
                    asyncio.to_thread(self.queue.heartbeat), max(deadline - started, period)
                )
            except Exception as exc:  # a database error, or still waiting: not fatal before the deadline
                if time.monotonic() >= deadline:
                    return self._fence(f"no heartbeat stored for {lease_s:g} s (--lease-s)")
                log.warning("batch %s: heartbeat failed: %s", self.batch_id, exc)
                continue
            if not alive:
                return self._fence(RETIRED)
            since = started

    def _fence(self, why: str) -> None:
        """Stop now: another worker may run this worker's queries; paying for them here too is waste."""
        log.error(
            "batch %s: %s: its queries may run elsewhere; stopping, tasks in flight interrupted",
            self.batch_id,
            why,
        )
        if self.stopped is None:
            self.stopped = why
        self._fenced = True
        self._cancel_all()

    async def _writable(self) -> None:
        """Wait while the memory's writer retries (a full disk, a server restarting): nothing more is
        paid for that could not be recorded. Writes it then gave up on stop the run (:data:`REFUSED`)."""
        memory = self.memory
        while memory.refusing_writes and memory.refused_writes == self._refused and self.stopped is None:
            await asyncio.sleep(0.05)
        if memory.refused_writes > self._refused and self.stopped is None:
            self.stopped = REFUSED
            log.error("batch %s: the memory refuses writes: claiming nothing more", self.batch_id)

    async def _next(self) -> Claimed | None:
        async with self._claim_lock:
            await self._writable()
            if self.stopped is not None:
                return None
            if not self._claimed:
                claimed = await asyncio.to_thread(
                    self.queue.claim, self.concurrency, retry_failed=self.resume
                )
                if self.queue.retired:
                    self._fence(RETIRED)
                    return None
                if not claimed and self.resume and not self._reconciled_at_end:
                    # out of work: a worker that died meanwhile may hold some; take them over once
                    self._reconciled_at_end = True
                    if (await asyncio.to_thread(self.queue.reconcile)).workers:
                        claimed = await asyncio.to_thread(
                            self.queue.claim, self.concurrency, retry_failed=True
                        )
                self._claimed.extend(reversed(claimed))
            return self._claimed.pop() if self._claimed else None

    async def _worker(self, results: list[ItemResult]) -> None:
        while (claimed := await self._next()) is not None:
            task = asyncio.create_task(self._run_one(claimed))
            self._tasks.add(task)
            try:
                result = await asyncio.shield(task)
            except asyncio.CancelledError:  # the run itself was cancelled: mark the item, then stop
                task.cancel()
                results.append(await task)
                raise
            finally:
                self._tasks.discard(task)
            results.append(result)
            if self.on_done is not None:
                self.on_done(result)

    async def _run_one(self, claimed: Claimed) -> ItemResult:
        item, qid = claimed.item, claimed.query_id
        query = item.get("query", "")
        tag: dict[str, Any] = {"id": self.batch_id, "worker": self.queue.worker_id}
        earlier: dict[str, float] = {}
        with watch_tasks() as watch:
            try:
                metadata = item.get("metadata")
                if metadata is None:
                    metadata = {}
                if not isinstance(metadata, dict):
                    raise ConfigurationError(
                        f"metadata must be a JSON object (got {type(metadata).__name__})"
                    )
                budget = None
                if claimed.attempt > 1 and (
                    earlier := await asyncio.to_thread(self.queue.interrupted_tasks, qid)
                ):
                    budget = await asyncio.to_thread(self._budget_left, list(earlier))
                    tag = {**tag, "continues": list(earlier)}
                gold = item.get("gold") if self._score_fn is not None else None
                scored = {"gold": gold, "metric": self.metric} if gold else {}  # scored as the graph ends it
                run = await self.compiled.arun(
                    query, budget=budget, query_id=qid, task_type=item.get("task_type"),
                    metadata={**metadata, META_KEY: tag}, **scored,
                )  # fmt: skip
                if earlier:  # again: a worker retired while alive may have stored its own steps of them since
                    earlier = await asyncio.to_thread(self.queue.task_costs, list(earlier))
                steps = list(run.steps)
                error = (
                    next((s.error for s in reversed(steps) if s.error), None)
                    if run.status == "failed"
                    else None
                )
                result = ItemResult(
                    qid,
                    query,
                    run.status,
                    run.task.id,
                    run.answer,
                    run.cost_usd,
                    error,
                    steps,
                    continues=earlier,
                )
                result.score = run.task.score if scored and run.status in FINISHED else None
            except asyncio.CancelledError:
                result = self._mark(
                    claimed, watch, "interrupted", f"interrupted ({self.stopped or 'cancelled'})", earlier
                )
            except Exception as exc:  # whatever one task raises ends that task, never the batch
                log.debug("batch %s: %s failed", self.batch_id, qid, exc_info=True)
                result = self._mark(claimed, watch, "failed", f"{type(exc).__name__}: {exc}", earlier)
        on_commit = None
        if self._fd is not None and result.status != "interrupted":
            on_commit = lambda row: self._write(_as_stored(result, row))  # noqa: E731 - the line of what was stored
        self.queue.finish(
            qid, status=result.status, task_id=result.task_id, cost_usd=result.cost_usd, error=result.error,
            on_commit=on_commit,
        )  # fmt: skip
        return result

    def _budget_left(self, earlier: list[str]) -> Budget | None:
        """The budget of an item rerun after its ``earlier`` tasks were interrupted: the graph's, less
        what they spent (:func:`~agentroute.memory.settle.spent`: usd, tokens, calls — one per
        provider attempt — and large calls; a call in flight when they stopped at its worst case).

        A rerun starts the graph over as a new task rather than resuming the interrupted one: a
        batch keeps no checkpoint to resume from, and a new task keeps each run's steps apart. The
        per-query limit holds all the same: whatever the query's tasks spent counts once.
        ``seconds`` is given afresh: it bounds how long one run may take, and the rerun runs it all.
        Nothing left: the limit is 0 and the task ends ``budget_exhausted`` without a call."""
        given: Budget | None = getattr(self.compiled, "budget", None)
        if given is None:
            return None
        steps: list[Step] = []
        attempts: list[Attempt] = []
        for task_id in earlier:
            trajectory = self.memory.get_task(task_id)
            steps += trajectory.steps if trajectory is not None else []
            attempts += self.memory.attempts(task_id)
        used = spent(steps, attempts)
        left: dict[str, float] = {}
        for resource, limit in given.limits().items():
            rest = limit if resource == "seconds" else max(0.0, limit - used.get(resource))
            left[resource] = (
                math.floor(rest + 1e-9) if resource in ("tokens", "calls", "large_calls") else rest
            )
        return Budget(**left)

    def _mark(
        self, claimed: Claimed, watch: Any, status: str, error: str, earlier: dict[str, float]
    ) -> ItemResult:
        """End the item's task (or a task made for it) ``status`` with ``error`` and its steps' cost;
        ``earlier``: the interrupted tasks it continues (:attr:`ItemResult.continues`)."""
        item = claimed.item
        task: Task | None = watch.tasks[0] if watch.tasks else None
        if task is None:  # it failed before its task started: record one, so the failure is visible
            task = Task(
                query=str(item.get("query", "")),
                graph=getattr(self.compiled, "name", ""),
                task_type=item.get("task_type"),
                metadata={
                    "query_id": claimed.query_id,
                    META_KEY: {
                        "id": self.batch_id,
                        "worker": self.queue.worker_id,
                        **({"continues": list(earlier)} if earlier else {}),
                    },
                },  # fmt: skip
            )
            self.memory.start_task(task)
        steps = [s for s in watch.steps if s.task_id == task.id]
        task.status = status  # type: ignore[assignment]
        task.cost_usd = sum(s.cost_usd for s in steps)
        task.metadata["error"] = error
        self.memory.finish_task(task)
        return ItemResult(
            claimed.query_id,
            task.query,
            status,
            task.id,
            task.answer,
            task.cost_usd,
            error,
            steps,
            continues=earlier,
        )

    # -- --out ------------------------------------------------------------------------------------
    def _open_out(self) -> None:
        assert self.out is not None
        check_out(self.out, name="out")  # its missing folders, as `--out` (mkdir -p)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (0 if self.resume else os.O_TRUNC)
        self._fd = os.open(self.out, flags, 0o644)
        if self.resume:
            self._backfill()

    def _write(self, result: ItemResult) -> None:
        """One line in one ``write`` on an ``O_APPEND`` file: whole lines, even from several processes."""
        if self._fd is not None:
            os.write(self._fd, _line_bytes(result))

    def _backfill(self) -> None:
        """Lines for items finished in earlier runs whose line never reached ``out`` (a crash between
        the commit and the write); items finished by processes still running are theirs to write."""
        assert self.out is not None
        have: set[str] = set()
        with self.out.open("rb") as fh:
            for raw in fh:
                with contextlib.suppress(ValueError):
                    task_id = json.loads(raw).get("task_id")
                    if isinstance(task_id, str):
                        have.add(task_id)
        for row in self.queue.items((*FINISHED, "failed"), gone_workers=True):
            if row["task_id"] is None or row["task_id"] in have:
                continue
            trajectory = self.memory.get_task(row["task_id"])
            if trajectory is None:
                continue
            task = trajectory.task
            self._write(ItemResult(
                row["query_id"], task.query, row["status"], task.id, task.answer, task.cost_usd, row["error"],
                trajectory.steps, task.score, self.queue.task_costs(continued(task.metadata)),
            ))  # fmt: skip

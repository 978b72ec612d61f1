"""Conversions between the SDK's pydantic models and the memory's table rows.

Text that a database cannot store as given is stored escaped, never lost: PostgreSQL refuses NUL
in ``text`` and ``jsonb``, and neither backend accepts a lone UTF-16 surrogate (``"\\ud800"``, which
Python strings may hold, e.g. from ``json.loads('"\\ud800"')``). :func:`storable` writes NUL as the
four characters ``\\x00`` and a surrogate as ``\\udXXX``; a task whose query was escaped gets
``"agentroute_escaped": true`` in its metadata. Text that needs no escaping is stored unchanged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, get_args

from pydantic_core import to_json, to_jsonable_python

from agentroute.budget import Attempt, Budget, Cost
from agentroute.errors import ConfigurationError
from agentroute.memory.processes import PROCESS_KEY, this_process
from agentroute.types import Agent, AuditEvent, Decision, Step, StepStatus, Task, TaskStatus, new_id

__all__ = [
    "START",
    "FINISH",
    "STEP",
    "AUDIT_EVENT",
    "FEEDBACK_SCORE",
    "FEEDBACK_KEY",
    "BATCH_ITEM",
    "ATTEMPT",
    "write_task_id",
    "storable",
    "storable_data",
    "jsonable",
    "task_row",
    "step_row",
    "audit_row",
    "task_from_row",
    "stored_budget",
    "step_from_row",
    "audit_from_row",
    "attempt_row",
    "attempt_from_row",
]


START, FINISH, STEP, AUDIT_EVENT, FEEDBACK_SCORE = "start_task", "finish_task", "step", "audit", "feedback"
BATCH_ITEM = "batch_item"
ATTEMPT = "attempt"
"""The kinds of the memory's writes, each a ``(kind, payload)`` (:mod:`agentroute.memory.writer`)."""


FEEDBACK_KEY = "agentroute_feedback"
"""The key of a task's metadata under which the memory's read gives the source of the task's latest
feedback (``"user"``, ``"metric:em"`` …) when it was given one: the task's score is then that
feedback's, which :func:`agentroute.outcomes.learned_scores` gives to the answer it judges. Read
from the ``feedback`` table (:data:`FEEDBACK_SOURCE` in a task read), never stored in ``meta``."""

FEEDBACK_SOURCE = "feedback_source"
"""The label of the column a task read adds: its latest feedback's source (``NULL``: none)."""


def write_task_id(kind: str, payload: Any) -> str | None:
    """The id of the task a ``(kind, payload)`` write belongs to (the unit the writer keeps together
    when it splits a batch; the tasks a :class:`~agentroute.memory.errors.MemoryWriteError` names);
    ``None`` for a malformed payload, which then stands alone."""
    if kind == START or kind == FINISH:
        task_id = getattr(payload, "id", None)
    elif kind == FEEDBACK_SCORE:
        task_id = payload.get("task_id") if isinstance(payload, dict) else None
    elif kind == BATCH_ITEM:  # a BatchItemWrite: its row
        row = getattr(payload, "row", None)
        task_id = row.get("task_id") if isinstance(row, dict) else None
    else:
        task_id = getattr(payload, "task_id", None)
    return task_id if isinstance(task_id, str) else None


def _fallback(value: Any) -> Any:
    """JSON for what pydantic cannot serialise: arrays and numpy scalars via ``tolist``, else ``str``."""
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else str(value)


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return "\\x00" if char == "\x00" else f"\\u{ord(char):04x}"


def storable(text: str | None) -> str | None:
    r"""``text`` with NUL and lone surrogates escaped (``\x00``, ``\udXXX``); unchanged otherwise.

    >>> storable("a\x00b"), storable("ok")
    ('a\\x00b', 'ok')
    """
    if text is None or _UNSTORABLE.search(text) is None:
        return text
    return _UNSTORABLE.sub(_escape, text)


def storable_data(value: Any) -> Any:
    """Plain JSON data with every string (keys too) made :func:`storable`, and NaN and infinities
    (which JSON lacks and PostgreSQL's ``jsonb`` refuses) as the strings ``"nan"``, ``"inf"``, ``"-inf"``."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {storable(k) if isinstance(k, str) else k: storable_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_data(v) for v in value]
    return value


def _storable_jsonable(value: Any) -> Any:
    """:func:`jsonable` then :func:`storable_data`; strings pydantic-core cannot encode are escaped first."""
    try:
        return storable_data(jsonable(value))
    except ValueError:  # a lone surrogate (a key, or inside a model): escape the plain containers first
        return storable_data(jsonable(storable_data(value)))


def jsonable(value: Any) -> Any:
    """Plain JSON data (dicts, lists, numbers, strings) for a model, dict or value."""
    return to_jsonable_python(value, fallback=_fallback)


def json_text(value: Any) -> str:
    """JSON text for a model, dict or value, serialised in one pass by pydantic-core.

    Strings that no database stores (NUL, lone surrogates) are escaped, and NaN and infinities
    written as strings, by :func:`storable_data`.
    """
    try:
        text = to_json(value, fallback=_fallback).decode()
    except ValueError:  # a lone surrogate: pydantic-core cannot encode it as UTF-8
        return to_json(_storable_jsonable(value)).decode()
    # jsonb refuses them; rare: check the text once
    if "\\u0000" in text or "NaN" in text or "Infinity" in text:
        return to_json(_storable_jsonable(value)).decode()
    return text


_TASK_STATUSES = frozenset(get_args(TaskStatus))
_STEP_STATUSES = frozenset(get_args(StepStatus))


def _checked_status(kind: str, status: Any, allowed: frozenset[str]) -> str:
    """``status`` if it is one of ``allowed``; else a ``ValueError`` (the write fails, reported by
    ``flush()``): pydantic does not check assignments, and a stored bad status would make every
    read of that row fail."""
    if status not in allowed:
        raise ValueError(f"{kind} status {status!r} is not one of {sorted(allowed)}")
    return status


def task_row(task: Task, *, finished: bool = False, lease: bool = False) -> dict[str, Any]:
    """The ``tasks`` row of ``task``; ``lease``: its process holds a lease in this database
    (:mod:`agentroute.memory.processes`)."""
    query = storable(task.query)
    meta = _storable_jsonable({k: v for k, v in task.metadata.items() if k != FEEDBACK_KEY})
    if query != task.query:
        meta["agentroute_escaped"] = True
    # who runs it: a task its dead process left running can be closed
    meta[PROCESS_KEY] = {**this_process(), "lease": True} if lease else this_process()
    return {
        "id": task.id,
        "query": query,
        "graph": task.graph,
        "task_type": task.task_type,
        "budget": task.budget.model_dump(exclude_none=True) if task.budget is not None else None,
        "status": _checked_status("task", task.status, _TASK_STATUSES),
        "answer": storable(task.answer),
        "cost_usd": task.cost_usd,
        "score": task.score,
        "meta": meta,
        "created_at": task.created_at,
        "finished_at": datetime.now(UTC) if finished else None,
    }


def step_row(step: Step, decision_json: Callable[[Decision], str] | None = None) -> dict[str, Any]:
    """The ``steps`` row of a step, with the decision already as JSON text (the writer's fast path).

    ``decision_json`` encodes the decision (default :func:`json_text`; the writer passes one that
    encodes each shared decision once per batch).
    """
    agent, decision = step.agent, step.decision
    return {
        "id": step.id,
        "task_id": step.task_id,
        "step_index": step.index,
        "stage": step.stage,
        "role": agent.role,
        "model": agent.model,
        "strategy": agent.strategy,
        "router": decision.router if decision is not None else None,
        "decision": (decision_json or json_text)(decision) if decision is not None else None,
        "input": storable(step.input),
        "output": storable(step.output),
        "tokens_in": step.tokens_in,
        "tokens_out": step.tokens_out,
        "cost_usd": step.cost_usd,
        "latency_ms": step.latency_ms,
        "status": _checked_status("step", step.status, _STEP_STATUSES),
        "error": storable(step.error),
        "score": step.score,
        "confidence": step.confidence,
        "created_at": step.created_at,
    }


def audit_row(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "task_id": event.task_id,
        "stage": event.stage,
        "kind": event.kind,
        "subject": storable(event.subject),
        "detail": storable(event.detail),
        "created_at": event.created_at,
    }


def task_from_row(row: Mapping[Any, Any]) -> Task:
    """A :class:`Task` from a ``tasks`` row; a row with a :data:`FEEDBACK_SOURCE` gives its
    metadata :data:`FEEDBACK_KEY`."""
    metadata = {k: v for k, v in (row["meta"] or {}).items() if k != PROCESS_KEY}
    if row.get(FEEDBACK_SOURCE) is not None:
        metadata[FEEDBACK_KEY] = row[FEEDBACK_SOURCE]
    return Task(
        id=row["id"],
        query=row["query"],
        graph=row["graph"],
        task_type=row["task_type"],
        budget=stored_budget(row["budget"]),
        status=row["status"],
        answer=row["answer"],
        cost_usd=row["cost_usd"],
        score=row["score"],
        metadata=metadata,
        created_at=row["created_at"],
    )


def stored_budget(limits: Mapping[str, Any] | None) -> Budget | None:
    """The :class:`Budget` a ``tasks`` row holds. A limit this agentroute refuses reads as no limit,
    which it was in effect: the releases of 2026-11-24 stored any positive number (``usd`` 1e20,
    infinite, NaN), and one such task made every read of the memory fail."""
    if not limits:
        return None
    try:
        return Budget(**limits)
    except ConfigurationError:
        kept = {}
        for name, value in limits.items():
            try:
                kept[name] = getattr(Budget(**{name: value}), name)
            except ConfigurationError:
                continue
        return Budget(**kept) if kept else None


def step_from_row(row: Mapping[Any, Any], agents: dict[tuple[str, str, str], Agent] | None = None) -> Step:
    """A :class:`Step` from a ``steps`` row; ``agents`` caches the (frozen) agents across rows.

    The decision may come as JSON text (fastest: parsed and validated in one pass) or as a dict.
    """
    key = (row["role"], row["model"], row["strategy"])
    agent = agents.get(key) if agents is not None else None
    if agent is None:
        agent = Agent(role=key[0], model=key[1], strategy=key[2])
        if agents is not None:
            agents[key] = agent
    decision = row["decision"]
    return Step(
        id=row["id"],
        task_id=row["task_id"],
        index=row["step_index"],
        stage=row["stage"],
        agent=agent,
        decision=None if decision is None or decision == "null" else _decision(decision),
        input=row["input"],
        output=row["output"],
        tokens_in=row["tokens_in"],
        tokens_out=row["tokens_out"],
        cost_usd=row["cost_usd"],
        latency_ms=row["latency_ms"],
        status=row["status"],
        error=row["error"],
        score=row["score"],
        confidence=row["confidence"],
        created_at=row["created_at"],
    )


def _decision(value: str | dict[str, Any]) -> Decision:
    return Decision.model_validate_json(value) if isinstance(value, str) else Decision.model_validate(value)


def audit_from_row(row: Mapping[Any, Any]) -> AuditEvent:
    return AuditEvent(
        id=row["id"],
        task_id=row["task_id"],
        stage=row["stage"],
        kind=row["kind"],
        subject=row["subject"],
        detail=row["detail"],
        created_at=row["created_at"],
    )


def attempt_row(attempt: Attempt) -> dict[str, Any]:
    worst = attempt.worst_case
    return {
        "id": new_id(),
        "task_id": attempt.task_id,
        "step_index": attempt.step_index,
        "attempt": attempt.attempt,
        "agent": storable(attempt.agent),
        "stage": storable(attempt.stage),
        "usd": worst.usd,
        "tokens": worst.tokens,
        "calls": worst.calls,
        "large_calls": worst.large_calls,
        "created_at": datetime.now(UTC),
    }


def attempt_from_row(row: Mapping[Any, Any]) -> Attempt:
    worst = Cost(usd=row["usd"], tokens=row["tokens"], calls=row["calls"], large_calls=row["large_calls"])
    return Attempt(row["task_id"], row["step_index"], row["attempt"], row["agent"], row["stage"], worst)

"""Settling provider attempts that were in flight when their process stopped.

Each provider attempt's worst case is stored before it is sent (the ``attempts`` table,
:class:`~agentroute.budget.Attempt`); a stored step of the same task and step index settles it.
An attempt that no step settles was in flight when its process stopped (``kill -9``, a lost
machine): the provider may have billed its worst case, so it is charged that. This module is the
one home of that rule, for every path that finds such attempts:

- a LangGraph thread resumed from its checkpoint (:meth:`~agentroute.dispatch.run.TaskRun.from_checkpoint`),
- a batch's reconcile of its dead workers (:meth:`~agentroute.memory.batches.BatchQueue.reconcile`),
- ``agentroute memory reconcile`` (:func:`~agentroute.memory.processes.reconcile_running`),
- the rerun of an interrupted batch item, whose budget is what its earlier tasks left (:func:`spent`).

Settling stores one failed step per unsettled step index, costing the worst cases of its attempts,
and one ``unsettled_attempt`` audit event per attempt. A settling step's id is
:func:`settling_step_id` of its task and index: when the process that made the calls was not dead
after all (a worker partitioned from the database, retired by another's reconcile) and later
stores its own step of that index, :func:`replace_settled` deletes the settling step and says so in
its ``unsettled_attempt`` event, so the call is charged once, at what it cost. That process runs it
in the commit of each of its steps that finds a settling step of its index (:func:`settled_tasks`, one
primary-key lookup per batch of steps, run by batch workers alone: another worker's reconcile may
retire them while they live; the writer replaces all its settled calls from then on),
in the commit of a task write that finds the task closed by a reconcile (``interrupted``), and once
it knows it may have been taken for dead (``SQLMemory.taken_for_dead``: a batch worker stopped as
retired or unheard, at its run's end; on PostgreSQL, a lease taken back after its session was lost).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from agentroute.budget import Attempt, Cost
from agentroute.memory import codec  # the module: codec → processes → here, imported while codec loads
from agentroute.memory.tables import ATTEMPTS, AUDIT, STEPS, TASKS
from agentroute.types import Agent, AuditEvent, Step

__all__ = [
    "replace_settled",
    "settle_unsettled",
    "settled_tasks",
    "settling_audits",
    "settling_step_id",
    "settling_steps",
    "spent",
    "unsettled",
]

#: Task ids per query (SQLite's bound-parameter limit is far above; a reconcile may close thousands).
_CHUNK = 500


def unsettled(attempts: Iterable[Attempt], steps: Iterable[Step]) -> list[Attempt]:
    """Those of ``attempts`` that no step of ``steps`` settles (same task and step index)."""
    settled = {(s.task_id, s.index) for s in steps}
    return [a for a in attempts if (a.task_id, a.step_index) not in settled]


def spent(steps: Iterable[Step], attempts: Iterable[Attempt]) -> Cost:
    """What a task's stored ``steps`` and write-ahead ``attempts`` cost, as its ledger would book them.

    A step books its cost and tokens, one call per attempt of its index (one for a step stored
    without write-ahead records: a blocked step, an older memory) and the large calls of those
    attempts; an attempt no step settles books its worst case. ``seconds`` is left at 0.
    """
    tried = _by_step(attempts)
    usd = tokens = calls = large = 0.0
    for s in steps:
        made = tried.pop((s.task_id, s.index), [])
        usd += s.cost_usd
        tokens += s.tokens_in + s.tokens_out
        calls += max(1, len(made))
        large += sum(a.worst_case.large_calls for a in made)
    for group in tried.values():  # in flight when their process stopped
        for a in group:
            usd += a.worst_case.usd
            tokens += a.worst_case.tokens
            calls += a.worst_case.calls
            large += a.worst_case.large_calls
    return Cost(usd=usd, tokens=tokens, calls=calls, seconds=0.0, large_calls=large)


def _by_step(attempts: Iterable[Attempt]) -> dict[tuple[str, int], list[Attempt]]:
    groups: dict[tuple[str, int], list[Attempt]] = {}
    for a in attempts:
        groups.setdefault((a.task_id, a.step_index), []).append(a)
    return groups


def settling_step_id(task_id: str, index: int) -> str:
    """The id of the step settling ``task_id``'s step ``index``: one per step, found by the step that replaces it."""
    return f"settled-{task_id}-{index}"


def settling_steps(attempts: Iterable[Attempt]) -> list[Step]:
    """One failed step per step index of the unsettled ``attempts``, costing their worst cases: stored, it settles them."""
    steps = []
    for (task_id, index), group in _by_step(attempts).items():
        first = group[0]
        role, rest = first.agent.split(":", 1)  # a role holds no colon (Agent refuses one)
        model, strategy = rest.rsplit(":", 1)  # a model id may hold colons; a strategy does not
        steps.append(Step(
            id=settling_step_id(task_id, index), task_id=task_id, index=index, stage=first.stage, agent=Agent(role=role, model=model, strategy=strategy),
            tokens_out=round(sum(a.worst_case.tokens for a in group)), cost_usd=sum(a.worst_case.usd for a in group),
            status="failed", error=f"{len(group)} attempt(s) in flight when the process stopped: charged the worst case",
        ))  # fmt: skip
    return steps


def settling_audits(attempts: Iterable[Attempt], *, when: str = "on resume") -> list[AuditEvent]:
    """One ``unsettled_attempt`` event per attempt; the attempts of one step (retries, the samples
    of ``sc@k``) are told apart by their place among that step's unsettled attempts, oldest first."""
    events = []
    for (task_id, index), group in _by_step(attempts).items():
        for k, a in enumerate(group, start=1):
            events.append(AuditEvent(
                task_id=task_id, stage=a.stage, kind="unsettled_attempt", subject=a.agent,
                detail=f"unsettled attempt {a.attempt + 1} of step {index}, call {k} of {len(group)} in flight at that "
                f"step when its process stopped: charged its worst case {when} "
                f"(${a.worst_case.usd:.6g}, {a.worst_case.tokens:g} tokens)",
            ))  # fmt: skip
    return events


def settle_unsettled(conn: sa.Connection, task_ids: Sequence[str], *, when: str) -> list[Attempt]:
    """Store the settling steps and audit events of the unsettled attempts of those of ``task_ids``
    still ``running``, in ``conn``'s transaction (run it before the tasks are closed and their cost
    summed from their steps); returns the attempts settled (each charged its ``worst_case``). ``when``: the words the audit uses for who
    settled them (``"by reconcile"``).

    The tasks' rows are locked first (PostgreSQL's ``FOR UPDATE``; SQLite's ``BEGIN IMMEDIATE``
    already serialises writers): a concurrent reconcile of the same tasks waits, then finds them
    closed and settles nothing, so no call is stored twice."""
    found: list[Attempt] = []
    ordered = sorted(set(task_ids))  # one lock order for every reconcile: no deadlock between two
    for start in range(0, len(ordered), _CHUNK):
        running = sa.select(TASKS.c.id).where(
            TASKS.c.id.in_(ordered[start : start + _CHUNK]), TASKS.c.status == "running"
        )
        chunk = list(conn.execute(running.order_by(TASKS.c.id).with_for_update()).scalars())
        if not chunk:
            continue
        settled = sa.exists().where(
            STEPS.c.task_id == ATTEMPTS.c.task_id, STEPS.c.step_index == ATTEMPTS.c.step_index
        )
        query = (
            sa.select(ATTEMPTS).where(ATTEMPTS.c.task_id.in_(chunk), ~settled)
            .order_by(ATTEMPTS.c.task_id, ATTEMPTS.c.created_at, ATTEMPTS.c.id)
        )  # fmt: skip
        found += [codec.attempt_from_row(row) for row in conn.execute(query).mappings()]
    if not found:
        return []
    events = settling_audits(found, when=when)
    conn.execute(STEPS.insert(), [codec.step_row(s) for s in settling_steps(found)])
    conn.execute(AUDIT.insert(), [codec.audit_row(e) for e in events])
    return found


def settled_tasks(conn: sa.Connection, steps: Iterable[dict[str, Any]]) -> set[str]:
    """The tasks of step rows ``steps`` holding a settling step of the same index (a reconcile
    elsewhere settled the call they store): a primary-key lookup, on the driver (SQLAlchemy's
    ``IN`` costs 3–5× the query: every commit of a batch worker's steps runs it)."""
    ids = sorted(
        {key for row in steps if (key := settling_step_id(row["task_id"], row["step_index"])) != row["id"]}
    )
    if not ids:
        return set()
    if conn.dialect.name == "postgresql":
        return set(
            conn.exec_driver_sql(f"SELECT task_id FROM {STEPS.name} WHERE id = ANY(%s)", (ids,)).scalars()
        )
    found: set[str] = set()
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        query = f"SELECT task_id FROM {STEPS.name} WHERE id IN ({', '.join('?' * len(chunk))})"
        found.update(conn.exec_driver_sql(query, tuple(chunk)).scalars())
    return found


def replace_settled(conn: sa.Connection, task_ids: Iterable[str]) -> int:
    """Delete the settling steps of ``task_ids`` that a step of the same index, stored by the process
    taken for dead, replaces; note it in their ``unsettled_attempt`` events and give their closed
    tasks the cost of their steps (a ``running`` task's cost is its own process's to write), in
    ``conn``'s transaction. Returns how many were replaced."""
    ordered = sorted(set(task_ids))
    real = sa.alias(STEPS)
    replaced = []
    for start in range(0, len(ordered), _CHUNK):
        settling = STEPS.c.id == sa.literal("settled-") + STEPS.c.task_id + "-" + sa.cast(
            STEPS.c.step_index, sa.String
        )
        by_itself = sa.and_(
            real.c.task_id == STEPS.c.task_id,
            real.c.step_index == STEPS.c.step_index,
            real.c.id != STEPS.c.id,
        )
        query = (
            sa.select(STEPS.c.id, STEPS.c.task_id, STEPS.c.step_index, STEPS.c.cost_usd,
                      sa.select(sa.func.sum(real.c.cost_usd)).where(by_itself).scalar_subquery().label("paid"))
            .where(STEPS.c.task_id.in_(ordered[start : start + _CHUNK]), settling)
        )  # fmt: skip
        replaced += [r for r in conn.execute(query) if r.paid is not None]
    if not replaced:
        return 0
    conn.execute(sa.delete(STEPS).where(STEPS.c.id.in_([r.id for r in replaced])))
    for r in replaced:
        conn.execute(
            sa.update(AUDIT)
            .where(AUDIT.c.task_id == r.task_id, AUDIT.c.kind == "unsettled_attempt",
                   AUDIT.c.detail.like(f"% of step {r.step_index}, call %"))
            .values(detail=AUDIT.c.detail + (
                f"; replaced by the step its process stored after all (it was not dead): charged "
                f"${r.paid:.6g}, not the worst case ${r.cost_usd:.6g}"
            ))
        )  # fmt: skip
    steps_cost = sa.select(sa.func.coalesce(sa.func.sum(STEPS.c.cost_usd), 0.0)).where(
        STEPS.c.task_id == TASKS.c.id
    )
    conn.execute(
        sa.update(TASKS)
        .where(TASKS.c.id.in_({r.task_id for r in replaced}), TASKS.c.status != "running")
        .values(cost_usd=steps_cost.scalar_subquery())
    )
    return len(replaced)

"""Which process runs a task, and closing the tasks of processes that are gone.

Every task row a :class:`~agentroute.memory.sql.SQLMemory` writes names, in its stored metadata
under ``agentroute_process``, the process that wrote it: ``{"host": host_key(), "pid": …, "start":
…}`` (``start``: the process's start time in clock ticks since boot, from ``/proc``; ``None`` where
there is no ``/proc``). Reads strip the key: a task's ``metadata`` is what its caller set.

A task left ``running`` by a process that died without finishing it (``kill -9``, the OOM killer,
a crash) is *gone* when its host is this host (same machine and boot: :func:`host_key`) and its
pid no longer runs, or runs a different process (another start time: the pid was reused), or when
it ran on this machine before its last reboot (same host name, another boot id).

Another host's pids mean nothing here. On PostgreSQL each writing process holds a *lease*, an
advisory lock keyed by its ``{"host", "pid", "start"}`` (:mod:`agentroute.memory.claims`), taken
before its first task row is written; such rows say so (``"lease": true`` in the process info). The
server drops the lock when the process's session ends (``kill -9``: at once; a lost host: when its
TCP keepalives fail, about 30 s), so another host's task is *alive* while its lease is held and
*gone* once it is not — but a live process whose lease connection was dropped takes it again within
a few seconds, so :meth:`~agentroute.memory.SQLMemory.reconcile_running` closes such a task only
when its lease was released at two looks :func:`~agentroute.memory.claims.lease_grace_s` apart
(:attr:`RunningTasks.released`). :func:`reconcile_running` closes gone tasks ``interrupted`` with the cost of
their recorded steps — a provider call in flight when the process died is first stored as a failed
step at its worst case and audited (:mod:`agentroute.memory.settle`) — and ``metadata["error"]`` saying why; a live process's tasks, another host's
without a lease (SQLite, an older agentroute: nothing here can tell whether they still run) and
tasks written before processes were recorded are never touched by it: :func:`close_unrecorded`
closes those of the latter older than the age its caller gives (``memory reconcile --older-than``).
The batch runner's workers are told alive or gone by the same :func:`host_key` and :func:`pid_alive`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa

from agentroute.budget import Attempt
from agentroute.memory.claims import lease_key, leases_held
from agentroute.memory.settle import settle_unsettled
from agentroute.memory.tables import STEPS, TASKS

__all__ = [
    "PROCESS_KEY",
    "Closed",
    "close_unrecorded",
    "RunningTasks",
    "host_key",
    "pid_alive",
    "process_alive",
    "process_start",
    "reconcile_running",
    "running_tasks",
    "this_process",
]

#: Key of a stored task's metadata naming the process that wrote it.
PROCESS_KEY = "agentroute_process"

Liveness = Literal["alive", "gone", "released", "other_host", "unknown"]


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        return ""


def host_key() -> str:
    """This machine (and boot): a pid is only meaningful on the host and boot that issued it."""
    boot = _boot_id()
    return f"{socket.gethostname()}/{boot}" if boot else socket.gethostname()


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first), or ``None``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a zombie, killed but not yet reaped, is dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):  # not a pid this system can have
        return False
    fields = _stat_fields(pid)
    return fields is None or fields[:1] != ["Z"]


def process_start(pid: int) -> int | None:
    """Process ``pid``'s start time (clock ticks since boot, field 22 of ``/proc/PID/stat``), or
    ``None`` where it cannot be read: with the pid, it names one process of one boot."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields is not None else None
    except (IndexError, ValueError):
        return None


def process_alive(pid: int, start: int | None) -> bool:
    """Whether process ``pid`` of this host runs and is the one that started at ``start`` (a pid
    reused by a new process is not alive; an unknown start time trusts the pid)."""
    if not pid_alive(pid):
        return False
    now = process_start(pid) if start is not None else None
    return now is None or now == start


_THIS: dict[int, dict[str, Any]] = {}


def this_process() -> dict[str, Any]:
    """``{"host", "pid", "start"}`` of the calling process (computed once per pid: a fork is new)."""
    pid = os.getpid()
    info = _THIS.get(pid)
    if info is None:
        info = _THIS[pid] = {"host": host_key(), "pid": pid, "start": process_start(pid)}
    return info


@dataclass(slots=True)
class RunningTasks:
    """The ``running`` tasks of a memory by what is known of their process: ``alive`` (a process of
    this host that still runs, or of another host that holds its lease), ``gone`` (of this host, no
    longer runs; of another host, its lease is released), ``other_host`` (another host's, without a
    lease), ``unknown`` (written before processes were recorded). Each is a list of task ids, oldest
    first. ``released``: those of ``gone`` told by a released lease (another host's: it may come back)."""

    alive: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    other_host: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in ("alive", "gone", "other_host", "unknown")}


def _liveness(meta: Any, here: str, cache: dict[tuple[int, Any], bool], leases: set[int] | None) -> Liveness:
    """How a task's process stands (``released``: gone by its lease, another host's); ``leases``:
    the leases held now (PostgreSQL), else ``None``."""
    info = meta.get(PROCESS_KEY) if isinstance(meta, dict) else None
    if (
        not isinstance(info, dict)
        or not isinstance(info.get("pid"), int)
        or not isinstance(info.get("host"), str)
    ):
        return "unknown"
    if info["host"] != here:
        name, _, boot = info["host"].partition("/")
        here_name, _, here_boot = here.partition("/")
        # this machine before its last reboot: every process of that boot has ended
        if boot and here_boot and name == here_name:
            return "gone"
        if leases is not None and info.get("lease") is True:
            return "alive" if lease_key(info) in leases else "released"
        return "other_host"
    start = info.get("start") if isinstance(info.get("start"), int) else None
    key = (info["pid"], start)
    if key not in cache:
        cache[key] = process_alive(*key)
    return "alive" if cache[key] else "gone"


def _leased(meta: Any) -> int | None:
    info = meta.get(PROCESS_KEY) if isinstance(meta, dict) else None
    return lease_key(info) if isinstance(info, dict) and info.get("lease") is True else None


def running_tasks(conn: sa.Connection) -> RunningTasks:
    """Sort the memory's ``running`` tasks by their process (see :class:`RunningTasks`)."""
    found, here = RunningTasks(), host_key()
    cache: dict[tuple[int, int | None], bool] = {}
    query = (
        sa.select(TASKS.c.id, TASKS.c.meta)
        .where(TASKS.c.status == "running")
        .order_by(TASKS.c.created_at, TASKS.c.id)
    )
    rows = conn.execute(query).all()
    leases: set[int] | None = None
    if conn.dialect.name == "postgresql":  # read after the rows: a lease seen released was released before
        leases = leases_held(conn, [key for _, meta in rows if (key := _leased(meta)) is not None])
    for task_id, meta in rows:
        liveness = _liveness(meta, here, cache, leases)
        if liveness == "released":
            found.released.append(task_id)
        getattr(found, "gone" if liveness == "released" else liveness).append(task_id)
    return found


@dataclass(frozen=True, slots=True)
class Closed:
    """What :func:`reconcile_running` closed: the tasks' ids, and the provider calls they had in
    flight, stored at their worst case (:mod:`agentroute.memory.settle`)."""

    tasks: list[str] = field(default_factory=list)
    settled: list[Attempt] = field(default_factory=list)

    @property
    def settled_usd(self) -> float:
        """What the calls in flight were charged: their worst case."""
        return float(sum(a.worst_case.usd for a in self.settled))


def reconcile_running(conn: sa.Connection, task_ids: Iterable[str] | None = None) -> Closed:
    """Close as ``interrupted`` the ``running`` tasks whose process is gone (of ``task_ids`` when
    given; see the module docstring), with the cost of their recorded steps (calls in flight settled
    at their worst case first) and ``metadata["error"]`` saying why. Run it in a write transaction."""
    gone = running_tasks(conn).gone
    if task_ids is not None:
        wanted = set(task_ids)
        gone = [t for t in gone if t in wanted]

    def why(info: dict[str, Any]) -> str:
        ended = (
            "released its lease" if info.get("host") != host_key() and info.get("lease") is True else "ended"
        )
        return f"its process ({info.get('pid')} on {info.get('host')}) {ended} while it ran"

    return _close(conn, gone, why)


def close_unrecorded(conn: sa.Connection, older_than: timedelta, *, dry_run: bool = False) -> Closed:
    """Close as :func:`reconcile_running` does the ``running`` tasks without a recorded process (written
    by an agentroute older than process records, 2026-12-06: ``unknown``) that started more than
    ``older_than`` ago: nothing tells whether their process still runs, so the caller says how old
    a task must be to be surely dead. ``dry_run``: only their ids (nothing settled). Run it in a
    write transaction."""
    unknown = set(running_tasks(conn).unknown)
    since = datetime.now(UTC) - older_than
    started = sa.select(TASKS.c.id).where(TASKS.c.status == "running", TASKS.c.created_at < since)
    ordered = started.order_by(TASKS.c.created_at, TASKS.c.id)
    old = [t for t in conn.execute(ordered).scalars() if t in unknown] if unknown else []
    if dry_run:
        return Closed(old)
    return _close(conn, old, lambda _: f"it recorded no process and started over {_span(older_than)} before")


def _span(delta: timedelta) -> str:
    """``older_than`` as said: ``2 h``, ``90 s``, ``1.5 d``."""
    seconds = delta.total_seconds()
    units = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))
    unit, size = next((u, n) for u, n in units if seconds >= n or n == 1)
    return f"{seconds / size:g} {unit}"


def _close(conn: sa.Connection, task_ids: list[str], why: Callable[[dict[str, Any]], str]) -> Closed:
    """Close the still ``running`` of ``task_ids`` as ``interrupted``: their recorded steps' cost, calls
    in flight settled first, ``metadata["error"]`` = ``why(process info)`` and when."""
    if not task_ids:
        return Closed()
    now = datetime.now(UTC)
    steps_cost = (
        sa.select(sa.func.coalesce(sa.func.sum(STEPS.c.cost_usd), 0.0))
        .where(STEPS.c.task_id == TASKS.c.id)
        .scalar_subquery()
    )
    closed: list[str] = []
    rows = conn.execute(
        sa.select(TASKS.c.id, TASKS.c.meta).where(TASKS.c.id.in_(task_ids), TASKS.c.status == "running")
    ).all()
    settled = settle_unsettled(
        conn, [task_id for task_id, _ in rows], when="by reconcile"
    )  # calls in flight: their worst case
    for task_id, meta in rows:
        meta = meta if isinstance(meta, dict) else {}
        info = meta.get(PROCESS_KEY)
        reason = why(info if isinstance(info, dict) else {})
        meta = {**meta, "error": f"{reason}; closed by reconcile at {now.isoformat(timespec='seconds')}"}
        done = conn.execute(
            sa.update(TASKS)
            .where(TASKS.c.id == task_id, TASKS.c.status == "running")
            .values(status="interrupted", cost_usd=steps_cost, finished_at=now, meta=meta)
        ).rowcount
        if done:
            closed.append(task_id)
    return Closed(closed, settled)

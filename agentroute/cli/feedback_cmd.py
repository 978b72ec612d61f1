"""``agentroute feedback TASK_ID --score X``: score a task, so routers can learn from it.

The score is stored with ``memory.add_feedback`` (a feedback row and the task's score). Scores are
in [0, 1] (1 = right), as routers learn them; others are refused. Scoring a task again keeps both
feedback rows; the newest score becomes the task's (a note names the one it replaces, or the newer
one the task keeps: given since, or dated ahead by a host whose clock runs ahead). A task
still ``running`` keeps the score when it ends (feedback wins over the score its process gives).
TASK_ID may be an id's first characters, as `memory show` takes it. A whole id as agentroute makes
them (32 hex digits) that names no stored task yet is stored all the same, with a note: the task may
still be running, or its row not yet flushed, in another process; its score is the feedback's when
its row arrives. Scored twice, a task keeps the newest feedback given, whichever is stored last.
Exit codes: 0 stored; 1 no such task; 2 a prefix of several tasks, a bad score or memory URL.
"""

from __future__ import annotations

import re
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from agentroute.cli.errors import EXIT_BAD_INPUT, EXIT_FAILURE, print_error, report
from agentroute.errors import AgentrouteError

_MADE_ID = re.compile(r"[0-9a-f]{32}")
"""A whole id as :func:`agentroute.types.new_id` makes it: feedback on one not stored yet is kept."""


def feedback_command(
    task_id: Annotated[
        str,
        typer.Argument(
            help="The task's id, or its first characters (printed by ask, in run --out, memory show)."
        ),
    ],
    score: Annotated[float, typer.Option("--score", help="The task's outcome in [0, 1] (1 = right).")],
    comment: Annotated[str, typer.Option("--comment", help="Free text kept with the score.")] = "",
    source: Annotated[
        str, typer.Option("--source", help="Who scored it (user, metric:em, judge:…).")
    ] = "user",
    memory: Annotated[
        str | None,
        typer.Option(
            "--memory",
            help="SQLAlchemy URL of the memory (default: $AGENTROUTE_MEMORY or a local SQLite file).",
        ),
    ] = None,
) -> None:
    """Score a task (stored as feedback; its score is what routers train on)."""
    err = Console(stderr=True)
    from agentroute.errors import ConfigurationError
    from agentroute.outcomes import feedback_score

    try:
        feedback_score(score, name="--score")
    except ConfigurationError as exc:
        print_error(str(exc), err)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    from agentroute.cli.memory_cmd import _open, task_id_from
    from agentroute.memory.codec import FEEDBACK_KEY

    store = _open(memory)
    try:
        whole = _MADE_ID.fullmatch(task_id) is not None
        trajectory = store.get_task(task_id) if whole else None
        pending = whole and trajectory is None
        earlier = None
        if not pending:  # a whole id of no stored task yet: its process may not have stored its row yet
            if trajectory is None:
                task_id = task_id_from(store, task_id)
                trajectory = store.get_task(task_id)
            if trajectory is None:
                print_error(f"no task {task_id!r} in the memory {store.url}", err)
                raise typer.Exit(EXIT_FAILURE)
            earlier = trajectory.task.score
        store.add_feedback(task_id, score, source=source, comment=comment)
        store.flush()
        now = None if pending else store.get_task(task_id)
        if now is not None and (kept := now.task.score) is not None and kept != score:
            err.print(  # a newer feedback stands: given since, or dated ahead (a clock ahead where it was given)
                f"[yellow]note:[/] task {escape(task_id)} keeps score {kept:g} "
                f"({escape(str(now.task.metadata.get(FEEDBACK_KEY)))}): a feedback dated after this one is its newest "
                "(given since, or on a host whose clock runs ahead)"
            )
        elif earlier is not None:  # scored again: the newest is the task's
            err.print(
                f"[yellow]note:[/] task {escape(task_id)} had score {earlier:g}; the new score replaces it"
            )
        if pending:
            err.print(
                f"[yellow]note:[/] stored; no task with this id yet: {escape(task_id)} (still running, or not yet "
                "flushed, in another process?): it is the task's score once its row arrives; check the id "
                "(`agentroute memory show`) if you meant a stored task"
            )
    except AgentrouteError as exc:
        raise typer.Exit(report(exc, err)) from None
    finally:
        store.close()
    Console().print(escape(f"task {task_id}: score {score:g} ({source}) stored in {store.url}"))

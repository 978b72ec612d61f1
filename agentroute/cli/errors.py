"""Exit codes and error lines of the ``agentroute`` command, one rule for every subcommand.

- ``0``: the command did its work (a task that ended ``budget_exhausted`` included).
- ``1``: it ran and something failed (a model call, a task, a missing memory row).
- ``2``: it never started because of what it was given: a bad option value (``--budget-usd nan``),
  a pool file, recipe, dataset or saved router (``--router DIR``, ``--state DIR``) that is invalid
  or missing, an unknown router or graph name — a :class:`~agentroute.errors.ConfigurationError`,
  :class:`~agentroute.errors.DatasetError` or :class:`~agentroute.errors.StateFileError` — or an
  optional extra it needs that is not installed (:class:`~agentroute.errors.MissingDependencyError`,
  printed as one line with the exact ``pip install`` command), or a memory URL (``--memory``,
  ``--from``) whose database cannot be connected to: a wrong password, role or database name, a
  host that refuses or does not answer (one line: the URL, password hidden, and the driver's reason).
  This is the code click and typer give a malformed command line, so scripts can tell "fix your
  input" from "try again".
- ``128 + signal``: a long command stopped by a signal (130 SIGINT, 143 SIGTERM), or 141 (SIGPIPE)
  when the reader of ``--out -`` closed standard output (``| head -1``) — what a shell reports for
  a program the signal ended; the work done is kept, no traceback.
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape

from agentroute._optional import extra_for, missing_message
from agentroute.errors import ConfigurationError, DatasetError, MissingDependencyError, StateFileError
from agentroute.out_path import check_out as check_out  # --out's one rule, shared with BatchRunner

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2

#: The exception types that mean "bad input": the command exits with :data:`EXIT_BAD_INPUT`.
BAD_INPUT_ERRORS: tuple[type[BaseException], ...] = (
    ConfigurationError, DatasetError, StateFileError, MissingDependencyError,
)  # fmt: skip


def exit_code_for(exc: BaseException) -> int:
    """The exit code of a command that stopped on ``exc``.

    >>> from agentroute.budget import Budget
    >>> try:
    ...     Budget(usd=float("nan"))
    ... except Exception as exc:
    ...     exit_code_for(exc)
    2
    >>> exit_code_for(RuntimeError("model down"))
    1
    """
    return EXIT_BAD_INPUT if isinstance(exc, BAD_INPUT_ERRORS) or memory_unreachable(exc) else EXIT_FAILURE


def memory_unreachable(exc: BaseException) -> str | None:
    """One line for a memory that could not be opened because its database refused or could not
    be reached: ``cannot open the memory at URL: REASON`` (password hidden), else ``None``.

    The store's message ends with the driver's, which runs over several lines (libpq's hints,
    SQLAlchemy's "Background on this error" link); the reason here is
    :func:`agentroute.memory.engine.connect_failure`'s one line.
    """
    store_errors = sys.modules.get("agentroute.memory.errors")  # not imported: no memory was ever opened
    cause = exc.__cause__
    if store_errors is None or not isinstance(exc, store_errors.MemoryStoreError) or cause is None:
        return None  # (importing the memory for the check costs seconds of SQLAlchemy on every error line)
    if "sqlalchemy" not in sys.modules:
        return None  # (no sqlalchemy loaded: no database was ever connected to)
    from agentroute.memory.engine import connect_failure

    reason = connect_failure(cause)
    if reason is None:
        return None
    text, detail, orig = str(exc), str(cause), str(getattr(cause, "orig", None) or "")
    if detail and detail in text:  # "cannot open the memory at URL: <SQLAlchemy's message>"
        return text[: text.index(detail)] + reason
    if orig and orig in text:  # a message that quotes the driver's (a batch's write): said once, in one line
        return " ".join(text.replace(orig, reason).split())
    return text.splitlines()[0] + ": " + reason


def missing_extra(exc: BaseException) -> str | None:
    """The install line for ``exc`` when it is an optional package that is not installed, else ``None``.

    A :class:`MissingDependencyError`, or a bare ``ModuleNotFoundError`` of a module one of the
    extras provides (``import torch`` in a core-only install).

    >>> missing_extra(ModuleNotFoundError("No module named 'torch'", name="torch"))
    "'torch' is not installed (extra [ml]); install it with: pip install torch==2.13.0 && pip install 'agentroute[ml]'"
    >>> missing_extra(ModuleNotFoundError("No module named 'agentroute.nope'", name="agentroute.nope")) is None
    True
    """
    if isinstance(exc, MissingDependencyError):
        return missing_message(exc.module, exc.extra)
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        extra = extra_for(exc.name)
        return None if extra is None else missing_message(exc.name, extra)
    return None


def error_text(exc: BaseException) -> str:
    """What the command prints for ``exc``: its message, for a missing extra the install line, for a
    memory whose database cannot be reached one line (:func:`memory_unreachable`)."""
    return missing_extra(exc) or memory_unreachable(exc) or str(exc)


_stderr = Console(stderr=True, soft_wrap=True)


def print_error(message: str, console: Console | None = None) -> None:
    """``error: MESSAGE`` on standard error as one line: never wrapped (a ``pip install`` command
    stays copyable), never read as rich markup (``agentroute[ml]`` is printed as written), and on a
    terminal not decorated either (rich would colour its numbers, paths and brackets)."""
    (console or _stderr).print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)


def report(exc: BaseException, console: Console | None = None) -> int:
    """Print ``exc`` (:func:`error_text`, :func:`print_error`) and return its exit code."""
    print_error(error_text(exc), console)
    return exit_code_for(exc)

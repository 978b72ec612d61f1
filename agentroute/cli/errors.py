"""Exit codes of the ``agentroute`` command, one rule for every subcommand.

- ``0``: the command did its work (a task that ended ``budget_exhausted`` included).
- ``1``: it ran and something failed (a model call, a task, a missing memory row).
- ``2``: it never started because of what it was given: a bad option value (``--budget-usd nan``),
  a pool file, recipe, dataset or saved router (``--router DIR``, ``--state DIR``) that is invalid
  or missing, an unknown router or graph name — a :class:`~agentroute.errors.ConfigurationError`,
  :class:`~agentroute.errors.DatasetError` or :class:`~agentroute.errors.StateFileError`.
  This is the code click and typer give a malformed command line, so scripts can tell "fix your
  input" from "try again".
"""

from __future__ import annotations

from agentroute.errors import ConfigurationError, DatasetError, StateFileError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2

#: The exception types that mean "bad input": the command exits with :data:`EXIT_BAD_INPUT`.
BAD_INPUT_ERRORS: tuple[type[BaseException], ...] = (ConfigurationError, DatasetError, StateFileError)


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
    return EXIT_BAD_INPUT if isinstance(exc, BAD_INPUT_ERRORS) else EXIT_FAILURE

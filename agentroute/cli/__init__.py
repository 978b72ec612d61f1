"""The ``agentroute`` command line (typer + rich).

A Ctrl-C ends every command the same way, whenever it comes: one line on standard error and exit
code 130 (128 + SIGINT), never a traceback; a command that turns SIGTERM into a stop (``run``,
``train``, ``run web``) exits 143 (128 + SIGTERM) — one rule for every command,
:func:`stopped_exit_code`, and one exit, :func:`exit_interrupted`. While the command is still starting (importing typer,
rich and its subcommands, before :func:`main` runs it) the line is ``interrupted``: importing this
package as the command sets a SIGINT handler for that, since the console script imports it before
:func:`main` can catch anything; :func:`main` hands Ctrl-C back to Python's ``KeyboardInterrupt``,
which a command may handle to say more (``agentroute train``: what ``--out`` holds).
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import NoReturn

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a Ctrl-C'd command


def forget_caught_interrupt() -> None:
    """Make the process exit with the status it is given even after a Ctrl-C that was handled.

    CPython remembers a ``KeyboardInterrupt`` that escaped any ``exec``/``eval`` of source text
    (dataclasses, namedtuples and many imports run such code; torch imports its compiler on a fit's
    first step) even when a caller catches it later; under ``python -m`` it then ends the process by
    SIGINT whatever ``sys.exit`` said. Running source text again resets that note.
    """
    exec("")


def stopped_exit_code(signum: int) -> int:
    """The exit code of a command a signal stopped, as a shell reports it: 128 + the signal
    (130 for a Ctrl-C, 143 for a SIGTERM)."""
    return 128 + int(signum)


def exit_interrupted(message: str | None = None, signum: int | None = None) -> NoReturn:
    """``message`` on standard error (plain, no rich: it may be what the Ctrl-C cut short; default
    ``interrupted`` or ``terminated``), then exit :func:`stopped_exit_code` of ``signum`` — by default
    the signal of the stop being handled (:func:`~agentroute.training.stopping.stop_signal`), so a
    SIGTERM is 143 wherever it is caught."""
    if signum is None:
        stop = sys.exc_info()[1]
        if stop is None:
            signum = int(signal.SIGINT)
        else:
            from agentroute.training.stopping import stop_signal

            signum = stop_signal(stop)
    if message is None:
        message = "terminated" if signum == getattr(signal, "SIGTERM", None) else "interrupted"
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    forget_caught_interrupt()
    raise SystemExit(stopped_exit_code(signum))


#: The signal that stopped the start-up, if one did: its ``SystemExit`` may be swallowed by code it
#: lands in (a library's bare ``except:`` around an optional import), so the command checks it too.
_stopped_while_starting: int | None = None


def _interrupted_while_starting(signum: int, frame: FrameType | None) -> NoReturn:
    global _stopped_while_starting
    _stopped_while_starting = signum
    exit_interrupted(signum=signum)


def _quiet_swallowed_exit(unraisable: sys.UnraisableHookArgs) -> None:
    """The start-up's Ctrl-C that landed where Python cannot raise (a weakref callback of the import
    system, a ``__del__``): its ``SystemExit`` is swallowed there, and :func:`start_command` exits;
    Python's "Exception ignored in …" traceback of it would only repeat ``interrupted``."""
    if _stopped_while_starting is not None and isinstance(unraisable.exc_value, SystemExit):
        return
    sys.__unraisablehook__(unraisable)


def start_command() -> None:
    """From here a Ctrl-C is a ``KeyboardInterrupt`` again, for the command to handle (:func:`main`);
    a Ctrl-C of the start-up whose exit was swallowed ends the process now (its line already said)."""
    if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if sys.unraisablehook is _quiet_swallowed_exit:
        sys.unraisablehook = sys.__unraisablehook__
    if _stopped_while_starting is not None:
        forget_caught_interrupt()
        raise SystemExit(stopped_exit_code(_stopped_while_starting))


def _is_the_command() -> bool:
    """Whether this process is the ``agentroute`` command: ``python -m agentroute`` or its script."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None:
        return bool(spec.name == "agentroute.__main__")
    return os.path.basename(sys.argv[0] if sys.argv else "") in ("agentroute", "agentroute.exe", "agentroute-script.py")


# a program importing the package keeps its KeyboardInterrupt; a Ctrl-C ignored (nohup) stays ignored
if _is_the_command() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_while_starting)
    if sys.unraisablehook is sys.__unraisablehook__:
        sys.unraisablehook = _quiet_swallowed_exit

from agentroute.cli.app import app, main  # noqa: E402  (the handler first: these imports take a while)

__all__ = ["EXIT_INTERRUPTED", "app", "exit_interrupted", "main", "stopped_exit_code"]

"""The ``agentroute`` command line (typer + rich).

A Ctrl-C ends every command the same way, whenever it comes: one line on standard error and exit
code 130 (128 + SIGINT), never a traceback; a command that turns SIGTERM into a stop (``run``,
``train``, ``run web``) exits 143 (128 + SIGTERM) — one rule for every command,
:func:`stopped_exit_code`, and one exit, :func:`exit_interrupted`. While the command is still starting (importing typer,
rich and its subcommands, before :func:`main` runs it) the line is ``interrupted``: importing this
package as the command sets a SIGINT handler for that, since the console script imports it before
:func:`main` can catch anything; :func:`main` hands Ctrl-C back to Python's ``KeyboardInterrupt``,
which a command may handle to say more (``agentroute train``: what ``--out`` holds) — also one that
lands in a ``__del__`` or weakref callback, where Python would swallow it: it is raised again in the
main thread (:func:`start_command`).
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
from collections.abc import Callable
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
    global _exiting
    _exiting = True
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


#: Whether :func:`exit_interrupted` has begun: a stop swallowed after that is not delivered again.
_exiting = False

#: The unraisable hook :func:`start_command` found, for what is not a swallowed stop.
_hook_before_command: Callable[[sys.UnraisableHookArgs], object] = sys.__unraisablehook__


def _deliver_swallowed_stop(unraisable: sys.UnraisableHookArgs) -> None:
    """The command's Ctrl-C (or SIGTERM stop) that landed where Python cannot raise it — a ``__del__``,
    a weakref callback, which the garbage collector runs wherever it runs — is raised again, in the
    main thread at its next instruction, quietly: swallowed, the command ran on (a million-epoch fit
    did not stop). Anything else goes to the hook that was there before."""
    stop = unraisable.exc_value
    if not isinstance(stop, KeyboardInterrupt):
        _hook_before_command(unraisable)
        return
    if _exiting:  # a second Ctrl-C while the command says why it stopped: it is stopping already
        return
    # no import here (this may run inside one): a Terminated stop was raised by that module
    stopping = sys.modules.get("agentroute.training.stopping")
    signum = int(signal.SIGINT) if stopping is None else stopping.stop_signal(stop)
    if threading.current_thread() is threading.main_thread():
        before = signal.getsignal(signum)  # (a SIGTERM stop's handler ignores SIGTERM from its first)

        def again(_signum: int, _frame: FrameType | None) -> NoReturn:
            signal.signal(signum, before)
            raise stop

        signal.signal(signum, again)
    # from another thread: called here, in the main thread, the handler would run (and raise) at once,
    # inside this hook, where its exception is swallowed too
    sent = _thread.allocate_lock()
    sent.acquire()
    _thread.start_new_thread(_deliver, (signal.Signals(signum), sent))
    _deliveries.append(sent)


#: One lock per stop :func:`_deliver_swallowed_stop` raises again, held until it is sent: the end of
#: the command waits for them (:func:`end_command`), so none lands in the caller's code after it.
_deliveries: list[_thread.LockType] = []


def _deliver(signum: signal.Signals, sent: _thread.LockType) -> None:
    try:
        _thread.interrupt_main(signum)
    finally:
        sent.release()


def start_command() -> None:
    """From here a Ctrl-C is a ``KeyboardInterrupt`` again, for the command to handle (:func:`main`),
    even one swallowed where Python cannot raise it (:func:`_deliver_swallowed_stop`, until
    :func:`end_command`); a Ctrl-C of the start-up whose exit was swallowed ends the process now (its
    line already said)."""
    global _hook_before_command, _exiting
    _exiting = False
    if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if sys.unraisablehook is not _deliver_swallowed_stop:
        hook = sys.unraisablehook
        _hook_before_command = sys.__unraisablehook__ if hook is _quiet_swallowed_exit else hook
        sys.unraisablehook = _deliver_swallowed_stop
    if _stopped_while_starting is not None:
        forget_caught_interrupt()
        raise SystemExit(stopped_exit_code(_stopped_while_starting))


def end_command() -> int | None:
    """The command has ended: the unraisable hook is the one :func:`start_command` found. Returns the
    signal of a swallowed stop still on its way as the command ended (:func:`_deliver_swallowed_stop`),
    raised here rather than in the caller's next line; ``None`` when none was, or the command already
    said it stopped."""
    late = None
    try:
        while _deliveries:
            _deliveries[0].acquire()  # sent: its handler raises by this wait at the latest
            _deliveries.pop(0)
    except KeyboardInterrupt as stop:
        stopping = sys.modules.get("agentroute.training.stopping")
        late = int(signal.SIGINT) if stopping is None else stopping.stop_signal(stop)
        _deliveries.clear()
    if sys.unraisablehook is _deliver_swallowed_stop:
        sys.unraisablehook = _hook_before_command
    return None if _exiting else late


def _is_the_command() -> bool:
    """Whether this process is the ``agentroute`` command: ``python -m agentroute`` or its script."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None:
        return bool(spec.name == "agentroute.__main__")
    return os.path.basename(sys.argv[0] if sys.argv else "") in (
        "agentroute",
        "agentroute.exe",
        "agentroute-script.py",
    )


# a program importing the package keeps its KeyboardInterrupt; a Ctrl-C ignored (nohup) stays ignored
if _is_the_command() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_while_starting)
    if sys.unraisablehook is sys.__unraisablehook__:
        sys.unraisablehook = _quiet_swallowed_exit

from agentroute.cli.app import app, main  # noqa: E402  (the handler first: these imports take a while)

__all__ = ["EXIT_INTERRUPTED", "app", "exit_interrupted", "main", "stopped_exit_code"]

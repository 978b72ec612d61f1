"""Where a command or a library call writes its output (``--out``, ``BatchRunner(out=)``): one rule.

Missing folders are created (``mkdir -p``, as an ML trainer's output directory); a file where a
folder must be, a folder given for a file, or a folder that cannot be written (to create the file
in: an existing file you may write is enough) is a
:class:`~agentroute.errors.ConfigurationError` naming the option, raised before any work.

``-`` is standard output for the commands that write JSON lines (``run --out -``, ``run web --out
-``, ``memory export --out -``: :class:`StdoutLines`; a file named ``-`` is ``./-``), and refused
where a folder is wanted (``train``, ``eval``, ``routers show --out``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from agentroute.errors import ConfigurationError

__all__ = ["STDOUT", "StdoutLines", "check_out", "is_stdout"]

STDOUT = "-"
"""``--out -``: standard output (as typed: ``./-`` is a file named ``-``)."""


def is_stdout(out: str) -> bool:
    """Whether the ``--out`` text ``out`` (as typed) names this process's standard output: ``-``, or
    a path to it (``/dev/stdout``, ``/dev/fd/1``), which opened anew would truncate a ``>> FILE``."""
    if out == STDOUT:
        return True
    if not out.startswith(("/dev/", "/proc/")):
        return False
    try:
        return os.path.samestat(os.stat(out), os.fstat(1))
    except OSError:
        return False


def check_out(out: Path, *, folder: bool = False, create: bool = True, name: str = "--out") -> None:
    """Check (and with ``create``, make the missing folders of) the output path ``out``.

    ``folder``: ``out`` is the folder the caller writes into (``train``, ``eval``), else the file it
    writes (``run``, ``memory export``, ``BatchRunner``). ``create=False`` only checks: for a caller
    that creates the folders when it first writes there (``check_out`` again), so that a run refused
    before that leaves none behind. ``name``: the option or argument named in the error
    (``out`` from Python).
    """
    if folder and str(out) == STDOUT:  # a Path of "./-" reads "-" too: that folder by its full path
        raise ConfigurationError(
            f"{name} -: this option takes a folder, not standard output; give a folder "
            f"(one named -: by its full path, {Path.cwd() / STDOUT})"
        )
    if folder and out.exists() and not out.is_dir():
        raise ConfigurationError(f"{name} {out} is a file, not a directory")
    if not folder and out.is_dir():
        raise ConfigurationError(
            f"{name} {out} is a directory; give the file to write (e.g. {out / 'out.jsonl'})"
        )
    if not folder and out.exists():  # a file there to write (/dev/null, a pipe): its folder may be read-only
        if os.access(out, os.W_OK):
            return
        raise ConfigurationError(
            f"{name} {out} is read-only; give another file, or make it writable (chmod u+w)"
        )
    # a link to a file to create: its folders are the target's
    needed = out if folder else Path(os.path.realpath(out) if out.is_symlink() else out).parent
    above = next((p for p in (needed.absolute(), *needed.absolute().parents) if p.exists()), None)
    if above is not None and not above.is_dir():
        raise ConfigurationError(f"{name} {out}: cannot write there ({above} is a file, not a directory)")
    if above is not None and not os.access(above, os.W_OK | os.X_OK):
        raise ConfigurationError(f"{name} {out}: cannot write there ({above} is not writable)")
    if create and above != needed.absolute():
        try:
            needed.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(f"{name} {out}: cannot write there ({exc.strerror or exc})") from None


class StdoutLines:
    """``--out -``: a command's JSON lines on standard output, everything else it prints on standard error.

    Entered, it keeps the real standard output for the lines and points file descriptor 1 at
    standard error, so that a progress bar, a summary or a stray ``print`` (a user's graph, a
    library) cannot break a ``| jq`` reading the lines. :meth:`write` writes whole lines; once the
    reader is gone (``| head -1``: ``EPIPE``) it writes nothing more, sets :attr:`closed` and calls
    ``on_closed`` once, so the command can stop and exit ``128 + SIGPIPE`` (141) quietly; another
    write error (``> /dev/full``) does the same with its reason in :attr:`failure`.
    :meth:`relay` serves a writer that takes a path (``BatchRunner(out=)``).
    """

    def __init__(self, on_closed: Callable[[], None] | None = None) -> None:
        self.on_closed = on_closed
        self.closed = False
        self.failure: str | None = None
        """Why standard output could not be written, other than its reader leaving (``EPIPE``)."""
        self._fd: int | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> StdoutLines:
        try:
            sys.stdout.flush()
            self._fd = os.dup(1)
        except (OSError, ValueError, AttributeError):  # `>&-`: no standard output at all
            raise ConfigurationError("--out -: standard output is closed; give --out FILE") from None
        os.dup2(2, 1)
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()  # what went to fd 1 meanwhile: to standard error
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if self.closed:  # nothing more may reach the closed pipe (Python's own flush at exit)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.close(devnull)
        else:
            os.dup2(fd, 1)
        os.close(fd)

    def write(self, data: bytes) -> None:
        """Write ``data`` (whole lines) to standard output; nothing once its reader is gone."""
        with self._lock:
            if self.closed or self._fd is None:
                return
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(self._fd, view) :]
                return
            except OSError as exc:
                if exc.errno != errno.EPIPE:
                    self.failure = exc.strerror or str(exc)
                self.closed = True
        if self.on_closed is not None:  # once: by the write that found the reader gone
            self.on_closed()

    @contextlib.contextmanager
    def relay(self, poll_s: float = 0.05) -> Iterator[Path]:
        """A file path for a writer that takes one: the whole lines written there are copied to
        standard output as they come (polled every ``poll_s``), the last ones before this ends.
        The file is private and removed at the end; a slow reader never blocks the writer."""
        from agentroute.training.stopping import terminate_as_interrupt

        folder = tempfile.mkdtemp(prefix="agentroute-out-")
        path = Path(folder) / "out.jsonl"
        path.touch()
        done = threading.Event()

        def copy() -> None:
            with path.open("rb") as fh:
                rest = b""
                while True:
                    ended = done.is_set()  # read after: the writer's last lines are in
                    rest += fh.read()
                    whole, cut, rest = rest.rpartition(b"\n")
                    if cut:
                        self.write(whole + cut)
                    if ended:
                        return
                    done.wait(poll_s)

        thread = threading.Thread(target=copy, name="agentroute-out-relay", daemon=True)
        thread.start()
        try:
            yield path
        finally:
            done.set()
            try:
                with terminate_as_interrupt():  # a stalled reader holds it: a Ctrl-C or SIGTERM here
                    thread.join()  # still removes the folder
            except BaseException:
                self.closed = True  # the lines still to copy are dropped, not written after this ends
                raise
            finally:
                shutil.rmtree(folder, ignore_errors=True)

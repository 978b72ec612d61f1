"""Where a command or a library call writes its output (``--out``, ``BatchRunner(out=)``): one rule.

Missing folders are created (``mkdir -p``, as an ML trainer's output directory); a file where a
folder must be, a folder given for a file, or a folder that cannot be written (to create the file
in: an existing file you may write is enough) is a
:class:`~agentroute.errors.ConfigurationError` naming the option, raised before any work.
"""

from __future__ import annotations

import os
from pathlib import Path

from agentroute.errors import ConfigurationError

__all__ = ["check_out"]


def check_out(out: Path, *, folder: bool = False, create: bool = True, name: str = "--out") -> None:
    """Check (and with ``create``, make the missing folders of) the output path ``out``.

    ``folder``: ``out`` is the folder the caller writes into (``train``, ``eval``), else the file it
    writes (``run``, ``memory export``, ``BatchRunner``). ``create=False`` only checks: for a caller
    that creates the folders when it first writes there (``check_out`` again), so that a run refused
    before that leaves none behind. ``name``: the option or argument named in the error
    (``out`` from Python).
    """
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

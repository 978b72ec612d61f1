"""A resumable training run's state in one file: written atomically at most every ``every_s``
seconds and when the run stops (Ctrl-C, SIGTERM, the end), read back only by the same run.

The file holds ``{"run": RUN_KEY, "state": {...}, "done": "12 BoPO iterations"}``: the state
is what the trainer needs to go on exactly as it would have (weights, optimiser, random state,
progress); ``run`` is a digest of the parameters and data it was trained with; ``done`` is what a
message says about it (:func:`checkpoint_done`). States are ``torch.save``-d and loaded with
``weights_only=True``: tensors, numbers, text, lists and dicts only.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from agentroute._signals import signals_deferred
from agentroute.errors import ConfigurationError, StateFileError

#: In ``--out`` while a training run is unfinished (Ctrl-C, SIGTERM, ``kill -9``): what the same command resumes from.
CHECKPOINT = "checkpoint.pt"


def run_key(*parts: Any) -> str:
    """A digest of what a run was trained with (JSON of ``parts``; objects by their ``str``)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class TrainingCheckpoint:
    """The state of one training run in ``path``.

    Args:
        path: the file (``OUT/checkpoint.pt``); ``PATH.partial`` while it is written.
        run: :func:`run_key` of the run's parameters and data; a file of another run is refused.
        what: who wrote it, for errors ("bopo", "graph-planner").
        length: the parameter a resumed run may change, for errors ("episodes", "iterations").
        every_s: :meth:`update` writes at most this often; :meth:`write` writes the latest at once.
    """

    def __init__(self, path: Path, run: str, *, what: str, length: str, every_s: float = 30.0):
        self.path, self.run, self.what, self.length, self.every_s = Path(path), run, what, length, every_s
        self._latest: tuple[dict[str, Any], str] | None = None
        self._written = time.monotonic()

    def load(self) -> dict[str, Any] | None:
        """The saved state (``None``: no file); a file that does not read, or another run's, is an error naming it."""
        import torch

        if not self.path.is_file():
            return None
        try:
            saved = torch.load(self.path, weights_only=True)
            state = saved["state"]
        except Exception as exc:  # torch's unpickling errors have no common base
            raise StateFileError(
                self.path, f"not a {self.what} checkpoint ({exc}); delete it to train from the start"
            ) from None
        if saved.get("run") != self.run:
            raise ConfigurationError(
                f"{self.path}: a checkpoint of another training run (other parameters or data; only {self.length!r} may "
                "change): train with the ones it was saved with to resume, or delete it to start over"
            )
        return dict(state)

    def update(self, state: dict[str, Any], done: str) -> None:
        """The run's latest state — a copy later training does not change (a Ctrl-C mid-update must
        not save half an update) — written if ``every_s`` has passed since the last write."""
        self._latest = (state, done)
        if time.monotonic() - self._written >= self.every_s:
            self.write()

    def write(self) -> None:
        """Write the latest state (atomically: ``PATH.partial``, then renamed; a Ctrl-C or SIGTERM meanwhile
        takes effect once it is written); nothing before an update."""
        import torch

        if self._latest is None:
            return
        state, done = self._latest
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        with (
            signals_deferred()
        ):  # a second Ctrl-C or a SIGTERM now would keep the previous state, not this one
            torch.save({"run": self.run, "state": state, "done": done}, partial)
            os.replace(partial, self.path)
        self._written = time.monotonic()


def checkpoint_done(path: str | os.PathLike[str]) -> str | None:
    """What the checkpoint at ``path`` holds ("12 BoPO iterations"; ``None``: none there, or unreadable).
    Torch is not imported again after a Ctrl-C stopped its import (importing it twice crashed the
    process): without a file that is ``None``, with one ``"its last save"``, the file left unread."""
    if not Path(path).is_file():
        return None
    if torch_import_stopped():
        return "its last save"
    import torch

    try:
        return str(torch.load(path, weights_only=True)["done"])
    except Exception:
        return None


def torch_import_stopped() -> bool:
    """Whether an import of torch was stopped midway in this process (a Ctrl-C): some of its
    submodules are loaded, the package is not. Importing it again then fails or crashes the process."""
    return "torch" not in sys.modules and any(name.startswith("torch.") for name in sys.modules)

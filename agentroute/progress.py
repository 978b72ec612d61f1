"""Progress bars for long phases (embedding, fitting, sweeping), on stderr.

One switch for all of them: ``$AGENTROUTE_PROGRESS`` ``1`` forces bars on, ``0`` off; unset, a bar
shows only when stderr is a terminal or a Jupyter kernel's output (so logs, pipes and ``--json``
runs stay clean). Bars are tqdm's (a core dependency), ``leave=False`` so that finished phases leave
no trace; in a notebook they are tqdm's widgets when ``ipywidgets`` is installed, else its text bar,
nested bars sharing one line (a notebook draws ``\r`` updates in place, but no cursor moves).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


def enabled(default: bool | None = None) -> bool:
    """Whether bars show: ``$AGENTROUTE_PROGRESS``, else ``default``, else stderr is a terminal."""
    env = os.environ.get("AGENTROUTE_PROGRESS", "").strip().lower()
    if env in ("1", "true", "yes", "on"):
        return True
    if env in ("0", "false", "no", "off"):
        return False
    if default is not None:
        return default
    return bool(getattr(sys.stderr, "isatty", lambda: False)()) or in_notebook()


def in_notebook() -> bool:
    """Whether stderr is a Jupyter kernel's output stream (ipykernel's ``OutStream``)."""
    return type(sys.stderr).__module__.startswith("ipykernel.")


def _open(**kwargs: Any) -> Any:
    """A tqdm bar on stderr. In a notebook: tqdm's widget when ``ipywidgets`` is installed, else
    its text bar on one line (``position=0``): a notebook cannot move the cursor up to the lines of
    nested bars, so each nested update would add a line. Not ``tqdm.auto``: without ``ipywidgets``
    it warns in every kernel ("IProgress not found")."""
    if in_notebook():
        if importlib.util.find_spec("ipywidgets") is not None:
            from tqdm.notebook import tqdm as widget

            return widget(**kwargs)
        kwargs["position"] = 0
    from tqdm.std import tqdm

    return tqdm(file=sys.stderr, dynamic_ncols=True, **kwargs)


@contextmanager
def bar(total: int | None, desc: str, *, unit: str = "it", show: bool | None = None) -> Iterator[Any]:
    """A progress bar context; ``.update(k)`` advances it, ``.set_postfix_str(s)`` annotates it.
    With bars off it yields an object whose methods do nothing."""
    if not enabled(show):
        yield _Null()
        return
    with _open(total=total, desc=desc, unit=unit, leave=False) as b:
        yield b


def track(items: Iterable[T], desc: str, *, total: int | None = None, show: bool | None = None) -> Iterator[T]:
    """Iterate ``items`` with a bar (see :func:`bar`)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with bar(total, desc, show=show) as b:
        for item in items:
            yield item
            b.update(1)


class _Null:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def set_description_str(self, s: str = "", refresh: bool = True) -> None:
        pass


@contextmanager
def phase(desc: str, *, show: bool | None = None) -> Iterator[Any]:
    """A bar with no total for a phase whose length is unknown (a fit, a graph build): it shows
    the phase and its elapsed time, refreshed once a second by a daemon thread."""
    if not enabled(show):
        yield _Null()
        return
    import threading

    done = threading.Event()
    with _open(total=None, desc=desc, leave=False, bar_format="{desc}: {elapsed}{postfix}") as b:

        def tick() -> None:
            while not done.wait(1.0):
                b.refresh()

        thread = threading.Thread(target=tick, daemon=True)
        thread.start()
        try:
            yield b
        finally:
            done.set()
            thread.join(timeout=2)

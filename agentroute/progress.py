"""Progress bars for long phases (embedding, fitting, sweeping), on stderr.

One switch for all of them: ``$AGENTROUTE_PROGRESS`` ``1`` forces bars on, ``0`` off; unset, a bar
shows only when stderr is a terminal or a Jupyter kernel's output (so logs, pipes and ``--json``
runs stay clean). A bar turned off by its caller (``show=False``, e.g. ``evaluate(progress=False)``)
silences the bars opened inside it too (a router's fit inside the harness's "fitting" phase),
unless they are asked for explicitly (``show=True``) or by ``$AGENTROUTE_PROGRESS``. Fits show one
bar each: their epochs (or steps) and the current loss. Bars are tqdm's (a core dependency), ``leave=False`` so that finished phases leave
no trace; in a notebook they are tqdm's widgets when ``ipywidgets`` is installed, else its text bar,
nested bars sharing one line (a notebook draws ``\r`` updates in place, but no cursor moves).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

# set inside a bar its caller turned off: the bars nested in it default to off as well
_QUIET: ContextVar[bool] = ContextVar("agentroute_progress_quiet", default=False)


def enabled(default: bool | None = None) -> bool:
    """Whether bars show: ``$AGENTROUTE_PROGRESS``, else ``default``, else off inside a bar turned
    off by its caller, else whether stderr is a terminal (or a notebook's)."""
    env = os.environ.get("AGENTROUTE_PROGRESS", "").strip().lower()
    if env in ("1", "true", "yes", "on"):
        return True
    if env in ("0", "false", "no", "off"):
        return False
    if default is not None:
        return default
    if _QUIET.get():
        return False
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
def _quiet() -> Iterator[_Null]:
    """A bar that is off: a do-nothing object, and the bars opened inside default to off too."""
    token = _QUIET.set(True)
    try:
        yield _Null()
    finally:
        try:
            _QUIET.reset(token)
        except ValueError:  # closed from another context (a generator finished elsewhere)
            _QUIET.set(False)


@contextmanager
def _ticking(b: Any) -> Iterator[Any]:
    """Refresh ``b`` once a second from a daemon thread, so that its elapsed time runs between
    updates (a fit's epochs or a phase's steps may each take many seconds)."""
    import threading

    done = threading.Event()

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


@contextmanager
def bar(
    total: int | None, desc: str, *, unit: str = "it", show: bool | None = None, tick: bool = False
) -> Iterator[Any]:
    """A progress bar context; ``.update(k)`` advances it, ``.set_postfix_str(s)`` annotates it.
    With bars off it yields an object whose methods do nothing. ``tick``: redraw once a second
    (for steps that take seconds: the elapsed time keeps running)."""
    if not enabled(show):
        with _quiet() as null:
            yield null
        return
    with _open(total=total, desc=desc, unit=unit, leave=False) as b:
        if not tick:
            yield b
            return
        with _ticking(b):
            yield b


@contextmanager
def fit_bar(epochs: int, desc: str, *, unit: str = "epoch", show: bool | None = None) -> Iterator[FitBar]:
    """The bar of a fit: ``epochs`` (its most; early stopping leaves it short), redrawn once a
    second; the loop calls ``.advance("loss …")`` after each epoch (or step)."""
    with bar(epochs, desc, unit=unit, show=show, tick=True) as b:
        yield FitBar(b)


class FitBar:
    """A fit's bar (:func:`fit_bar`): :meth:`advance` counts an epoch and shows its loss; the other
    methods are the bar's (``set_description_str`` for a fit's stages)."""

    def __init__(self, b: Any):
        self._bar, self._drawn = b, False

    def advance(self, postfix: str, n: int = 1) -> None:
        """Count ``n`` epochs (or steps) done, ``postfix`` their loss (``"loss 0.61, val 0.77"``).
        The first is drawn at once, whatever the bar's refresh interval: the first loss shows that
        the fit is under way, even for one that ends in a fraction of a second."""
        self._bar.set_postfix_str(postfix, refresh=False)
        self._bar.update(n)
        if not self._drawn:
            self._drawn = True
            self._bar.refresh()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bar, name)


def track(
    items: Iterable[T], desc: str, *, total: int | None = None, show: bool | None = None
) -> Iterator[T]:
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

    def refresh(self) -> None:
        pass


@contextmanager
def phase(desc: str, *, show: bool | None = None) -> Iterator[Any]:
    """A bar with no total for a phase whose length is unknown (a fit, a graph build): it shows
    the phase and its elapsed time, refreshed once a second by a daemon thread."""
    if not enabled(show):
        with _quiet() as null:
            yield null
        return
    with _open(total=None, desc=desc, leave=False, bar_format="{desc}: {elapsed}{postfix}") as b, _ticking(b):
        yield b

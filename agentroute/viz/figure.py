"""A matplotlib figure for agentroute's drawings: an Agg canvas (no pyplot state, no display
needed) that a notebook shows inline as a PNG, with or without ``%matplotlib inline``.

Import it after ``require("matplotlib")`` (the ``eval`` extra): this module imports matplotlib.
"""

from __future__ import annotations

import io
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


class InlineFigure(Figure):
    """A ``Figure`` that IPython displays as a PNG (``_repr_png_``), with no backend set up.

    A bare ``Figure`` as a cell's value shows as ``<Figure size … with 1 Axes>`` until pyplot's
    inline backend has registered its formatter; this one draws itself.
    """

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()


def new_figure(width: float, height: float, **kwargs: Any) -> InlineFigure:
    """A ``width`` × ``height`` inch figure on an Agg canvas (``kwargs`` go to ``Figure``)."""
    fig = InlineFigure(figsize=(width, height), **kwargs)
    FigureCanvasAgg(fig)
    return fig

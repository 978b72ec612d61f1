"""Checks of user-given values shared across modules, each raising one-line :class:`ConfigurationError`."""

from __future__ import annotations

import numpy as np

from agentroute.errors import ConfigurationError


def check_count(value: object, name: str) -> int:
    """``value`` as an ``int`` when it is a whole number >= 1 (a Python or numpy integer: steps, attempts,
    top-k…); otherwise a :class:`ConfigurationError` naming ``name`` (``steps`` in Python, ``--steps``
    on the command line).

    >>> check_count(np.int64(3), "top_k")
    3
    >>> check_count(0, "--steps")
    Traceback (most recent call last):
    ...
    agentroute.errors.ConfigurationError: --steps must be >= 1 (got 0)
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigurationError(f"{name} must be a whole number >= 1 (got {value!r})")
    if value < 1:
        raise ConfigurationError(f"{name} must be >= 1 (got {value})")
    return int(value)

"""Budget-constrained decoding of a tier policy (BoPO, arXiv:2602.21227).

The policy states a preference over the whole tier ladder; the ledger decides what is affordable.
The preferred tier is kept when affordable, else the router falls back to the cheapest
affordable tier, so a hard budget is never broken whatever the policy prefers.
"""

from __future__ import annotations

import numpy as np


def ordinal_choice(probs: np.ndarray, available: np.ndarray, threshold: float) -> int:
    """Budget-constrained decoding of the policy's preference.

    The preferred rung is the highest r with P(rung ≥ r) ≥ ``threshold`` under the *unmasked*
    policy; when the ledger has masked it, the cheapest affordable rung (the paper's fallback).
    For two tiers: the large one when P(large) ≥ threshold and it is affordable, else the small one.

    >>> import numpy as np
    >>> ordinal_choice(np.array([0.3, 0.7]), np.array([True, True]), 0.5)
    1
    >>> ordinal_choice(np.array([0.2, 0.3, 0.5]), np.array([True, True, False]), 0.5)
    0
    """
    upper = np.cumsum(probs[::-1])[::-1]
    preferred = max(r for r in range(len(probs)) if upper[r] >= threshold - 1e-12)
    return preferred if available[preferred] else int(np.argmax(available))

"""BoPO's boundary taxonomy from logged explorations of both tiers (bandit logs, the memory).

BoPO (Zhang et al., "Budget-Aware Agentic Routing via Boundary-Guided Training", arXiv:2602.21227)
sorts training tasks by what the two boundary policies achieve on them: *easy* (the small tier
succeeds), *hard* (only the large tier succeeds), *intractable* (both fail). Offline, the trainer
replays each tier's logged outcome on a query. A production log holds the outcome of the tier that
ran, not of the other: a query logged with one tier only says nothing about its class, and reading
the missing tier as a failure (what the offline environment does with a missing cell) makes every
such query look intractable or easy — never hard.

So when the data is a log (trajectories from the memory, or a table most of whose queries lack a
tier), :func:`paired_explorations` keeps the queries on which **every tier of the ladder was
logged** — an exploring router (``--router explore``) serving repeated queries produces them — and
counts how many fell in each class (one logged draw per tier). The trainer then builds its
k-step tasks and K boundary rollouts from those queries only. With no such query it raises an
error that says how to produce them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from agentroute.agentic.env import resolve_tiers
from agentroute.errors import ConfigurationError
from agentroute.outcomes import OutcomeTable, agent_column, column_agent

#: A table whose share of queries with every tier logged is below this is read as a bandit log.
PAIRED_SHARE = 0.5


def role_free(table: OutcomeTable) -> OutcomeTable:
    """The table with its columns named as datasets name them (``model[:strategy]``), so that the
    tier ladder and the serving cards speak of models, whichever role the memory logged them in.
    Columns that would collide (one model in two roles) keep their agent key."""
    names = [agent_column(column_agent(c)) for c in table.models]
    if len(set(names)) != len(names) or names == table.models:
        return table
    out = table.rows(np.arange(len(table)))
    out.models = names
    return out


def paired_explorations(
    table: OutcomeTable,
    tiers: Sequence[str] | None,
    *,
    score_threshold: float = 0.5,
    steps: int = 1,
) -> tuple[OutcomeTable, dict[str, Any]]:
    """The rows on which every tier was logged, and a report of what the log held.

    Report: ``queries`` (logged), ``paired`` (with every tier), ``tiers``, ``logged_per_tier``
    (queries with that tier's outcome), ``classes`` (``easy`` / ``hard`` / ``intractable`` among
    the paired queries, from their logged scores ≥ ``score_threshold``).

    Raises:
        ConfigurationError: fewer paired queries than ``steps`` (no task can be built); the
            message says how to log explorations of both tiers.
    """
    ladder = resolve_tiers(table, tiers)
    cols = [table.models.index(t) for t in ladder]
    logged = ~np.isnan(table.scores[:, cols]) & ~np.isnan(table.costs[:, cols])
    paired = np.flatnonzero(logged.all(axis=1))
    report: dict[str, Any] = {
        "queries": len(table),
        "paired": int(len(paired)),
        "tiers": list(ladder),
        "logged_per_tier": {t: int(logged[:, k].sum()) for k, t in enumerate(ladder)},
    }
    if len(paired) < max(1, steps):
        raise ConfigurationError(
            f"bopo: {len(paired)} of the {len(table)} logged queries ran on every tier of the ladder "
            f"{list(ladder)} (per tier: {report['logged_per_tier']}); BoPO's boundary taxonomy (easy / "
            f"hard / intractable) needs explorations of both tiers on the same queries"
            + (f", at least {steps} (one task of {steps} steps)" if steps > 1 else "")
            + ". Produce them by serving repeated traffic with an exploring router over the tiers "
            "(e.g. `agentroute run … --router explore`, or ExploreRouter(epsilon=1.0)), or train on a "
            "logged-outcome dataset with every tier's outcome (`agentroute train bopo --dataset …`)."
        )
    ok = table.scores[np.ix_(paired, np.asarray(cols, dtype=int))] >= score_threshold
    small, large = ok[:, 0], ok[:, -1]
    report["classes"] = {
        "easy": int(small.sum()),
        "hard": int((~small & large).sum()),
        "intractable": int((~small & ~large).sum()),
    }
    sub = table.rows(paired)
    sub.metadata = {**sub.metadata, "bopo_paired_rows": paired.tolist()}
    return sub, report


def is_log(data: Any, table: OutcomeTable, tiers: Sequence[str] | None) -> bool:
    """Whether ``data`` is read as a bandit log: trajectories, or a table on which fewer than
    :data:`PAIRED_SHARE` of the queries have every tier logged."""
    if not isinstance(data, OutcomeTable) and not hasattr(data, "train"):
        return True
    try:
        ladder = resolve_tiers(table, tiers)
    except ConfigurationError:
        return False
    cols = [table.models.index(t) for t in ladder]
    missing = np.isnan(table.scores[:, cols]).any(axis=1)  # rows lacking some tier's outcome
    paired = float(np.mean(~missing)) if len(table) else 1.0
    return paired < PAIRED_SHARE

"""The training record of a router of your own (``docs/routers.md``): every ``Router`` subclass's
``fit`` is wrapped to record what it was given (``training/provenance.recording_fit``), and the
wrapper must take any ``fit`` a user writes as it is.

It overwrote the record of a ``fit`` that converts its data (a frame, rows) and calls
``super().fit(table)`` with ``None`` (the outer data is no table): saved, such a router was
"cannot be checked" though its parent's fit had recorded the very queries. A ``fit(self,
outcomes)`` given ``outcomes=`` by keyword recorded nothing. And the data was replaced by a list
whenever it was an iterator: a ``fit`` reading a file handle (``json.load(fh)``) or calling
``next()`` on a generator failed (AttributeError, TypeError)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from agentroute.outcomes import OutcomeTable
from agentroute.routers.base import MANIFEST, Router
from agentroute.training.provenance import count_trained_on
from agentroute.types import Decision, RouteContext


def _table(queries: list[str]) -> OutcomeTable:
    n = len(queries)
    rng = np.random.default_rng(0)
    return OutcomeTable(query_ids=[f"q{i}" for i in range(n)], queries=queries, models=["a", "b"],
                        scores=rng.random((n, 2)), costs=rng.random((n, 2)))  # fmt: skip


class _Counting(Router):
    """A router of one's own: learns how many queries it saw."""

    name = "r246-counting"
    learned = True

    def route(self, ctx: RouteContext) -> Decision:
        return Decision(ctx.candidates[0])

    def fit(self, data: Any) -> _Counting:
        self.seen_ = len(data.queries)
        self.fitted_ = True
        return self

    def get_state(self) -> dict[str, Any]:
        return {"seen": self.seen_}

    def set_state(self, state: dict[str, Any]) -> None:
        self.seen_ = state["seen"]


class _FromRows(_Counting):
    """Takes rows (as a DataFrame's records) and hands its parent the table they make."""

    name = "r246-from-rows"

    def fit(self, rows: list[dict[str, Any]]) -> _FromRows:
        super().fit(_table([r["prompt"] for r in rows]))
        return self


class _Keyword(_Counting):
    name = "r246-keyword"

    def fit(self, outcomes: OutcomeTable, *, epochs: int = 1) -> _Keyword:  # type: ignore[override]
        return super().fit(outcomes)  # type: ignore[return-value]


class _FromFile(_Counting):
    name = "r246-from-file"

    def fit(self, fh: Any) -> _FromFile:
        return super().fit(_table(json.load(fh)))  # type: ignore[return-value]


class _FromBatches(_Counting):
    """Reads the first batch by ``next()``: the rest of the stream is never read (it may not end)."""

    name = "r246-from-batches"

    def fit(self, batches: Iterator[OutcomeTable]) -> _FromBatches:
        return super().fit(next(batches))  # type: ignore[return-value]


QUERIES = [f"what is {i} + {i}?" for i in range(12)]


def test_a_fit_that_converts_its_data_for_super_fit_keeps_the_record_through_save(tmp_path: Path) -> None:
    router = _FromRows().fit([{"prompt": q} for q in QUERIES])
    assert router.trained_on_ is not None, "the parent's record was overwritten"
    saved = json.loads((router.save(tmp_path / "r") / MANIFEST).read_text())["trained_on"]
    assert count_trained_on(saved, QUERIES[:5]) == 5


def test_a_fit_whose_data_has_another_name_records_it_given_by_keyword() -> None:
    router = _Keyword().fit(outcomes=_table(QUERIES), epochs=2)
    assert router.trained_on_ is not None and router.trained_on_["queries"] == len(QUERIES)


def test_a_fit_given_a_file_handle_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "queries.json"
    path.write_text(json.dumps(QUERIES))
    with path.open() as fh:
        router = _FromFile().fit(fh)
    assert router.seen_ == len(QUERIES)
    assert router.trained_on_ is not None and router.trained_on_["queries"] == len(QUERIES)


def test_a_fit_given_a_stream_reads_only_what_it_needs() -> None:
    def batches() -> Iterator[OutcomeTable]:  # a stream that may not end: read no further than asked
        yield _table(QUERIES)
        raise AssertionError("the stream was read past the batch the fit asked for")

    router = _FromBatches().fit(batches())
    assert router.seen_ == len(QUERIES)
    assert router.trained_on_ is not None and router.trained_on_["queries"] == len(QUERIES)


class _Built(Router):
    """A ``fit`` that is a classmethod building a fitted router (``MyRouter.fit(data)``)."""

    name = "r246-built"

    def route(self, ctx: RouteContext) -> Decision:
        return Decision(ctx.candidates[0])

    @classmethod
    def fit(cls, data: Any) -> _Built:  # type: ignore[override]
        router = cls()
        router.seen_ = len(data.queries)
        return router


def test_a_fit_that_is_a_classmethod_still_runs() -> None:
    assert _Built.fit(_table(QUERIES)).seen_ == len(
        QUERIES
    )  # was: TypeError: 'classmethod' object is not callable

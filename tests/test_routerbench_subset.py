"""RouterBench with ``limit``/``sample``: the loader subsets before parsing the model responses,
and keeps exactly the rows, ids, texts and notes of the full parse subset afterwards."""

from __future__ import annotations

import numpy as np
import pytest

from agentroute.eval import datasets
from agentroute.eval.datasets import load_dataset, subsample

pd = pytest.importorskip("pandas")


def assert_same(got, want) -> None:
    assert (got.name, got.dropped_rows, got.notes) == (want.name, want.dropped_rows, want.notes)
    for a, b in ((got.train, want.train), (got.test, want.test)):
        assert (a.query_ids, a.queries, a.models, a.task_types, a.responses, a.gold) == (
            b.query_ids, b.queries, b.models, b.task_types, b.responses, b.gold
        )  # fmt: skip
        assert a.scores.tobytes() == b.scores.tobytes() and a.costs.tobytes() == b.costs.tobytes()


@pytest.fixture(scope="module")
def single_file(data_dir, tmp_path_factory):
    """One RouterBench file with no split (drawn by the loader), an incomplete row and a repeated
    sample id (its id gets a suffix that depends on the rows before it)."""
    frame = pd.concat([pd.read_csv(data_dir / "routerbench" / f) for f in ("winograde_test.csv", "mbpp_test.csv")])
    frame = frame.iloc[::7].reset_index(drop=True)
    frame.loc[4, "gpt-4-1106-preview"] = None
    frame.loc[9, "sample_id"] = frame.loc[2, "sample_id"]
    path = tmp_path_factory.mktemp("rb") / "routerbench_0shot.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def full_parse(routerbench):
    """The full parse of a spec (and split seed), read once (RouterBench's is the session's). It was
    ``cache.setdefault(key, load_dataset(...))``, which parsed again on every call."""
    cache: dict = {("routerbench", None): routerbench()}

    def parse(spec, seed):
        if (spec, seed) not in cache:
            cache[(spec, seed)] = load_dataset(spec, seed=seed)
        return cache[(spec, seed)]

    return parse


@pytest.mark.parametrize(("limit", "sample", "seed"), [(30, None, None), (7, None, 3), (None, 0.2, None), (5, 0.5, 3), (10**6, None, 3)])
def test_the_subset_equals_the_full_parse_subset(single_file, full_parse, limit, sample, seed):
    for spec in ("routerbench", f"routerbench:{single_file}"):
        full = full_parse(spec, None if spec == "routerbench" else seed)  # a folder ships its split: no seed
        want = subsample(full, limit=limit, sample=sample, seed=seed or 0)
        assert_same(load_dataset(spec, seed=seed, limit=limit, sample=sample), want)


def test_only_the_kept_rows_responses_are_parsed(full_parse, monkeypatch):
    full = full_parse("routerbench", None)
    seen: list[str] = []
    parse = datasets._listed_text
    monkeypatch.setattr(datasets, "_listed_text", lambda cell: seen.append(cell) or parse(cell))
    data = load_dataset("routerbench", limit=10)
    prompts = len(full.train) + len(full.test)  # every kept prompt is read: ids and drops need them all
    assert len(seen) == prompts + 2 * 10 * len(data.models)  # was: every response too (11 × the prompts)
    cells = [r for t in (data.train, data.test) for row in t.responses for r in row]
    assert cells and not any(r.startswith("['") and r.endswith("']") for r in cells)  # parsed, not raw


def test_subset_errors_are_unchanged(data_dir):
    with pytest.raises(Exception, match="limit must be a positive number of queries"):
        load_dataset("routerbench", limit=0)
    with pytest.raises(Exception, match=r"takes no option \['bogus'\]; it takes \['seed', 'test_fraction'\]"):
        load_dataset("routerbench", limit=3, bogus=1)


@pytest.mark.parametrize("limit", [None, 30])
def test_a_test_that_changes_its_routerbench_leaves_the_next_ones_alone(routerbench, limit) -> None:
    """The session's parse is shared: each ``routerbench()`` is a deep copy, so a test that edits
    its arrays, lists or notes in place changes no other test's data."""
    mine = routerbench(limit)
    before = routerbench(limit)
    mine.train.scores[:] = -1.0
    mine.test.costs[0, 0] = 1e9
    mine.train.queries[0] = "changed"
    mine.notes.clear()
    after = routerbench(limit)
    assert np.array_equal(after.train.scores, before.train.scores) and after.train.scores.min() >= 0
    assert after.test.costs[0, 0] == before.test.costs[0, 0] != 1e9
    assert after.train.queries[0] == before.train.queries[0] != "changed" and after.notes == before.notes != {}

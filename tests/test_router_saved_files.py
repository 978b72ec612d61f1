"""A saved router's folder damaged or from elsewhere, loaded the way users load it
(``load_router(DIR)``, ``--router DIR``): one error naming the file at fault."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agentroute.errors import StateFileError
from agentroute.loading import load_router
from agentroute.outcomes import OutcomeTable
from agentroute.routers import make_router
from agentroute.routers.base import ARRAYS, MANIFEST
from tests.fixtures_leaks import open_descriptors


@pytest.fixture(scope="module")
def table() -> OutcomeTable:
    queries = [f"question {i}: what is {i} + {i}?" for i in range(12)]
    scores = np.array([[float(i % 2), 1.0] for i in range(12)])
    return OutcomeTable([f"q{i}" for i in range(12)], queries, ["small", "large"], scores, np.array([[0.001, 0.01]] * 12))


@pytest.mark.parametrize("name", ["knn", "ant-colony"])
def test_a_truncated_arrays_file_is_named(tmp_path: Path, table: OutcomeTable, name: str) -> None:
    """Before: knn said 'router.json: incompatible state … File is not a zip file'; the ant colony,
    loaded through load_router (Router.load), skipped its own checks and said the same. Both then
    left the truncated file open."""
    folder = make_router(name).fit(table).save(tmp_path / name)
    load_router(folder)  # loads whole
    arrays = Path(folder) / ARRAYS
    arrays.write_bytes(arrays.read_bytes()[:100])
    with pytest.raises(StateFileError) as info:
        load_router(folder)
    assert str(info.value).startswith(str(arrays)) and "not a readable .npz file" in str(info.value)
    # and the file is closed: numpy's np.load of the path left it open (a ResourceWarning at collection)
    assert not [fd for fd in open_descriptors() if fd.endswith(f" {arrays}")]


def test_a_router_kind_this_agentroute_does_not_know_names_the_file(tmp_path: Path, table: OutcomeTable) -> None:
    """Before: 'unknown router 'from-a-plugin'' without the folder it came from."""
    folder = Path(make_router("knn").fit(table).save(tmp_path / "knn"))
    manifest = json.loads((folder / MANIFEST).read_text())
    (folder / MANIFEST).write_text(json.dumps({**manifest, "router": "from-a-plugin"}))
    with pytest.raises(StateFileError) as info:
        load_router(folder)
    assert str(info.value).startswith(str(folder / MANIFEST)) and "from-a-plugin" in str(info.value)
    assert "knn" in str(info.value)  # the known routers are listed

"""The kg-gnn encoders show their options in their repr, each once and whole: HGT's ``heads`` comes
from a field hook of the shared frame rather than from cutting the frame's repr's last character."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch_geometric")

from agentroute.nn import HeteroSAGE, HGTEncoder  # noqa: E402

METADATA = (["query", "agent"], [("query", "to", "agent"), ("agent", "rev_to", "query")])


def test_the_encoders_reprs_name_their_options() -> None:
    assert repr(HGTEncoder(4, 8, 3, metadata=METADATA, heads=2)) == "HGTEncoder(hidden=8, num_layers=3, heads=2)"
    assert repr(HeteroSAGE(4, 8, 1, metadata=METADATA)) == "HeteroSAGE(hidden=8, num_layers=1)"

    class Wide(HGTEncoder):  # a subclass keeps its own name and every field
        def _repr_fields(self) -> dict:
            return {**super()._repr_fields(), "note": "a)b"}

    assert repr(Wide(4, 8, 1, metadata=METADATA, heads=4)) == "Wide(hidden=8, num_layers=1, heads=4, note=a)b)"


def test_numpy_integers_from_a_grid_read_as_before() -> None:
    """Was (0c84548): ``HGTEncoder(hidden=np.int64(8), num_layers=np.int64(3), heads=np.int64(2))``: the
    fields went through repr(), where the encoders always wrote the numbers as str() does."""
    hgt = HGTEncoder(4, np.int64(8), np.int64(3), metadata=METADATA, heads=np.int64(2))
    assert repr(hgt) == "HGTEncoder(hidden=8, num_layers=3, heads=2)"
    assert repr(HeteroSAGE(4, np.int64(8), np.int64(1), metadata=METADATA)) == "HeteroSAGE(hidden=8, num_layers=1)"

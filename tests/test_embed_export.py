"""The one-time ONNX export of MiniLM (a first ``agentroute eval`` with onnxruntime installed) is
quiet: the tracer's notes on this known graph were printed to the user's terminal as warnings."""

from __future__ import annotations

import gc
import warnings
from pathlib import Path

import pytest


def test_export_prints_no_tracer_warnings_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("transformers")
    from agentroute.embed import default_model_path
    from agentroute.embed_onnx import export

    gc.collect()  # an earlier test's unclosed sockets are not the export's: their ResourceWarnings come now
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = export(default_model_path(), tmp_path / "model.onnx")
    hidden = DeprecationWarning | PendingDeprecationWarning | ResourceWarning  # Python shows none by default
    shown = [w for w in caught if not issubclass(w.category, hidden)]
    noisy = [f"{w.category.__name__}: {str(w.message)[:80]}" for w in shown]  # what a terminal shows
    assert noisy == []  # was: two TracerWarnings and a UserWarning on advanced indexing
    assert out.stat().st_size > 1_000_000
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]

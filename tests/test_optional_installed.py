"""A router that imports torch only when it fits still says at once, in a core install, that it
needs the [ml] extra (graph-planner answered "train it first" in a core install, where `train`
cannot run either). The core-install path itself is tests/test_install_user_paths.py."""

from __future__ import annotations

import sys

import pytest

from agentroute._optional import require_installed
from agentroute.errors import MissingDependencyError


def test_an_installed_module_passes_without_being_imported() -> None:
    assert "tabnanny" not in sys.modules  # a standard module nothing here imports
    require_installed("tabnanny")
    assert "tabnanny" not in sys.modules


def test_a_missing_module_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", [])  # nothing can be found: as in an install without the extra
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    with pytest.raises(MissingDependencyError) as raised:
        require_installed("torch")
    assert "agentroute[ml]" in str(raised.value) and "torch==2.13.0" in str(raised.value)

"""An optional dependency that is installed but does not import (an undefined symbol, a missing
shared library, a dependency of its own missing), as a user meets it: a package first on the path
whose import fails.

Was: ``require`` called an ImportError "not installed" (and the install command would not fix it) and
let an OSError through as a traceback; only torch had its own handling. Now every optional package
is one :class:`BrokenDependencyError` line naming where it is and its import error, still an
ImportError for the callers that do without it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from agentroute._optional import BrokenDependencyError, require
from agentroute.errors import ConfigurationError, MissingDependencyError

FAILURES = {
    "ImportError": ('raise ImportError("_ext.so: undefined symbol: dgemm_")', "ImportError: _ext.so: undefined symbol: dgemm_"),
    "OSError": ('raise OSError("libgomp.so.1: cannot open shared object file")', "OSError: libgomp.so.1: cannot open shared object file"),
    "own dependency": ("import threadpoolctl_gone", "ModuleNotFoundError: No module named 'threadpoolctl_gone'"),
}


def _installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, package: str, source: str) -> Path:
    """``package`` on the path first, its ``__init__`` being ``source``; the real one forgotten."""
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text(source + "\n")
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path / package


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_a_broken_package_is_one_line_naming_its_import_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str) -> None:
    source, said = FAILURES[failure]
    where = _installed(tmp_path, monkeypatch, "sklearn", source)
    with pytest.raises(BrokenDependencyError) as refused:
        require("sklearn.linear_model")
    assert str(refused.value) == (
        f"sklearn is installed at {where} but does not import ({said}); "
        "reinstall it with: pip install --force-reinstall scikit-learn"  # a plain install leaves it as it is
    )
    assert isinstance(refused.value, ImportError) and isinstance(refused.value, ConfigurationError)  # a plot can still do without
    assert not isinstance(refused.value, MissingDependencyError)  # it is not "not installed"


def test_a_missing_dependency_that_an_extra_provides_names_that_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _installed(tmp_path, monkeypatch, "sklearn", "import vllm")  # not installed here: the [gpu] extra's
    with pytest.raises(MissingDependencyError, match=r"^'vllm' is not installed \(extra \[gpu\]\)"):
        require("sklearn")


def test_a_package_not_installed_is_still_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.delitem(sys.modules, name)  # imported by an earlier test of the suite: not found now
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn: ModuleNotFoundError, name 'sklearn'
    with pytest.raises(MissingDependencyError, match=r"^'sklearn' is not installed \(extra \[ml\]\)"):
        require("sklearn.linear_model")

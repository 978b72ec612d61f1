"""A torch that is installed but does not import (an ABI mismatch, a missing CUDA library), as a user
meets it: a ``torch`` package first on ``PYTHONPATH`` whose import fails.

Was: ``routers list`` listed its routers as if torch worked, and ``train mlp`` then said ``'torch' is
not installed`` (an ImportError) or printed the import's traceback (an OSError). Now: the listing says
torch was found and not imported (``--check`` imports it and lists its routers unavailable, naming the
import error), and a fit is refused in one line naming the import error and the reinstall command.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FAILURES = {
    "OSError": 'raise OSError("libcudnn.so.9: cannot open shared object file: No such file or directory")',
}


def _agentroute(broken: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(broken), str(Path(__file__).parents[1])]), "COLUMNS": "80"}  # lines wider than it stay whole
    return subprocess.run([sys.executable, "-m", "agentroute", *args], capture_output=True, text=True, timeout=90, env=env)


def _broken_torch(tmp_path: Path, failure: str) -> Path:
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text(FAILURES[failure] + "\n")
    return tmp_path


def test_routers_list_says_torch_was_found_not_that_it_works(tmp_path: Path) -> None:
    broken = _broken_torch(tmp_path, "OSError")
    listed = _agentroute(broken, "routers", "list")
    assert listed.returncode == 0, listed.stderr
    assert f"torch: found at {broken / 'torch'}, not imported (seconds)" in listed.stdout, listed.stdout[-600:]
    assert "routers list --check` imports it now" in listed.stdout
    checked = _agentroute(broken, "routers", "list", "--check")
    assert checked.returncode == 0, checked.stderr
    (line,) = [line for line in checked.stdout.splitlines() if line.startswith("unavailable")]
    names, _, why = line.removeprefix("unavailable ").partition(": ")
    assert {"mlp", "mf", "knn", "graph-router", "stack"} <= set(names.split(", ")), line
    assert why == (
        f"torch is installed at {broken / 'torch'} but does not import (OSError: libcudnn.so.9: cannot open shared "
        "object file: No such file or directory); reinstall it with: pip install --force-reinstall torch==2.13.0"
    )
    assert "torch: found" not in checked.stdout


def test_a_fit_on_a_broken_torch_is_one_line_naming_its_import_error(tmp_path: Path, data_dir: Path) -> None:
    """An OSError (not an ImportError: was a traceback); an ImportError's line is the same rule, checked
    in process by test_optional_broken_dependency (was "'torch' is not installed")."""
    failure = "OSError"
    broken = _broken_torch(tmp_path, failure)
    done = _agentroute(
        broken, "train", "mlp", "--dataset", f"routerbench:{data_dir / 'routerbench'}", "--limit", "20", "--out", str(tmp_path / "out")
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: torch is installed at {broken / 'torch'} but does not import ({failure}: "), line
    assert line.endswith("reinstall it with: pip install --force-reinstall torch==2.13.0"), line
    assert done.stderr.rstrip().endswith(line)

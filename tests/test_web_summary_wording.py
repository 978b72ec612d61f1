"""The words of ``agentroute run web``'s summary, as a user reads them after a real episode."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.browser
def test_one_episode_is_counted_in_the_singular(chromium: None, tmp_path: Path) -> None:
    """The table's title read "web · 1 episodes"."""
    done = subprocess.run(
        [sys.executable, "-m", "agentroute", "run", "web", "--tasks", "click-test", "--episodes", "1",
         "--router", "always-skill", "--memory", f"sqlite:///{tmp_path / 'web.db'}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", "PYTHONPATH": str(Path(__file__).parents[1])},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"· 1 episode\b(?!s)", done.stdout), done.stdout

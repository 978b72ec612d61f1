"""A CLI error line for a bad option costs no memory import: `report` used to import
`agentroute.memory` (seconds of SQLAlchemy) just to ask whether the error was a memory's."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import sys
from agentroute.cli.errors import exit_code_for, report
from agentroute.errors import ConfigurationError
code = report(ConfigurationError("--steps must be >= 1 (got 0)"))
code += exit_code_for(RuntimeError("model down"))
print(code, "agentroute.memory" in sys.modules, "sqlalchemy" in sys.modules)
"""


def test_a_bad_option_error_line_imports_no_memory():
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"})
    assert run.stderr.splitlines() == ["error: --steps must be >= 1 (got 0)"], run.stderr[-2000:]
    assert run.stdout.split() == ["3", "False", "False"]  # exit codes 2 + 1; nothing of the memory loaded


"""`run web` with MINIWOB_CHROME_BINARY / MINIWOB_CHROMEDRIVER naming no executable file (a typo,
a folder): one line naming the variable, exit 2, before any browser starts. Was: a missing path
read "chromium not found: install …" (the variable never named), and a folder or a plain file
passed the check, so each episode's start failed on Selenium's "NoSuchDriverException: Unable to
obtain driver for chrome"."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("miniwob")


def test_run_web_names_a_driver_variable_that_names_a_folder(tmp_path):
    variable, value, why = "MINIWOB_CHROMEDRIVER", str(tmp_path), "is a directory"
    command = [sys.executable, "-m", "agentroute", "run", "web", "--tasks", "click-test", "--episodes", "1",
               "--router", "always-skill", "--memory", "sqlite://"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=60,
                         env={**os.environ, variable: value, "OMP_NUM_THREADS": "1", "COLUMNS": "300"})
    assert run.returncode == 2, run.stderr[-2000:]
    assert run.stderr.splitlines() == [
        f"error: {variable}={value} {why}: point it at an executable file, or unset it to use Debian's on PATH "
        "(`sudo apt-get install chromium chromium-driver`)"
    ]


@pytest.mark.parametrize(("variable", "why"), [("MINIWOB_CHROMEDRIVER", "is not executable"),
                                               ("MINIWOB_CHROME_BINARY", "does not exist")])
def test_a_variable_naming_no_executable_is_named(tmp_path, monkeypatch, variable, why):
    from agentroute.web.env import BrowserNotFoundError, find_chromium

    path = tmp_path / "browser"
    if why == "is not executable":
        path.write_text("")
    monkeypatch.setenv(variable, str(path))
    with pytest.raises(BrowserNotFoundError, match=f"^{variable}={path} {why}: "):
        find_chromium()


def test_variables_from_a_dotenv_file_may_start_with_a_tilde(tmp_path, monkeypatch):
    # a shell expands `~` in `export X=~/…`; a .env file loaded by python-dotenv or docker does not
    from agentroute.web.env import find_chromium

    for name in ("chrome", "driver"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MINIWOB_CHROME_BINARY", "~/chrome")
    monkeypatch.setenv("MINIWOB_CHROMEDRIVER", "~/driver")
    assert find_chromium() == (str(tmp_path / "chrome"), str(tmp_path / "driver"))

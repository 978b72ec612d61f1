"""Ctrl-C while a local model is still loading ends ``ask`` and ``run`` at once (exit 130, one line).

The load is held open deterministically: the card names a hub model and ``HF_ENDPOINT`` is a
loopback socket that accepts the download's connection and never answers. The signal goes once
that connection arrives, i.e. while the load is in progress. Before, ``asyncio.run`` waited for
the load thread (the loop's default executor) and ``run`` for the preload, whatever the signal.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HUB_TIMEOUT_S = 120  # the download would wait this long for an answer: far past the test's limit


@pytest.mark.parametrize("command", [["ask", "Who wrote Hamlet?"], ["run", "qa", "--input", "q.jsonl"]])
def test_ctrl_c_while_the_model_loads_exits_at_once(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "q.jsonl").write_text('"Who wrote Hamlet?"\n')
    (tmp_path / "pool.yaml").write_text(
        "models:\n  - {id: tiny, backend: local, model: agentroute-test/never-answered, "
        "input_price: 0.1, output_price: 0.1}\n"
    )
    with socket.create_server(("127.0.0.1", 0)) as hub:
        hub.settimeout(60)
        env = {
            **os.environ, "PYTHONPATH": str(ROOT), "HF_ENDPOINT": f"http://127.0.0.1:{hub.getsockname()[1]}",
            "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0",
            "HF_HUB_ETAG_TIMEOUT": str(HUB_TIMEOUT_S), "HF_HUB_DOWNLOAD_TIMEOUT": str(HUB_TIMEOUT_S),
        }  # fmt: skip
        args = [*command, "--pool", "pool.yaml", "--memory", f"sqlite:///{tmp_path / 'm.db'}"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "agentroute", *args], cwd=tmp_path, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            connection, _ = hub.accept()  # the load asks the hub for the model's files
            with connection:
                proc.send_signal(signal.SIGINT)
                sent = time.monotonic()
                _, err = proc.communicate(timeout=30)
                waited = time.monotonic() - sent
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.splitlines()[-1:] != [], err
    if command[0] == "ask":
        assert err.strip() == "interrupted", err
    assert waited < 15, f"exited {waited:.1f} s after Ctrl-C"

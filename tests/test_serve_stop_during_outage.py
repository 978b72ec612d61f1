"""``agentroute serve --memory postgresql://…`` stopped with Ctrl-C while its database does not
answer: it exits within ``--drain-s`` for the requests and ``--drain-s`` more for the memory's
refused writes, naming what it lost on one line (was: 30 s more, whatever ``--drain-s`` said: past
``docker stop``'s 10 s, the container was killed). The database "goes down" behind a loopback proxy
that drops every connection (:class:`Cuttable`), so the session's PostgreSQL server stays up.

The stop is timed as the server shows it: from its ``Shutting down`` line to its last line (the
writes it lost), each line timed as it comes (:class:`Lines`), against ``2 × --drain-s`` and a
margin for its own work, so that a loaded machine's slow start of the signal handler and slow exit
of the interpreter are not counted (a fixed 3 s from the signal to the exit failed at 4 s under load)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from typing import Any

import openai
import pytest

from tests.fixtures_adversary import Adversary
from tests.fixtures_sdk import close_sdk_clients, sdk_client  # noqa: F401
from tests.test_serve_user_paths import AGENTROUTE, free_port, wait_up

pytestmark = pytest.mark.postgres
DRAIN_S = 0.5
MARGIN_S = 2.0
"""The server's own work in its stop, beside its waits (under 0.1 s on an idle machine)."""


class Lines:
    """A process's output lines, each with the :func:`time.monotonic` it came at (read on a thread
    as they are written)."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._reader.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append((time.monotonic(), line))

    def join(self) -> str:
        """The whole output, once the process has closed it."""
        self._reader.join(timeout=10)
        return "".join(line for _, line in self.lines)

    def when(self, text: str, *, last: bool = False) -> float:
        """When the first (or ``last``) line holding ``text`` came."""
        times = [at for at, line in self.lines if text in line]
        assert times, (text, self.join()[-2000:])
        return times[-1] if last else times[0]


class Proxy:
    """A TCP proxy on loopback in front of ``port`` (:attr:`port`: its own): each connection's bytes
    go through :meth:`forward`, both ways; :meth:`close` stops it taking new connections."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def forward(self, data: bytes, sink: socket.socket, upstream: bool, state: dict[str, bool]) -> bool:
        """Passes ``data`` on to ``sink`` (towards the server when ``upstream``); ``False`` closes
        the connection. ``state`` is the connection's, shared by its two ways."""
        sink.sendall(data)
        return True

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            self.sockets += [client, server]
            state: dict[str, bool] = {}
            for source, sink, upstream in ((client, server, True), (server, client, False)):
                threading.Thread(target=self._pipe, args=(source, sink, upstream, state), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, upstream: bool, state: dict[str, bool]) -> None:
        try:
            while (data := source.recv(65536)) and self.forward(data, sink, upstream, state):
                pass
        except OSError:
            pass
        for end in (source, sink):
            end.close()


class Cuttable(Proxy):
    """A :class:`Proxy`; :meth:`cut` drops every connection and refuses new ones; once
    :attr:`stalled`, nothing goes through any more, nor is any connection closed (a network that
    drops packets: a reply waited for never comes)."""

    stalled = False

    def forward(self, data: bytes, sink: socket.socket, upstream: bool, state: dict[str, bool]) -> bool:
        if not self.stalled:
            sink.sendall(data)
        return True

    def cut(self) -> None:
        for end in [self._listener, *self.sockets]:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)  # wakes its blocked accept/recv (close() alone would not)


def test_ctrl_c_during_a_memory_outage_exits_within_drain_s(postgres_url: str, tmp_path) -> None:
    proxy = Cuttable(int(postgres_url.rsplit(":", 1)[1].split("/")[0]))
    memory = postgres_url.replace(postgres_url.rsplit("@", 1)[1].split("/")[0], f"127.0.0.1:{proxy.port}")
    with Adversary() as provider, contextlib.closing(proxy):  # its listener: cut() only shuts it down
        pool = tmp_path / "pool.yaml"
        pool.write_text(
            f"models:\n  - id: small\n    backend: openai\n    model: honest-small\n    base_url: {provider.url}\n"
            "    input_price: 0.1\n    output_price: 0.2\n    max_tokens: 8\n"
        )
        port = free_port()
        process = subprocess.Popen(
            [AGENTROUTE, "serve", "--port", str(port), "--pool", str(pool), "--router", "cheapest",
             "--memory", memory, "--memory-wait-s", "0.3", "--drain-s", str(DRAIN_S)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        assert process.stdout is not None
        lines = Lines(process.stdout)
        try:
            wait_up(process, port)
            client = sdk_client(f"http://127.0.0.1:{port}/v1")  # closed at the test's end: its connection to the server
            ask = {"model": "router", "messages": [{"role": "user", "content": "hi"}]}
            assert client.chat.completions.create(**ask).choices[0].message.content
            proxy.cut()
            with pytest.raises(openai.APIStatusError) as refused:
                client.chat.completions.create(**ask)
            assert refused.value.status_code == 503
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)  # was 30 s and more after the stop's waits
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            out = lines.join()
            process.stdout.close()
    stop = lines.when("error: ", last=True) - lines.when("Shutting down")  # its lost writes are its last line
    assert stop < 2 * DRAIN_S + MARGIN_S, (stop, out[-2000:])
    assert "memory write(s) failed" in out and "Traceback" not in out, out[-2000:]

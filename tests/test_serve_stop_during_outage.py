"""``agentroute serve --memory postgresql://…`` stopped with Ctrl-C while its database does not
answer: it exits within ``--drain-s`` for the requests and ``--drain-s`` more for the memory's
refused writes, naming what it lost on one line (was: 30 s more, whatever ``--drain-s`` said: past
``docker stop``'s 10 s, the container was killed). The database "goes down" behind a loopback proxy
that drops every connection (:class:`Cuttable`), so the session's PostgreSQL server stays up."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import threading
import time

import openai
import pytest

from tests.fixtures_adversary import Adversary
from tests.fixtures_sdk import close_sdk_clients, sdk_client  # noqa: F401
from tests.test_serve_user_paths import AGENTROUTE, free_port, wait_up

pytestmark = pytest.mark.postgres


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
             "--memory", memory, "--memory-wait-s", "0.3", "--drain-s", "0.5"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            wait_up(process, port)
            client = sdk_client(f"http://127.0.0.1:{port}/v1")  # closed at the test's end: its connection to the server
            ask = {"model": "router", "messages": [{"role": "user", "content": "hi"}]}
            assert client.chat.completions.create(**ask).choices[0].message.content
            proxy.cut()
            with pytest.raises(openai.APIStatusError) as refused:
                client.chat.completions.create(**ask)
            assert refused.value.status_code == 503
            started = time.monotonic()
            process.send_signal(signal.SIGINT)
            out = process.communicate(timeout=15)[0]
            took = time.monotonic() - started
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert took < 3.0, (took, out[-2000:])  # was 30 s and more
    assert "memory write(s) failed" in out and "Traceback" not in out, out[-2000:]

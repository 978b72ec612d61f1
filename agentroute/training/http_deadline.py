"""One deadline for a whole HTTP request (connection, headers, body), not urllib's per-read timeout.

urllib's ``timeout`` bounds each socket read, so a server that trickles its reply (a byte a second)
holds the caller for as long as it keeps sending. :func:`read_within` shuts the request's socket
down when its time is spent, ending whatever read waits there.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable


def read_within(request: urllib.request.Request, wait_s: float) -> bytes:
    """The body of ``request``'s reply, read within ``wait_s`` seconds from now: past them, a
    :class:`TimeoutError`. An error status is urllib's :class:`~urllib.error.HTTPError`, its body
    (the server's message) read within the deadline too."""
    deadline = _Deadline(time.monotonic() + wait_s)
    opener = urllib.request.build_opener(_DeadlineHTTPHandler(deadline), _DeadlineHTTPSHandler(deadline))
    error: urllib.error.HTTPError | None = None
    try:
        try:
            with opener.open(request, timeout=wait_s) as reply:  # a URL the user gave
                body: bytes = reply.read()
        except urllib.error.HTTPError as exc:
            with exc:
                body, error = exc.read(), exc
    except Exception:
        if deadline.expired:
            raise TimeoutError(f"no reply within {wait_s:.3g} s") from None
        raise
    finally:
        deadline.stop()
    if deadline.expired:  # the socket was shut down as the last byte came: what came may be cut
        raise TimeoutError(f"no reply within {wait_s:.3g} s")
    if error is not None:
        raise urllib.error.HTTPError(error.url, error.code, error.msg, error.headers, io.BytesIO(body))
    return body


class _Deadline:
    """Shuts down the sockets of one request at ``at`` (:func:`time.monotonic`), ending a read that
    waits there; ``expired`` then. One timer thread, stopped by :meth:`stop`."""

    def __init__(self, at: float):
        self.expired = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(at - time.monotonic(), 0.0), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.append(sock)
            if not self.expired:
                return
        self._shut(sock)  # connected just as the time ran out

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            socks = list(self._socks)
        for sock in socks:
            self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._timer.cancel()


def _watched(
    base: type[http.client.HTTPConnection], deadline: _Deadline
) -> Callable[..., http.client.HTTPConnection]:
    """A factory of ``base`` connections whose sockets ``deadline`` watches (kept there: urllib drops
    the connection's own reference once the headers are read)."""

    class Watched(base):  # type: ignore[valid-type,misc]
        def connect(self) -> None:
            super().connect()
            deadline.watch(self.sock)

    return Watched


class _DeadlineHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline):
        super().__init__()
        self.deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_watched(http.client.HTTPConnection, self.deadline), req)


class _DeadlineHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline):
        super().__init__()
        self.deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_watched(http.client.HTTPSConnection, self.deadline), req, context=self._context)  # type: ignore[attr-defined]

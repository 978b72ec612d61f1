"""Whether a task page is plainly missing (an HTTP error status, no such file), asked beside the
browser's start so that a ``--miniwob-url`` folder holding no MiniWoB task fails at once instead of
after the 10 s wait for the task's start screen.

The HTTP request runs in a daemon thread of its own that nothing waits for: the start-screen wait
reads its answer when there is one, and a stop (Ctrl-C, SIGTERM) never waits on it.
"""

from __future__ import annotations

import os
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request

#: Seconds the HTTP request may take; no answer by then is no verdict (the browser's load decides).
PROBE_TIMEOUT_S = 10.0

#: The statuses that say the page is not there. Any other error (403 to Python's User-Agent from a
#: CDN's bot filter, 401, 429, a proxy's 5xx) is no verdict: the browser may still load the task.
GONE = frozenset({404, 410})


class TaskPageProbe:
    """Asks once whether the page at ``url`` exists: a GET of an ``http(s)://`` page (its status,
    redirects followed) in a thread of its own, a ``file://`` page's file at once.

    :attr:`missing` is why the page is plainly no task page (``"HTTP 404"``, ``"HTTP 410"``, ``"no such file"``),
    ``None`` while the answer is pending or when the page may be one. :attr:`untrusted` is why
    Python does not trust the server's certificate: no verdict (the browser may trust it), but the
    likely reason when no task shows."""

    def __init__(self, url: str, *, timeout_s: float = PROBE_TIMEOUT_S):
        self.url = url
        self.missing: str | None = None
        self.untrusted: str | None = None
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "file":
            if not os.path.isfile(urllib.request.url2pathname(parts.path)):
                self.missing = "no such file"
        elif parts.scheme in ("http", "https"):
            threading.Thread(
                target=self._ask, args=(timeout_s,), name="task-page-status", daemon=True
            ).start()

    def _ask(self, timeout_s: float) -> None:
        try:
            with opener_for(self.url).open(self.url, timeout=timeout_s):
                pass
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code in GONE:
                self.missing = f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:  # refused, timed out, a bad answer: the browser's load says why
            cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            if isinstance(cause, ssl.SSLCertVerificationError):  # urlopen wraps it in a URLError
                self.untrusted = cause.verify_message or "verification failed"


def opener_for(url: str) -> urllib.request.OpenerDirector:
    """How ``url`` is asked over HTTP: a loopback address directly, as Chromium loads it, never through
    an ``http_proxy`` of the environment (a corporate machine's, with no ``no_proxy`` for loopback);
    any other as the environment says."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost" or host.startswith("127.") or host == "::1":
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()

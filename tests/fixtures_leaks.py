"""Resources a test module leaves unclosed (a plugin of this suite, listed in conftest.py).

An unclosed socket, file or event loop left as garbage in a reference cycle warns (ResourceWarning)
only when the garbage collector frees it: in whichever later test that happens, naming nothing of
the module that leaked (an earlier module's loopback sockets once failed tests/test_embed_export.py).
Here each module's garbage is collected at its end, and what it left unclosed is a
:class:`LeakedResource` warning at its last test; ``-W error::tests.fixtures_leaks.LeakedResource``
makes it fail there. Only a module that ends with a descriptor open that it did not begin with is
collected (listing ``/proc/self/fd`` takes microseconds; a full collection 0.1–1 s).
"""

from __future__ import annotations

import gc
import os
import socket
import warnings
from collections.abc import Iterator

import pytest


class LeakedResource(UserWarning):
    """A test module left a socket, file or event loop unclosed: a client, session or server that
    the test or the product code it ran opened and never closed."""


def connections_to(port: int) -> int:
    """This process's IPv4 sockets connected to ``port`` on the other end (a pool's client ends of
    its connections to a loopback server)."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:  # closed since the listing
            continue
        with sock:
            try:
                count += sock.family == socket.AF_INET and sock.getpeername()[1] == port
            except OSError:  # not connected
                pass
    return count


def open_descriptors() -> set[str]:
    """This process's open file descriptors and what each points at (``"12 socket:[4711]"``); empty
    where there is no ``/proc``."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return set()
    found = set()
    for name in names:
        try:
            found.add(f"{name} {os.readlink(f'/proc/self/fd/{name}')}")
        except OSError:  # the listing's own descriptor, closed by now
            pass
    return found


@pytest.fixture(scope="module", autouse=True)
def _no_leaked_resources(request: pytest.FixtureRequest) -> Iterator[None]:
    before = open_descriptors()
    yield
    if not open_descriptors() - before:
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    leaked = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    if leaked:
        kinds = sorted({message.split(" fd=")[0].split(" at 0x")[0] for message in leaked})  # one line per kind
        warnings.warn(LeakedResource(f"{request.node.name} left {len(leaked)} unclosed: {'; '.join(kinds)}"), stacklevel=1)

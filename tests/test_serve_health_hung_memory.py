"""``GET /health`` of ``agentroute serve`` whose PostgreSQL memory stops answering without closing
its connections (a network dropping packets): a 503 naming the memory ``unreachable`` within
``memory_wait_s`` (was a 200 ``ok``), and one probe thread waiting on the hung connection, not one
per health check (which would use up the event loop's default thread pool)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool
from tests.fixtures_adversary import Adversary
from tests.test_serve_stop_during_outage import Cuttable

pytest.importorskip("fastapi")
from agentroute.serve import ServerThread  # noqa: E402

pytestmark = pytest.mark.postgres
WAIT_S = 0.4  # the server's memory_wait_s


def health(server: ServerThread) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(server.url.removesuffix("/v1") + "/health", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_health_names_a_hung_memory_unreachable_with_one_probe(postgres_url: str) -> None:
    proxy = Cuttable(int(postgres_url.rsplit(":", 1)[1].split("/")[0]))
    memory = postgres_url.replace(postgres_url.rsplit("@", 1)[1].split("/")[0], f"127.0.0.1:{proxy.port}")
    with Adversary() as provider:
        card = ModelCard(id="small", backend="openai", model="honest-small", base_url=provider.url,
                         input_price=0.1, output_price=0.2, max_tokens=8)  # fmt: skip
        server = ServerThread(ModelPool([card]), router="cheapest", memory=memory, memory_wait_s=WAIT_S).start()
        try:
            assert health(server)[0] == 200
            threads = threading.active_count()
            proxy.stalled = True
            for _ in range(3):
                started = time.monotonic()
                code, body = health(server)
                assert code == 503 and body["memory"]["state"] == "unreachable", body
                assert f"did not answer within {WAIT_S:g}s" in body["memory"]["error"], body
                assert time.monotonic() - started < WAIT_S + 1.0
            assert threading.active_count() <= threads + 1  # the one probe still waiting
        finally:
            proxy.cut()  # the hung connection ends: the probe's thread with it
            server.stop()

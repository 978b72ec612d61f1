"""``tcp_user_timeout`` is a libpq 12 option: an older libpq refuses every connection given it
("invalid connection option"), so a memory adds it only where the installed libpq knows it."""

from __future__ import annotations

import psycopg
import pytest

from agentroute.memory.engine import TCP_KEEPALIVES, tcp_settings


def test_the_installed_libpq_gets_every_tcp_setting_it_knows() -> None:
    version = psycopg.pq.version()
    settings = tcp_settings(version)
    assert ("tcp_user_timeout" in settings) == (version >= 120_000)
    assert {k: v for k, v in settings.items() if k != "tcp_user_timeout"} == {
        k: v for k, v in TCP_KEEPALIVES.items() if k != "tcp_user_timeout"
    }


@pytest.mark.parametrize(("version", "has_it"), [(110_022, False), (100_023, False), (120_000, True), (170_002, True)])
def test_a_libpq_before_12_is_not_given_tcp_user_timeout(version: int, has_it: bool) -> None:
    settings = tcp_settings(version)
    assert ("tcp_user_timeout" in settings) is has_it
    assert settings["keepalives_idle"] == 5  # the keepalives are older than libpq 9: always given


@pytest.mark.postgres
def test_an_older_libpqs_settings_open_a_real_connection(postgres_url: str) -> None:
    """Those given to a libpq 11 are ones libpq accepts (the refusal was the option, not the rest)."""
    settings = tcp_settings(110_022)
    with psycopg.connect(postgres_url.replace("postgresql+psycopg://", "postgresql://"), **settings) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        assert conn.info.get_parameters().get("tcp_user_timeout") is None


@pytest.mark.postgres
@pytest.mark.parametrize("version", [110_022, 160_002])
def test_a_memorys_connections_carry_what_its_libpq_takes(
    postgres_url: str, version: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The memory's engine asks the installed libpq's version (here an older one's) before connecting."""
    from agentroute.memory.engine import create_memory_engine

    monkeypatch.setattr(psycopg.pq, "version", lambda: version)
    engine = create_memory_engine(postgres_url)
    try:
        raw = engine.raw_connection()
        try:
            parameters = raw.driver_connection.info.get_parameters()  # type: ignore[union-attr]
        finally:
            raw.close()
    finally:
        engine.dispose()
    assert parameters.get("keepalives_idle") == "5"
    assert ("tcp_user_timeout" in parameters) is (version >= 120_000)

"""A ``--memory``/``--from`` PostgreSQL URL the CLI cannot connect to, on real servers: one line
naming the URL (password hidden) and the reason, exit code 2 (fix your input), no traceback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from agentroute.cli import app
from agentroute.memory.pgserver import PostgresServer, find_bindir, free_port

runner = CliRunner()

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def password_server() -> Iterator[PostgresServer]:
    """A server of its own that checks passwords (the session's trusts every connection)."""
    pytest.importorskip("psycopg")
    if find_bindir() is None:
        pytest.skip("PostgreSQL server binaries not found: apt-get install postgresql")
    with PostgresServer(durable=False, password="right-horse") as server:
        yield server


def _one_error_line(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert result.stdout == "", result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot open the memory at postgresql+psycopg://"), result.stderr
    assert "Traceback" not in result.stderr and "sqlalche.me" not in result.stderr
    return lines[0]


def test_a_wrong_password_is_one_line_with_the_password_hidden(password_server):
    url = sa.make_url(password_server.url).set(password="wrong-battery").render_as_string(hide_password=False)
    line = _one_error_line(["memory", "stats", "--memory", url])
    assert f"postgres:***@127.0.0.1:{password_server.port}/postgres" in line
    assert 'password authentication failed for user "postgres"' in line
    assert "wrong-battery" not in line and "right-horse" not in line
    ok = runner.invoke(app, ["memory", "stats", "--memory", password_server.url])  # the right one opens
    assert ok.exit_code == 0, ok.output


def test_a_port_nobody_listens_on_is_one_line(tmp_path):
    url = f"postgresql://me:secret@127.0.0.1:{free_port()}/memory"
    for args in (["memory", "stats", "--memory", url], ["train", "knn", "--from", url, "--out", str(tmp_path / "knn")],
                 ["ask", "what?", "--router", "cheapest", "--memory", url]):  # fmt: skip
        line = _one_error_line(args)
        assert "me:***@127.0.0.1" in line and "secret" not in line, line
        assert "Connection refused" in line, line
    assert not (tmp_path / "knn").exists()


def test_a_database_or_role_the_server_lacks_is_one_line(postgres_url):
    base = sa.make_url(postgres_url)
    line = _one_error_line(["memory", "stats", "--memory", base.set(database="no_such_db").render_as_string(hide_password=False)])
    assert 'database "no_such_db" does not exist' in line
    line = _one_error_line(["memory", "stats", "--memory", base.set(username="nobody").render_as_string(hide_password=False)])
    assert 'role "nobody" does not exist' in line


def test_eval_from_an_unreachable_memory_is_one_line():
    """`agentroute eval --from URL` (counterfactual estimates) printed psycopg's multi-line message."""
    url = f"postgresql://me:secret@127.0.0.1:{free_port()}/memory"
    line = _one_error_line(["eval", "--from", url, "--routers", "cheapest"])
    assert "me:***@127.0.0.1" in line and "secret" not in line and "Connection refused" in line, line

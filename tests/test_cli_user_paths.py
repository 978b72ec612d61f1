"""The CLI where a new user stands: values it cannot use are one ``error:`` line and exit code 2,
before any model loads, never a traceback."""

from __future__ import annotations

from typer.testing import CliRunner

from agentroute.cli import app

runner = CliRunner()


def _refused(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.stderr


def test_a_sqlite_memory_whose_folder_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "notes").write_text("a file where the memory's folder would go")
    url = f"sqlite:///{tmp_path / 'notes' / 'runs' / 'memory.db'}"
    (tmp_path / "in.jsonl").write_text('{"query": "what?"}\n')
    for args in (["ask", "what?", "--router", "cheapest", "--memory", url],
                 ["run", "qa", "--input", str(tmp_path / "in.jsonl"), "--router", "cheapest", "--memory", url]):  # fmt: skip
        err = _refused(args)
        assert err.startswith(f"error: memory URL '{url}': cannot create its folder {tmp_path / 'notes' / 'runs'}"), err
        assert f"({tmp_path / 'notes'} is a file, not a folder)" in err
        assert len(err.splitlines()) == 1, err


def test_serve_refuses_a_port_out_of_range():
    err = _refused(["serve", "--port", "99999"])
    assert "--port" in err and "65535" in err


def test_ask_refuses_an_empty_question(tmp_path):
    err = _refused(["ask", "  ", "--memory", f"sqlite:///{tmp_path / 'memory.db'}"])
    assert err == "error: the question is empty\n"
    assert not (tmp_path / "memory.db").exists()


def test_an_error_on_a_terminal_is_its_text_after_a_coloured_label():
    """rich highlights numbers, paths and brackets on a terminal: an error is printed as written."""
    import io

    from rich.console import Console

    from agentroute.cli.errors import print_error

    out = io.StringIO()
    print_error("--budget-usd: must be non-negative (got -1.0) in /tmp/x [ml]", Console(file=out, force_terminal=True))
    text = out.getvalue()
    assert text.startswith("\x1b[1;31merror:\x1b[0m ")
    assert text.removeprefix("\x1b[1;31merror:\x1b[0m ") == "--budget-usd: must be non-negative (got -1.0) in /tmp/x [ml]\n"

"""The SQL memory as a user drives it: a mistake is a clear error, never a memory that stops reading."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentroute.errors import ConfigurationError
from agentroute.memory import MemoryStoreError, MemoryWriteError, SQLMemory
from agentroute.types import Agent, Step, Task

SMALL = Agent(role="executor", model="small", strategy="direct")


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'memory.db'}"


def test_a_task_finished_with_a_bad_status_is_a_write_error_not_a_poisoned_memory(tmp_path: Path) -> None:
    memory = SQLMemory(_url(tmp_path), flush_interval_s=0.001)
    good, bad = Task(query="good"), Task(query="bad")
    for task in (good, bad):
        memory.start_task(task)
    memory.flush()
    good.status = "done"
    bad.status = "success"  # pydantic does not check assignments on Task
    memory.finish_task(good)
    memory.finish_task(bad)
    with pytest.raises(MemoryWriteError, match="status") as info:
        memory.flush()
    assert info.value.payloads == [bad]
    # every read still works (was: pydantic ValidationError on each read of the stored 'success')
    assert [t.task.query for t in memory.trajectories()] == ["good"]
    got = memory.get_task(bad.id)
    assert got is not None and got.task.status == "running"
    memory.close()
    with SQLMemory(_url(tmp_path)) as again:
        assert {t.task.status for t in again.trajectories(status=None)} == {"done"}


def test_a_step_with_a_bad_status_is_a_write_error(tmp_path: Path) -> None:
    with SQLMemory(_url(tmp_path), flush_interval_s=0.001) as memory:
        task = Task(query="q")
        memory.start_task(task)
        step = Step(task_id=task.id, index=0, stage="answer", agent=SMALL)
        step.status = "weird"
        memory.record_step(step)
        with pytest.raises(MemoryWriteError, match="status"):
            memory.flush()
        got = memory.get_task(task.id)
        assert got is not None and got.steps == []


@pytest.mark.parametrize("score", [float("nan"), float("inf"), "abc", None, True])
def test_feedback_that_is_not_a_finite_number_is_refused_at_the_call(tmp_path: Path, score: object) -> None:
    with SQLMemory(_url(tmp_path)) as memory:
        task = Task(query="q")
        memory.start_task(task)
        with pytest.raises(ConfigurationError, match="score"):
            memory.add_feedback(task.id, score)  # type: ignore[arg-type]
        memory.flush()  # nothing was queued: no MemoryWriteError later
        assert memory.stats()["feedback"] == 0


@pytest.mark.parametrize("limit", [-1, 2.5, "2", True])
def test_a_bad_limit_is_refused(tmp_path: Path, limit: object) -> None:
    with SQLMemory(_url(tmp_path)) as memory:
        with pytest.raises(ConfigurationError, match="limit"):
            memory.trajectories(limit=limit)  # type: ignore[arg-type]  # -1 returned [] silently


def test_since_must_be_a_datetime(tmp_path: Path) -> None:
    with SQLMemory(_url(tmp_path)) as memory:
        with pytest.raises(ConfigurationError, match="since"):
            memory.trajectories(since="2000-01-01")  # type: ignore[arg-type]  # was sqlalchemy StatementError


def test_limit_zero_and_paging(tmp_path: Path) -> None:
    with SQLMemory(_url(tmp_path)) as memory:
        for i in range(5):
            task = Task(query=f"q{i}", status="done")
            memory.start_task(task)
            memory.finish_task(task)
        assert memory.trajectories(limit=0) == []
        assert [t.task.query for t in memory.trajectories(limit=3)] == ["q0", "q1", "q2"]


def test_use_after_close_is_a_clear_error(tmp_path: Path) -> None:
    memory = SQLMemory(_url(tmp_path))
    memory.close()
    memory.close()  # twice is fine
    with pytest.raises(MemoryStoreError, match="closed"):
        memory.get_task("x")
    with pytest.raises(MemoryStoreError, match="closed"):
        memory.add_feedback("x", 1.0)


def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with SQLMemory("sqlite:///rel.db") as memory:
        assert memory.get_task("unknown") is None
    assert (tmp_path / "rel.db").is_file()
    with SQLMemory(f"sqlite:///{tmp_path}/no/such/folder/m.db"):
        pass
    assert (tmp_path / "no" / "such" / "folder" / "m.db").is_file()
    with pytest.raises(ConfigurationError, match="sqlite:///"):
        SQLMemory("plain.db")


def _at_revision(url: str, revision: str) -> None:
    from tests.fixtures_old_memory import memory_at

    with memory_at(url, revision):
        pass


def test_a_memory_written_by_the_oldest_schema_opens_with_its_data(tmp_path: Path) -> None:
    from agentroute.memory.migrate import current_revision, head_revision

    url = _url(tmp_path)
    _at_revision(url, "0001")
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO tasks (id, query, graph, status, cost_usd, meta, created_at) "
            "VALUES ('t1', 'q', 'g', 'done', 0.1, '{}', '2025-01-01 00:00:00.000000')"
        )
    with SQLMemory(url) as memory:
        got = memory.get_task("t1")
        assert got is not None and got.task.status == "done" and got.task.cost_usd == 0.1
        assert current_revision(memory.engine) == head_revision()
    engine.dispose()


def test_a_memory_written_by_a_newer_agentroute_is_named_not_an_alembic_traceback(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from agentroute.memory.migrate import VERSION_TABLE

    url = _url(tmp_path)
    SQLMemory(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE {VERSION_TABLE} SET version_num = '0099_future'")
    engine.dispose()
    # was alembic's CommandError "Can't locate revision identified by '0099_future'"
    with pytest.raises(MemoryStoreError, match="0099_future.*newer agentroute"):
        SQLMemory(url)
    with SQLMemory(url, migrate=False) as memory:  # still readable by hand
        assert memory.get_task("x") is None


def test_a_sqlite_path_under_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with SQLMemory("sqlite:///~/runs/memory.db") as memory:
        assert memory.get_task("x") is None
    assert (tmp_path / "home" / "runs" / "memory.db").is_file()
    assert not (work / "~").exists()  # was: a folder literally named '~' in the working directory


def test_a_sqlite_url_naming_a_folder_says_so(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    # was MemoryStoreError "(sqlite3.OperationalError) unable to open database file"
    with pytest.raises(ConfigurationError, match="names a folder.*runs/memory.db"):
        SQLMemory(f"sqlite:///{tmp_path / 'runs'}")


@pytest.mark.parametrize("status", ["success", ["done", "succeeded"]])
def test_a_status_filter_that_no_task_can_have_is_refused(tmp_path: Path, status: object) -> None:
    with SQLMemory(_url(tmp_path)) as memory:
        task = Task(query="q", status="done")
        memory.start_task(task)
        with pytest.raises(ConfigurationError, match="not a task status.*budget_exhausted"):
            memory.trajectories(status=status)  # type: ignore[arg-type]  # returned [] silently
        assert len(memory.trajectories(status="done")) == 1


def test_a_router_state_that_is_not_a_mapping_is_refused_before_it_is_stored(tmp_path: Path) -> None:
    with SQLMemory(_url(tmp_path)) as memory:
        memory.save_router_state("r", {"w": [1.0, 2.0]})
        with pytest.raises(ConfigurationError, match="router state"):
            memory.save_router_state("r", [1, 2])  # type: ignore[arg-type]  # was stored; every load then raised
        assert memory.load_router_state("r") == {"w": [1.0, 2.0]}


def test_a_postgres_scheme_url_means_postgresql_with_psycopg() -> None:
    from agentroute.memory.engine import resolve_url

    # the scheme of DATABASE_URL on Heroku, Render, Supabase...: was "unsupported memory URL"
    assert resolve_url("postgres://u:pw@db.example:5432/app").drivername == "postgresql+psycopg"
    # a URL pasted or read from a file with surrounding blanks: was "invalid memory URL"
    assert resolve_url("  sqlite:///runs/m.db\n").database == "runs/m.db"


@pytest.mark.postgres
def test_a_postgres_scheme_url_opens_a_real_server(postgres_url: str) -> None:
    import sqlalchemy as sa

    url = sa.make_url(postgres_url).set(drivername="postgres").render_as_string(hide_password=False)
    with SQLMemory(url) as memory:
        assert memory.url.startswith("postgresql+psycopg://")
        assert memory.get_task("unknown") is None


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"flush_interval_s": float("inf")}, "flush_interval_s"),  # killed the writer thread: writes lost
        ({"flush_interval_s": float("nan")}, "flush_interval_s"),
        ({"flush_interval_s": "0.1"}, "flush_interval_s"),  # was TypeError from a comparison
        ({"batch_size": 2.5}, "batch_size"),
        ({"batch_size": "10"}, "batch_size"),
        ({"max_pending": None}, "max_pending"),
    ],
)
def test_bad_writer_options_are_refused_at_open(tmp_path: Path, options: dict, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        SQLMemory(_url(tmp_path), **options)


def test_a_long_flush_interval_still_commits_on_flush(tmp_path: Path) -> None:
    with SQLMemory(_url(tmp_path), flush_interval_s=86_400.0) as memory:
        task = Task(query="q")
        memory.start_task(task)
        memory.flush()
        assert memory.get_task(task.id) is not None


def test_a_write_error_from_a_real_failed_write_survives_pickling(tmp_path: Path) -> None:
    import pickle

    with SQLMemory(_url(tmp_path), flush_interval_s=0.001) as memory:
        task = Task(query="q")
        memory.start_task(task)
        memory.flush()
        task.status = "success"  # type: ignore[assignment]
        memory.finish_task(task)
        with pytest.raises(MemoryWriteError) as info:
            memory.flush()
    # as a process pool sends it back to its parent: was "ValueError: not enough values to unpack"
    again = pickle.loads(pickle.dumps(info.value))
    assert isinstance(again, MemoryWriteError) and str(again) == str(info.value)
    assert [t.id for t in again.payloads] == [task.id]

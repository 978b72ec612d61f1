"""A fresh install with only the core dependencies, used the way a user would.

The session builds agentroute's wheel once and installs it (``pip install --no-deps --no-index``)
into a new virtual environment under the pytest tmp dir. The core dependencies come from this
environment, offline: every distribution in the closure of agentroute's core ``Requires-Dist`` is
linked into one folder that the new environment reads through a ``.pth`` file. Nothing from the
extras (torch, pandas, litellm, psycopg, fastapi…) is there: the user paths below meet them
really missing, not mocked.

Then, as that user: the version, every subcommand's ``--help``, each command that needs an extra
(one ``error:`` line naming the extra and the exact ``pip install`` command, exit code 2, no
traceback), and what needs no extra (a pool of OpenAI-compatible endpoints on loopback, the SQLite
memory, budgets). The wheel's contents are checked too: package data in, tests out.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from importlib.util import cache_from_source
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.fixtures_reply_server import POLL_S

ROOT = Path(__file__).resolve().parents[1]
VERSION = metadata.version("agentroute")
TORCH_FIRST = "pip install torch==2.13.0 && pip install 'agentroute[ml]'"


# -- the core-only environment ------------------------------------------------------------------
def _core_closure() -> list[metadata.Distribution]:
    """The installed distributions agentroute's core requirements need (no extras), transitively."""
    seen: dict[str, metadata.Distribution] = {}
    todo = [Requirement(r) for r in metadata.requires("agentroute") or []]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:  # an optional backport this Python does not need
            continue
        seen[name] = dist
        todo.extend(Requirement(r) for r in dist.requires or [])
    return list(seen.values())


def _link_core_deps(target: Path) -> int:
    """Link every file the core closure's distributions installed into ``target``, one by one.

    File by file, not folder by folder: namespace packages are shared (``langgraph/checkpoint/``
    holds the files of ``langgraph-checkpoint`` *and* of the ``checkpoint`` extra's savers), and
    only the core's files may be seen. A module's compiled bytecode comes with it, as a pip install
    leaves it: without it each command's first run compiled some 600 modules again (seconds each).
    """
    count = 0
    for dist in _core_closure():
        base = Path(str(dist.locate_file("")))
        for file in dist.files or []:
            parts = Path(str(file)).parts
            if ".." in parts or "__pycache__" in parts or parts[0] == "bin":
                continue
            source, link = base / file, target.joinpath(*parts)
            if source.is_file() and not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(source)
                count += 1
                if source.suffix == ".py" and Path(compiled := cache_from_source(str(source))).is_file():
                    Path(cache_from_source(str(link))).parent.mkdir(exist_ok=True)
                    Path(cache_from_source(str(link))).symlink_to(compiled)  # valid: the source's mtime and size
    return count


@pytest.fixture(scope="session")
def core_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A venv with agentroute's wheel and only its core dependencies: ``{"python", "bin", "wheel", "seconds"}``."""
    start = time.perf_counter()
    root = tmp_path_factory.mktemp("core-install")
    wheels = root / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("agentroute-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )  # fmt: skip
    assert _link_core_deps(root / "core-deps") > 100
    (site / "agentroute-core-deps.pth").write_text(str(root / "core-deps") + "\n")
    install = subprocess.run(
        [*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]
    seconds = time.perf_counter() - start
    return {
        "python": python,
        "bin": venv / "bin",
        "wheel": wheel,
        "seconds": seconds,
        "build_log": build.stderr,
    }


def _run(
    env: dict[str, Any], *args: str, cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``agentroute ARGS`` in the core-only environment: its own console script, a narrow terminal."""
    environ = {"PATH": f"{env['bin']}:/usr/bin:/bin", "HOME": str(cwd), "COLUMNS": "80", "LANG": "C.UTF-8"}
    environ["AGENTROUTE_MEMORY"] = f"sqlite:///{cwd / 'memory.db'}"
    return subprocess.run(
        [str(env["bin"] / "agentroute"), *args], cwd=cwd, env=environ, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def _python(env: dict[str, Any], code: str) -> subprocess.CompletedProcess[str]:
    """``python -c CODE`` in the core-only environment, run from its ``bin`` folder: not the
    checkout's, which ``python -c`` would put first on ``sys.path``."""
    return subprocess.run([str(env["python"]), "-c", code], cwd=env["bin"], capture_output=True, text=True, timeout=120)


def test_core_env_has_no_extras_and_a_usable_package(core_env: dict[str, Any]) -> None:
    code = (
        "import importlib.util, sys, agentroute\n"
        "from agentroute import *\n"
        "print(agentroute.__version__, agentroute.__file__)\n"
        "print([m for m in ('torch', 'transformers', 'pandas', 'pyarrow', 'litellm', 'psycopg', 'fastapi', "
        "'uvicorn', 'sklearn', 'trl', 'datasets', 'matplotlib', 'aiosqlite', 'langgraph.checkpoint.sqlite', "
        "'langgraph.checkpoint.postgres') if importlib.util.find_spec(m) is not None])\n"
    )
    out = _python(core_env, code)
    assert out.returncode == 0, out.stderr
    version_line, extras_line = out.stdout.splitlines()
    version, path = version_line.split(" ", 1)
    assert version == VERSION
    assert str(core_env["bin"].parent) in path  # the installed wheel, not the checkout
    assert extras_line == "[]"
    assert core_env["seconds"] < 90, f"building the core-only environment took {core_env['seconds']:.0f}s"


def test_version_flag(core_env: dict[str, Any], tmp_path: Path) -> None:
    out = _run(core_env, "--version", cwd=tmp_path)
    assert (out.returncode, out.stdout.strip(), out.stderr) == (0, f"agentroute {VERSION}", "")
    as_module = subprocess.run(
        [str(core_env["python"]), "-m", "agentroute", "--version"], cwd=tmp_path, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert (as_module.returncode, as_module.stdout.strip()) == (0, f"agentroute {VERSION}"), as_module.stderr


HELP = [
    [], ["ask"], ["run"], ["eval"], ["serve"], ["train"], ["feedback"], ["pool"], ["pool", "list"],
    ["memory"], ["memory", "stats"], ["memory", "show"], ["memory", "export"],
    ["routers"], ["routers", "list"], ["routers", "show"],
]  # fmt: skip


def test_every_help_works_without_extras(core_env: dict[str, Any], tmp_path: Path) -> None:
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda command: _run(core_env, *command, "--help", cwd=tmp_path), HELP))
    broken = [
        (" ".join(command), out.returncode, out.stderr[-500:])
        for command, out in zip(HELP, outs, strict=True)
        if out.returncode != 0
        or "Usage: agentroute" not in out.stdout
        or "Traceback" in out.stdout + out.stderr
    ]
    assert broken == []


# -- a loopback OpenAI-compatible endpoint: what works with the core install -----------------------
class _Chat(BaseHTTPRequestHandler):
    """``POST /v1/chat/completions`` answering "Paris", streamed (SSE) or not, with usage."""

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if not self.path.endswith("/chat/completions"):
            self.send_error(404)
            return
        usage = {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13}
        head = {"id": "c1", "created": 0, "model": body.get("model", "m")}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "Paris"}
            reply = {**head, "object": "chat.completion", "usage": usage,
                     "choices": [{"index": 0, "finish_reason": "stop", "message": message}]}  # fmt: skip
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        chunk = {**head, "object": "chat.completion.chunk"}
        events = [
            {
                **chunk,
                "choices": [
                    {"index": 0, "delta": {"role": "assistant", "content": "Paris"}, "finish_reason": None}
                ],
            },
            {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {**chunk, "choices": [], "usage": usage},
        ]
        for event in events:
            self.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
        self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True


@pytest.fixture(scope="module")
def loopback_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Chat)
    thread = threading.Thread(target=server.serve_forever, args=(POLL_S,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def _pool(tmp_path: Path, backend: str, base_url: str) -> Path:
    path = tmp_path / f"{backend}_pool.yaml"
    path.write_text(
        "models:\n"
        f"  - {{id: small, backend: {backend}, model: small, base_url: '{base_url}', "
        "input_price: 0.1, output_price: 0.4, max_tokens: 16, tier: small}\n"
    )
    return path


def test_core_install_asks_a_loopback_pool_within_budget_into_sqlite(
    core_env: dict[str, Any], tmp_path: Path, loopback_url: str
) -> None:
    pool = _pool(tmp_path, "openai", loopback_url)
    out = _run(core_env, "ask", "Capital of France?", "--pool", str(pool), "--budget-usd", "0.001",
               "--budget-calls", "4", "--json", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert (result["status"], result["answer"]) == ("done", "Paris")
    assert 0 < result["cost_usd"] <= 0.001 and all(s["model"] == "small" for s in result["steps"])
    stats = _run(core_env, "memory", "stats", cwd=tmp_path)
    assert stats.returncode == 0, stats.stderr
    assert re.search(r"tasks\s+│\s+1\b", stats.stdout), stats.stdout
    shown = _run(core_env, "memory", "show", result["task_id"], "--json", cwd=tmp_path)
    assert shown.returncode == 0 and result["task_id"] in shown.stdout


# -- commands that need an extra: one line, the exact command, exit code 2 ------------------------
def _one_error_line(out: subprocess.CompletedProcess[str], command: str, extra: str) -> str:
    assert out.returncode == 2, (out.returncode, out.stdout[-1500:], out.stderr[-1500:])
    assert "Traceback" not in out.stderr + out.stdout, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out.stderr
    line = errors[0]
    assert f"[{extra}]" in line and line.endswith(command), line  # never wrapped, never eaten as markup
    return line


def _missing(tmp_path: Path, loopback_url: str) -> list[tuple[list[str], str, str]]:
    """(arguments, the pip command the error must end with, the extra it names)."""
    openai_pool = str(_pool(tmp_path, "openai", loopback_url))
    litellm_pool = str(_pool(tmp_path, "litellm", loopback_url))
    ml, eval_ = (TORCH_FIRST, "ml"), ("pip install 'agentroute[eval]'", "eval")
    postgres = ("pip install 'agentroute[postgres]'", "postgres")
    checkpoint = ("pip install 'agentroute[checkpoint]'", "checkpoint")
    queries = str(_write_queries(tmp_path))
    return [
        (["ask", "q"], *ml),  # the default pool is the local model: torch first, then its wheel
        (["ask", "q", "--pool", openai_pool, "--router", "mf"], *ml),
        (["ask", "q", "--pool", openai_pool, "--router", "graph-planner"], *ml),
        (["ask", "q", "--pool", litellm_pool], "pip install 'agentroute[litellm]'", "litellm"),
        (["ask", "q", "--pool", openai_pool, "--memory", "postgresql://u@127.0.0.1:1/db"], *postgres),
        (["memory", "stats", "--memory", "postgresql://u@127.0.0.1:1/db"], *postgres),
        (["run", "qa", "--input", queries, "--pool", openai_pool, "--checkpointer", "memory"], *checkpoint),
        (
            [
                "run",
                "qa",
                "--input",
                queries,
                "--pool",
                openai_pool,
                "--checkpointer",
                "postgresql://u@127.0.0.1:1/db",
            ],
            *checkpoint,
        ),
        (["serve", "--pool", openai_pool, "--port", "0"], "pip install 'agentroute[serve]'", "serve"),
        (["eval", "--dataset", f"routerbench:{tmp_path}"], *eval_),
        (
            ["train", "mlp", "--from", f"sqlite:///{tmp_path / 'memory.db'}", "--out", str(tmp_path / "mlp")],
            *ml,
        ),
    ]


def test_each_command_needing_an_extra_says_which_and_how(
    core_env: dict[str, Any], tmp_path: Path, loopback_url: str
) -> None:
    pool = _pool(tmp_path, "openai", loopback_url)  # a memory with one task, for the export below
    assert _run(core_env, "ask", "q", "--pool", str(pool), cwd=tmp_path).returncode == 0
    cases = _missing(tmp_path, loopback_url)
    cases.append((["memory", "export", "--format", "parquet", "--out", str(tmp_path / "s.parquet")],
                  "pip install 'agentroute[eval]'", "eval"))  # fmt: skip
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda case: _run(core_env, *case[0], cwd=tmp_path), cases))
    for (_, command, extra), out in zip(cases, outs, strict=True):
        _one_error_line(out, command, extra)


def test_a_pool_whose_backend_is_missing_is_refused_before_any_spend(
    core_env: dict[str, Any], tmp_path: Path, loopback_url: str
) -> None:
    out = _run(core_env, "run", "qa", "--input", str(_write_queries(tmp_path)), "--pool",
               str(_pool(tmp_path, "litellm", loopback_url)), cwd=tmp_path)  # fmt: skip
    _one_error_line(out, "pip install 'agentroute[litellm]'", "litellm")
    assert (
        not (tmp_path / "memory.db").exists()
        or "$0.000000" in _run(core_env, "memory", "stats", cwd=tmp_path).stdout
    )


def _write_queries(tmp_path: Path) -> Path:
    path = tmp_path / "q.jsonl"
    path.write_text('{"query": "Capital of France?"}\n')
    return path


def test_routers_list_names_the_install_command_of_unavailable_routers(
    core_env: dict[str, Any], tmp_path: Path
) -> None:
    out = _run(core_env, "routers", "list", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    joined = re.sub(r"[│\s]+", " ", out.stdout)  # the table wraps its cells at 80 columns
    assert "agentroute[ml]" in joined and "torch==2.13.0" in joined
    assert "pip install 'agentroute'" not in joined  # the extra was once read as rich markup and dropped
    unavailable = {n for names in re.findall(r"unavailable ((?:[\w-]+, )*[\w-]+): ", joined) for n in names.split(", ")}
    # each router whose default needs [ml] says so when built (torch, sklearn or the MiniLM embedder)
    assert {"mf", "mlp", "knn", "logreg", "bopo", "kg-gnn", "per-task", "ant-colony"} <= unavailable
    assert not unavailable & {"cheapest", "fixed", "cascade", "oracle", "best-single"}  # these need no extra


# -- the wheel ------------------------------------------------------------------------------------
def test_wheel_holds_package_data_and_no_tests(core_env: dict[str, Any]) -> None:
    names = zipfile.ZipFile(core_env["wheel"]).namelist()
    for needed in ("agentroute/py.typed", "agentroute/pool/default_pool.yaml",
                   "agentroute/memory/migrations/script.py.mako", "agentroute/cli/app.py"):  # fmt: skip
        assert needed in names
    assert any(n.startswith("agentroute/memory/migrations/versions/") for n in names)
    assert not [n for n in names if n.split("/")[0] in ("tests", "benchmarks", "examples", "docs", "graphs")]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert (
        "agentroute = agentroute.cli:main" in zipfile.ZipFile(core_env["wheel"]).read(entry_points).decode()
    )


def test_sdist_ships_the_package_and_no_partial_test_suite(tmp_path: Path) -> None:
    code = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    built = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )  # the PEP 517 hook pip and build call, offline
    assert built.returncode == 0, built.stderr[-2000:]
    with tarfile.open(tmp_path / built.stdout.strip().splitlines()[-1]) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    for needed in ("pyproject.toml", "README.md", "agentroute/py.typed", "agentroute/pool/default_pool.yaml",
                   "agentroute/memory/migrations/script.py.mako", "agentroute/cli/app.py"):  # fmt: skip
        assert needed in names
    # tests/test_*.py without their conftest, fixtures and data would be a suite that cannot run
    assert not [n for n in names if n.split("/")[0] in ("tests", "benchmarks", "examples", "training")]


def test_the_build_warns_of_nothing(core_env: dict[str, Any]) -> None:
    """A packager's build is quiet: no deprecated pyproject field (``license = {text = …}`` once was)."""
    assert "Warning" not in core_env["build_log"], core_env["build_log"][-3000:]


def test_one_version_everywhere(core_env: dict[str, Any]) -> None:
    import agentroute

    wheel_version = core_env["wheel"].name.split("-")[1]
    assert agentroute.__version__ == VERSION == wheel_version
    assert (
        'version = "' not in (ROOT / "pyproject.toml").read_text().split("[project.optional-dependencies]")[0]
    )


def test_import_and_cli_help_load_no_heavy_module() -> None:
    """``import agentroute`` and the CLI's ``--help`` path stay light: the memory (SQLAlchemy,
    Alembic), LangGraph and numpy load when a command uses them (``--help`` went from ~1 s to ~0.3 s)."""
    heavy = ("sqlalchemy", "alembic", "langgraph", "numpy", "torch", "pandas", "litellm")
    code = (
        "import sys\n"
        "import agentroute\n"
        "print(sorted(m for m in HEAVY if m in sys.modules))\n"
        "from agentroute.cli import app\n"
        "print(sorted(m for m in HEAVY if m in sys.modules))\n"
        "from agentroute import AgentGraph, Budget, make_router\n"
        "print(sorted(m for m in HEAVY if m in sys.modules))\n"
    ).replace("HEAVY", repr(heavy))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    after_import, after_cli, after_use = out.stdout.splitlines()
    assert after_import == after_cli == "[]"
    assert "langgraph" in after_use  # the names still load, on first use


def test_every_public_name_resolves_to_its_home() -> None:
    import agentroute

    assert set(agentroute.__all__) == set(agentroute._HOME)
    for name in agentroute.__all__:
        value = getattr(agentroute, name)
        assert getattr(value, "__module__", "").startswith("agentroute."), name
    assert set(agentroute.__all__) <= set(dir(agentroute))
    with pytest.raises(AttributeError, match="no attribute 'Budgett'"):
        agentroute.Budgett  # noqa: B018


def test_python_api_names_the_exact_command_too(core_env: dict[str, Any]) -> None:
    code = (
        "from agentroute import MissingDependencyError, make_router\n"
        "try:\n    make_router('mlp')\nexcept MissingDependencyError as exc:\n    print(exc.extra, '|', exc)\n"
    )
    out = _python(core_env, code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"ml | 'torch' is not installed (extra [ml]); install it with: {TORCH_FIRST}"


def test_python_api_refuses_a_pool_whose_backend_is_missing_when_the_graph_compiles(
    core_env: dict[str, Any], loopback_url: str
) -> None:
    """From Python, a litellm card without litellm compiled fine and each task then failed, charged
    a call never sent ($3.75e-05); the CLI alone refused it. The dispatcher now refuses the pool."""
    code = (
        "from agentroute import AgentGraph, MissingDependencyError, make_router\n"
        "from agentroute.pool import ModelCard, ModelPool\n"
        f"card = ModelCard(id='x', backend='litellm', model='openai/m', base_url='{loopback_url}',"
        " input_price=1.0, output_price=2.0)\n"
        "try:\n"
        "    AgentGraph('a').add_role('executor', prompt='p').compile(pool=ModelPool([card]), router=make_router('cheapest'))\n"
        "except MissingDependencyError as exc:\n    print(exc.extra, '|', exc)\n"
    )
    out = _python(core_env, code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "litellm | 'litellm' is not installed (extra [litellm]); install it with: pip install 'agentroute[litellm]'"

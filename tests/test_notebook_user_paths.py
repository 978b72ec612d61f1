"""agentroute in a real Jupyter kernel, cell by cell, as a notebook user drives it.

One ipykernel per module (started with jupyter_client, as JupyterLab does); a hanging
OpenAI-compatible provider on 127.0.0.1, served from this process and stopped by the test that
started it, for the stop button (a kernel interrupt) in the middle of a run.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("ipykernel")
jupyter_client = pytest.importorskip("jupyter_client")

from aiohttp import web  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

SETUP = """
import json, threading
from agentroute import AgentGraph, Budget, ModelCard, ModelPool, make_router
from agentroute.memory import SQLMemory
from agentroute.dispatch.run import LIVE
from tests.helpers import replay_pool

graph = (AgentGraph("qa").add_role("planner", prompt="Plan.").add_role("executor", prompt="Answer.")
         .add_edge("planner", "executor"))

def record(memory, task_id):
    memory.flush()
    t = memory.get_task(task_id)
    return {"status": t.task.status, "cost": t.task.cost_usd, "steps": [[s.error, s.cost_usd] for s in t.steps]}

memory = SQLMemory("sqlite:///calls.db")
app = graph.compile(pool=replay_pool(), router=make_router("cheapest"), memory=memory)
"""


class Kernel:
    """A running ipykernel: :meth:`cell` executes code and returns its outputs (iopub messages)."""

    def __init__(self, cwd: Path, env: dict[str, str] | None = None):
        env = {**{k: v for k, v in os.environ.items() if k not in ("AGENTROUTE_PROGRESS", "MPLBACKEND")}, **(env or {})}
        env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", AGENTROUTE_MEMORY=f"sqlite:///{cwd}/default.db",
                   IPYTHONDIR=str(cwd / ".ipython"))  # no history or profile written to the home folder
        self.km = jupyter_client.KernelManager(kernel_name="python3", connection_file=str(cwd / "kernel.json"))
        self.km.start_kernel(cwd=str(cwd), env=env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def cell(self, code: str, *, timeout: float = 30, interrupt_when: Callable[[], bool] | None = None) -> list[dict]:
        msg_id = self.kc.execute(code)
        outputs: list[dict] = []
        deadline, interrupted = time.monotonic() + timeout, False
        while time.monotonic() < deadline:
            if interrupt_when is not None and not interrupted and interrupt_when():
                self.km.interrupt_kernel()  # the notebook's stop button: SIGINT to the kernel
                interrupted = True
            try:
                msg = self.kc.get_iopub_msg(timeout=0.05)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content["execution_state"] == "idle":
                return outputs
            if kind in ("stream", "execute_result", "display_data", "error"):
                outputs.append({"type": kind, **content})
        raise AssertionError(f"cell still running after {timeout} s: {code!r}; outputs so far: {outputs}")

    def value(self, code: str, **kwargs) -> object:
        """The JSON that ``code`` prints last (the cell must not fail)."""
        outputs = self.cell(code, **kwargs)
        errors = [o for o in outputs if o["type"] == "error"]
        assert not errors, f"{errors[0]['ename']}: {errors[0]['evalue']}"
        return json.loads(stdout(outputs).strip().splitlines()[-1])

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def stdout(outputs: list[dict], name: str = "stdout") -> str:
    return "".join(o["text"] for o in outputs if o["type"] == "stream" and o["name"] == name)


def error(outputs: list[dict]) -> dict | None:
    return next((o for o in outputs if o["type"] == "error"), None)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory) -> Iterator[Kernel]:
    k = Kernel(tmp_path_factory.mktemp("notebook"))
    try:
        failed = error(k.cell(SETUP))  # every test's cells build on it: each test runs alone too
        assert failed is None, failed
        yield k
    finally:
        k.close()


class HangingProvider:
    """An OpenAI-compatible chat endpoint on 127.0.0.1 that never answers until released."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.arrived = threading.Event()
        self.requests = 0

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.arrived.set()
        await self._release.wait()
        return web.json_response({"error": {"message": "released"}}, status=503)

    async def _start(self) -> str:
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/v1"  # type: ignore[union-attr]

    def __enter__(self) -> HangingProvider:
        self.thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def release(self) -> None:
        self.loop.call_soon_threadsafe(self._release.set)

    def __exit__(self, *exc: object) -> None:
        self.release()
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def hanging_app(kernel: Kernel, url: str, db: str) -> None:
    kernel.cell(f"""
card = ModelCard(id="remote", backend="openai", model="m", base_url="{url}", input_price=1.0, output_price=2.0,
                 max_tokens=8, timeout_s=30)
hang_memory = SQLMemory("sqlite:///{db}")
hanging = graph.compile(pool=ModelPool([card]), router=make_router("cheapest"), memory=hang_memory)
""")


# -- calls in cells ----------------------------------------------------------------------------------
def test_sync_and_awaited_calls_run_in_cells_on_the_kernels_loop(kernel):
    """``run``/``invoke``/``stream`` in a cell (the kernel's loop is running) and top-level
    ``await`` of ``arun``/``ainvoke``/``arun_many``: every task ends ``done`` and is in the memory."""
    cells = {
        "c1": "print(json.dumps(app.run('q1', task_id='c1', query_id='q1').status))",
        "c2": "print(json.dumps(app.invoke({'query': 'q2', 'task_id': 'c2', 'query_id': 'q2'})['status']))",
        "c3": "print(json.dumps(len(list(app.stream({'query': 'q3', 'task_id': 'c3', 'query_id': 'q3'})))))",
        "c4": "print(json.dumps((await app.arun('q4', task_id='c4', query_id='q4')).status))",
        "c5": "print(json.dumps((await app.ainvoke({'query': 'q5', 'task_id': 'c5', 'query_id': 'q5'}))['status']))",
        "c6": "print(json.dumps([r.status for r in await app.arun_many([{'query': 'q6', 'task_id': 'c6', 'query_id': 'q6'}])]))",
    }
    got = {tid: kernel.value(code) for tid, code in cells.items()}
    assert got == {"c1": "done", "c2": "done", "c3": 2, "c4": "done", "c5": "done", "c6": ["done"]}
    assert kernel.value("print(json.dumps([record(memory, f'c{i}')['status'] for i in range(1, 7)]))") == ["done"] * 6


def test_a_budget_error_in_a_cell_names_the_field(kernel):
    outputs = kernel.cell("app.run('q1', query_id='q1', budget=Budget(usd=-1))")
    err = error(outputs)
    assert err is not None and err["ename"] == "ConfigurationError" and "budget usd" in err["evalue"]
    assert kernel.value("print(json.dumps(app.run('q1', query_id='q1').status))") == "done"  # the next cell works


def test_rerunning_the_cell_that_opens_the_sqlite_memory_keeps_working(kernel):
    """The same SQLite file opened again by a re-run cell (the old memory still alive in the kernel)."""
    cell = ("memory = SQLMemory('sqlite:///rerun.db')\n"
            "app = graph.compile(pool=replay_pool(), router=make_router('cheapest'), memory=memory)\n"
            "print(json.dumps(app.run('q1', query_id='q1').status))")
    assert [kernel.value(cell) for _ in range(3)] == ["done"] * 3
    left = kernel.value("""
import gc
gc.collect()  # the replaced stores commit what they hold when collected
memory.flush()
print(json.dumps([memory.stats()['tasks'], [t.name for t in threading.enumerate()].count('agentroute-memory-writer')]))
""")
    assert left[0] == {"done": 3} and left[1] <= 2, left  # the stores alive: calls.db (the set-up cell), rerun.db


# -- progress and figures --------------------------------------------------------------------------
def test_a_progress_bar_over_arun_many_renders_in_the_cell(kernel):
    """``agentroute.progress.bar`` around ``await app.arun_many(..., on_done=...)`` in a notebook.
    Bars showed only on a terminal, so a kernel (stderr not a tty) showed none — ``evaluate``'s
    ``progress=True`` too; now a text bar is drawn in the cell, with no ``TqdmWarning`` about
    ipywidgets."""
    outputs = kernel.cell("""
from agentroute.progress import bar
items = [{"query": f"q{i}", "query_id": f"q{i}"} for i in range(3)]
with bar(len(items), "tasks", unit="task") as b:
    results = await app.arun_many(items, concurrency=2, on_done=lambda r: b.update(1))
print(json.dumps([r.status for r in results]))
""")
    assert error(outputs) is None and json.loads(stdout(outputs)) == ["done"] * 3
    bars = stdout(outputs, "stderr")
    assert "tasks:   0%" in bars and "0/3 [" in bars, bars  # later updates within tqdm's 0.1 s are not drawn
    assert bars.endswith("\r") and "Warning" not in bars, bars  # cleared when done (``leave=False``)


def test_nested_bars_share_one_line_in_a_notebook(kernel):
    """``evaluate`` nests bars (routers ▸ fitting ▸ sweeping). tqdm's text bar draws a nested one on
    the next line and moves back up with ``ESC[A``, which a notebook cannot do: every nested update
    added a line. Now the bars take turns on one line."""
    outputs = kernel.cell("""
from agentroute.progress import bar, phase
with bar(2, "routers", unit="router") as outer:
    for name in ("a", "b"):
        with phase(f"fitting {name}"):
            pass
        with bar(3, f"sweeping {name}", unit="decision") as inner:
            inner.update(3)
        outer.update(1)
""")
    bars = stdout(outputs, "stderr")
    assert error(outputs) is None and all(f in bars for f in ("routers:", "fitting a", "sweeping b")), bars
    assert "\n" not in bars and "\x1b[" not in bars, repr(bars)


def test_the_eval_curves_figure_is_drawn_inline(kernel):
    """``curves_figure(result)`` as a cell's value: was ``<Figure size 1050x620 with 1 Axes>`` (no
    image) unless pyplot's inline backend had been set up; now a PNG."""
    outputs = kernel.cell("""
from agentroute.eval.plots import curves_figure
from agentroute.eval.results import EvalResult, OraclePoint, RouterResult, SingleModel
singles = [SingleModel(model="a", accuracy=0.5, cost=0.001), SingleModel(model="b", accuracy=0.8, cost=0.01)]
result = EvalResult(dataset="toy", n_train=10, n_test=10, dropped_rows=0, single_models=singles,
                    oracle=OraclePoint(accuracy=0.9, cost=0.004), zero_router_aiq=0.6, best_single=singles[1],
                    routers=[RouterResult(name="knn", aiq=0.7, anchor=0, curve=[[0.001, 0.5], [0.005, 0.75], [0.01, 0.8]])])
curves_figure(result)
""")
    assert error(outputs) is None, error(outputs)
    shown = [o for o in outputs if o["type"] in ("execute_result", "display_data")]
    assert len(shown) == 1 and shown[0]["data"].get("image/png", "").startswith("iVBOR"), shown


def test_the_ant_colonys_pheromone_drawings_are_drawn_inline(kernel):
    """The pheromone drawings only wrote PNGs; their ``*_figure`` twins show in the cell."""
    outputs = kernel.cell("""
from agentroute.viz.pheromone import heatmap_figure, overview_figure, paths_figure
export = {"task_types": ["general"], "updates": 3, "ability": {},
          "layers": [{"stage": "plan", "nodes": ["plan/m1", "plan/m2"]}, {"stage": "solve", "nodes": ["solve/m2"]}],
          "edges": [{"source": "START", "target": "plan/m1", "tau": {"general": 1.0}},
                    {"source": "START", "target": "plan/m2", "tau": {"general": 0.5}},
                    {"source": "plan/m1", "target": "solve/m2", "tau": {"general": 2.0}}]}
for fig in (overview_figure(export), heatmap_figure(export, "general"), paths_figure(export, "general")):
    display(fig)
""")
    assert error(outputs) is None, error(outputs)
    shown = [o["data"] for o in outputs if o["type"] == "display_data"]
    assert len(shown) == 3 and all(d.get("image/png", "").startswith("iVBOR") for d in shown), shown


# -- the stop button -------------------------------------------------------------------------------
def test_interrupting_a_sync_run_records_the_task_and_the_next_cell_works(kernel, tmp_path):
    """The stop button while ``app.run`` waits on a provider that never answers: the cell ends with
    ``KeyboardInterrupt`` at once, the task is ``interrupted`` with its cancelled call's cost, and
    the next cell runs a task on the same kernel (one background loop, no run left held)."""
    with HangingProvider() as provider:
        hanging_app(kernel, provider.url, str(tmp_path / "hang.db"))
        start = time.monotonic()
        outputs = kernel.cell("hanging.run('q', task_id='stopped')", timeout=20, interrupt_when=provider.arrived.is_set)
        took = time.monotonic() - start
        err = error(outputs)
        assert err is not None and err["ename"] == "KeyboardInterrupt", outputs
        assert took < 10 and provider.requests == 1
        rec = kernel.value("print(json.dumps(record(hang_memory, 'stopped')))")
        assert rec["status"] == "interrupted" and [e for e, _ in rec["steps"]] == ["cancelled"]
        assert rec["cost"] > 0 and rec["cost"] == pytest.approx(rec["steps"][0][1])
    after = kernel.value("""
names = [t.name for t in threading.enumerate()]
print(json.dumps([app.run('q1', query_id='q1').status, names.count('agentroute-sync'), len(LIVE)]))
""")
    assert after == ["done", 1, 0]


def test_interrupting_an_awaited_run_ends_it_interrupted_once_the_loop_wakes(kernel, tmp_path):
    """The stop button on a top-level ``await hanging.arun(...)`` while the provider answers half a
    second later: the task ends ``interrupted`` with its cost, as a sync run does, and the next
    cell works (docs/notebooks.md)."""
    with HangingProvider() as provider:
        hanging_app(kernel, provider.url, str(tmp_path / "hang_await.db"))

        stopped = threading.Event()

        def stop_now() -> bool:  # the stop button, once the call reached the provider
            if provider.arrived.is_set():
                stopped.set()
            return stopped.is_set()

        def answer_later() -> None:
            if stopped.wait(20):  # not timed from the call's arrival: a loaded machine may press the stop later
                time.sleep(0.5)  # the interrupt is handled meanwhile
                provider.release()

        releaser = threading.Thread(target=answer_later, daemon=True)
        releaser.start()
        outputs = kernel.cell("await hanging.arun('q', task_id='awaited')", timeout=20, interrupt_when=stop_now)
        releaser.join(20)
        err = error(outputs)
        assert err is not None and err["ename"] in ("CancelledError", "KeyboardInterrupt"), outputs
        rec = kernel.value("print(json.dumps(record(hang_memory, 'awaited')))")
        assert rec["status"] == "interrupted" and rec["cost"] > 0, rec
    assert kernel.value("print(json.dumps([(await app.arun('q1', query_id='q1')).status, len(LIVE)]))") == ["done", 0]


# -- the doc, pasted into cells ----------------------------------------------------------------------
@pytest.mark.slow
def test_the_notebook_doc_runs_cell_by_cell_on_the_default_pool(tmp_path, data_dir):
    """Every ```python block of docs/notebooks.md, in order, as cells of a fresh kernel."""
    import re

    blocks = re.findall(r"^```python\n(.*?)^```", (ROOT / "docs" / "notebooks.md").read_text(), re.S | re.M)
    assert len(blocks) >= 5
    fresh = Kernel(tmp_path, env={"AGENTROUTE_DATA": str(data_dir)})
    try:
        outputs = [fresh.cell(block, timeout=240) for block in blocks]
    finally:
        fresh.close()
    for block, out in zip(blocks, outputs, strict=True):
        assert error(out) is None, f"{block}\n{error(out)}"
    printed = [stdout(out).split() for out in outputs]
    assert printed[1][0] in ("done", "budget_exhausted") and printed[2] and printed[3]
    shown = [o for o in outputs[-1] if o["type"] == "execute_result"]
    assert shown and shown[0]["data"].get("image/png", "").startswith("iVBOR")


def test_the_stop_button_stops_an_awaited_run_on_a_provider_that_never_answers(kernel, tmp_path):
    """A top-level ``await app.arun(...)`` waiting on a provider that never answers ignored the stop
    button until the card's 30 s timeout (ipykernel#881); the loop is now woken while a run is
    awaited on the kernel's thread, so the stop takes effect within a second or so."""
    with HangingProvider() as provider:
        hanging_app(kernel, provider.url, str(tmp_path / "hang_stop.db"))
        start = time.monotonic()
        outputs = kernel.cell("await hanging.arun('q', task_id='stop-now')", timeout=25,
                              interrupt_when=provider.arrived.is_set)  # fmt: skip
        took = time.monotonic() - start
        err = error(outputs)
        assert err is not None and err["ename"] in ("CancelledError", "KeyboardInterrupt"), outputs
        assert took < 10, took  # the card's timeout is 30 s
        rec = kernel.value("print(json.dumps(record(hang_memory, 'stop-now')))")
        assert rec["status"] == "interrupted" and rec["cost"] > 0, rec
    assert kernel.value("print(json.dumps([(await app.arun('q1', query_id='q1')).status, len(LIVE)]))") == ["done", 0]

"""The ant colony as a user reaches it: saved mid-learning, drawn before it has learned."""

from __future__ import annotations

import threading
import time
import warnings

import numpy as np

from agentroute.loading import load_router
from agentroute.outcomes import OutcomeTable
from agentroute.routers.ant_colony import AntColonyRouter
from agentroute.types import Agent, Step, Task
from agentroute.viz.pheromone import NO_EDGES, heatmap_figure, overview_figure, paths_figure, write_evidence
from tests.test_ant_colony import tiny_table


def _finish(router: AntColonyRouter, task_id: str, stage: str = "solve") -> None:
    step = Step(task_id=task_id, index=0, stage=stage, agent=Agent(model="m2"), cost_usd=0.1, score=1.0)
    router.observe(step)
    router.observe(step, Task(id=task_id, query="aa question", status="done", score=1.0, cost_usd=0.1))


def test_save_mid_learning_keeps_every_task_observed_before_it(tmp_path):
    router = AntColonyRouter(intent="none", ants=1).fit(tiny_table())
    for i in range(300):  # no flush: most updates are still queued for the updater thread
        _finish(router, f"t{i}")
    router.save(tmp_path / "colony")
    loaded = load_router(str(tmp_path / "colony"))
    assert loaded.export_pheromones()["updates"] == 300
    router.flush()
    assert loaded.export_pheromones()["edges"] == router.export_pheromones()["edges"]


def test_save_while_other_threads_observe_writes_one_consistent_colony(tmp_path):
    router = AntColonyRouter(intent="none", ants=1, update_batch=1, buffer_size=100_000).fit(tiny_table())
    stop = threading.Event()

    def observer(n: int) -> None:
        i = 0
        while not stop.is_set():  # each new stage adds nodes and edges to the colony
            _finish(router, f"w{n}-{i}", stage=f"stage{i % 40}")
            i += 1
            time.sleep(0.0005)

    threads = [threading.Thread(target=observer, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    try:
        for k in range(8):
            time.sleep(0.05)
            sampled = router.stats()["sampled"]
            router.save(tmp_path / f"c{k}")
            loaded = load_router(str(tmp_path / f"c{k}"))  # state and matrices of one version
            tau = np.asarray(loaded._colony.tau)
            assert tau.shape[1] == len(loaded.export_pheromones()["edges"])
            assert loaded.export_pheromones()["updates"] >= sampled > 0
    finally:
        stop.set()
        for t in threads:
            t.join()


def _untrained() -> AntColonyRouter:
    one = OutcomeTable(
        query_ids=["q1"], queries=["aa question"], models=["m1"], scores=np.array([[1.0]]),
        costs=np.array([[1.0]]), task_types=["a"],
    )  # fmt: skip
    return AntColonyRouter(intent="none", warm_start=False).fit(one)


def test_figures_of_an_untrained_colony_say_it_has_learned_nothing(tmp_path):
    export = _untrained().export_pheromones()
    assert export["edges"] == []
    task = export["task_types"][0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # was: matplotlib's singular-limits warnings, empty axes
        figures = [heatmap_figure(export, task), overview_figure(export), paths_figure(export, task)]
        written = write_evidence(export, tmp_path)
    for fig in figures:
        texts = [t.get_text() for ax in fig.axes for t in ax.texts]
        assert NO_EDGES in texts
    assert all(p.stat().st_size > 0 for p in written)


def test_flush_under_a_steady_stream_of_tasks_returns_once_earlier_ones_are_applied():
    def slow_judge(traj) -> bool:  # the updater is slower than the observers: its buffer never empties
        time.sleep(0.002)
        return True

    router = AntColonyRouter(intent="none", ants=1, update_batch=1, judge=slow_judge).fit(tiny_table())
    for i in range(20):
        _finish(router, f"before{i}")
    stop = threading.Event()

    def observer() -> None:
        i = 0
        while not stop.is_set():
            _finish(router, f"during{i}")
            i += 1
            time.sleep(0.0005)

    thread = threading.Thread(target=observer)
    thread.start()
    try:
        started = time.monotonic()
        assert router.flush(timeout=20)  # was: waited for an empty buffer, so timed out
        assert time.monotonic() - started < 20
        assert router.stats()["applied"] >= 20
    finally:
        stop.set()
        thread.join()


def test_a_task_with_a_nan_score_or_a_bad_cost_is_rejected_alone_not_with_its_batch(caplog):
    router = AntColonyRouter(intent="none", ants=1, update_batch=64).fit(tiny_table())
    bad = {"nan-score": (float("nan"), 0.1), "inf-cost": (1.0, float("inf")), "negative-cost": (1.0, -1.0)}
    for i in range(20):
        if i in (3, 9, 15):
            task_id = list(bad)[(i - 3) // 6]
            score, cost = bad[task_id]
        else:
            task_id, score, cost = f"good{i}", 1.0, 0.1
        step = Step(task_id=task_id, index=0, stage="solve", agent=Agent(model="m2"), cost_usd=cost, score=score)
        router.observe(step)
        router.observe(step, Task(id=task_id, query="aa question", status="done", score=score, cost_usd=cost))
    router.flush()
    s = router.stats()
    # was: the update batch holding a bad task failed whole ('tau'/'ability_sum' holds non-finite values)
    assert (s["errors"], s["accepted"], s["rejected"]) == (0, 17, 3), s
    assert router.export_pheromones()["updates"] == 17

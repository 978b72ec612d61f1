"""The ant-colony router (AMRO-S): the rule against hand-computed values, the asynchronous updater,
persistence errors, and warm start on real RouterBench data."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from agentroute.errors import ConfigurationError, NotFittedError, StateFileError
from agentroute.outcomes import OutcomeTable
from agentroute.routers import make_router
from agentroute.routers.ant_colony import AntColonyRouter
from agentroute.routers.base import Router
from agentroute.routers.pheromone import (
    START,
    Colony,
    ColonyEditor,
    PathSample,
    PathStep,
    UpdateRule,
    path_edges,
)
from agentroute.types import Agent, RouteContext, Step, Task, Trajectory


class KeywordIntent:
    """A real, rule-based intent model: 'sum'/'plus' → math, else a fixed mixture."""

    labels = ["a", "b"]

    def fit(self, queries: Sequence[str], labels: Sequence[str]) -> KeywordIntent:
        return self

    def predict_proba(self, queries: Sequence[str]) -> np.ndarray:
        return np.array(
            [[0.75, 0.25] if "mix" in q else [1.0, 0.0] if "aa" in q else [0.0, 1.0] for q in queries]
        )


def tiny_table() -> OutcomeTable:
    """q1 (type a): m1 right at cost 1, m2 wrong at 0.1; q2 (type b): the reverse."""
    return OutcomeTable(
        query_ids=["q1", "q2"],
        queries=["aa question", "bb question"],
        models=["m1", "m2"],
        scores=np.array([[1.0, 0.0], [0.0, 1.0]]),
        costs=np.array([[1.0, 0.1], [1.0, 0.1]]),
        task_types=["a", "b"],
    )


def ctx(
    query: str, *, task_id: str = "", stage: str = "execute", history: list[Step] | None = None, **kw
) -> RouteContext:
    agents = [Agent(model="m1"), Agent(model="m2")]
    return RouteContext(
        query=query, candidates=agents, stage=stage, task_id=task_id, history=history or [],
        costs={agents[0].key: 1.0, agents[1].key: 0.1}, **kw,
    )  # fmt: skip


def fitted(**params) -> AntColonyRouter:
    """Fitted on :func:`tiny_table` with ε = 1, one ant per iteration and τ_min = 0.01 (round numbers)."""
    defaults = {"deposit_eps": 1.0, "ants": 1, "tau_min": 0.01}
    return AntColonyRouter(intent=KeywordIntent(), **{**defaults, **params}).fit(tiny_table())


# -- the transition rule and the fusion, by hand ----------------------------------------------------
def test_steady_state_fit_fusion_heuristic_and_transition_match_hand_computation():
    router = fitted(deposit_eps=1.0, rho=0.1, tau_min=0.01, ability_strength=5.0)
    d = router.export_pheromones()
    tau = {(e["source"], e["target"]): e["tau"] for e in d["edges"]}
    # cost scale = 95th percentile of path costs = 1.0; deposits Q/(f+ε): m1 1/(1+1), m2 1/(0.1+1)
    # steady state: Σ deposits / (ρ · paths of the type) = deposit / (0.1 · 2)
    assert tau[("START", "*/m1")]["a"] == pytest.approx(0.5 / 0.2)
    assert tau[("START", "*/m2")]["b"] == pytest.approx((1 / 1.1) / 0.2)
    assert tau[("START", "*/m2")]["a"] == pytest.approx(0.01)  # logged, never good: τ_min
    # ability shrunk toward the node's own mean (0.5) with m = 5: (1 + 5·0.5) / (1 + 5)
    assert d["ability"]["*/m1"]["a"] == pytest.approx(3.5 / 6)
    assert d["ability"]["*/m1"]["b"] == pytest.approx(2.5 / 6)

    decision = router.route(ctx("mix question"))
    ev = decision.evidence
    w = np.array([0.75, 0.25])
    tau_q = np.array([w @ [2.5, 0.01], w @ [0.01, (1 / 1.1) / 0.2]])
    ability_q = np.array([w @ [3.5 / 6, 2.5 / 6], w @ [2.5 / 6, 3.5 / 6]])
    eta = 0.6 * np.array([1.0, 0.0]) + 0.2 + 0.2  # min–max of ability (λ = 0); load and latency equal → 1
    desire = tau_q**1.0 * eta**2.0
    assert ev["candidates"] == ["executor:m1:direct", "executor:m2:direct"]
    assert ev["intent"] == {"a": 0.75, "b": 0.25}
    assert ev["tau"] == pytest.approx(tau_q.tolist())
    assert ev["ability"] == pytest.approx(ability_q.tolist())
    assert ev["eta"] == pytest.approx(eta.tolist())
    assert ev["p"] == pytest.approx((desire / desire.sum()).tolist())
    assert sum(decision.scores.values()) == pytest.approx(1.0)


def test_cost_weight_moves_the_heuristic_toward_the_cheaper_agent():
    router = fitted(greedy=True)
    assert router.route(ctx("aa question")).agent.model == "m1"
    router.set_params(cost_weight=1.0)  # u = A − λ·ĉ: m1 0.583 − 1, m2 0.417 − 0.1
    ev = router.route(ctx("aa question")).evidence
    assert ev["eta"] == pytest.approx([0.4, 1.0])


def test_greedy_is_the_argmax_and_sampling_is_seeded():
    router = fitted(greedy=True)
    d = router.route(ctx("bb question"))
    assert d.agent.model == "m2" and d.evidence["mode"] == "greedy"
    sampler = fitted(seed=3)
    picks = [sampler.route(ctx("mix question", task_id=f"t{i}")).agent.model for i in range(200)]
    again = [fitted(seed=3).route(ctx("mix question", task_id=f"t{i}")).agent.model for i in range(200)]
    assert picks == again
    p_m1 = sampler.route(ctx("mix question")).evidence["p"][0]
    assert abs(picks.count("m1") / 200 - p_m1) < 0.08


def test_an_unseen_agent_reads_tau_init_and_candidates_are_respected():
    router = fitted(tau_init=0.7)
    agents = [Agent(model="m1"), Agent(model="brand-new")]
    c = RouteContext(query="aa question", candidates=agents, costs={a.key: 0.5 for a in agents})
    decision = router.route(c)
    assert decision.evidence["tau"][1] == pytest.approx(0.7)
    assert decision.agent.key in {a.key for a in agents}


def test_layers_follow_the_previous_step_and_unseen_edges_read_tau_init():
    router = fitted(tau_init=0.5)
    prev = Step(task_id="t", index=0, stage="plan", agent=Agent(role="planner", model="m1"))
    decision = router.route(ctx("aa question", stage="solve", history=[prev]))
    assert decision.evidence["prev"] == "plan/m1"
    # m1/m2 exist only as stage-less warm-start nodes: the START prior is read for any stage
    assert decision.evidence["tau"] == pytest.approx([2.5, 0.01])


def test_route_before_fit_raises():
    with pytest.raises(NotFittedError):
        AntColonyRouter().route(ctx("aa"))


# -- the update rule ------------------------------------------------------------------------------
def two_edge_colony(types: tuple[str, ...] = ("a",)) -> Colony:
    t = len(types)
    return Colony(
        task_types=types, nodes=(("s", "A"), ("s", "B")), edges=((START, 0), (START, 1)),
        tau=np.ones((t, 2)), ability_sum=np.zeros((t, 2)), ability_n=np.zeros((t, 2)), cost_scale=1.0,
    )  # fmt: skip


def sample(column: str, cost: float = 0.5, score: float = 1.0) -> PathSample:
    return PathSample("t", "q", (PathStep("s", column, score, cost),), score, cost)


def test_deposit_and_evaporation_by_hand():
    editor = ColonyEditor(two_edge_colony(), UpdateRule(rho=0.1, ants=1, q=1.0, eps=1.0, tau_max=10))
    editor.apply(sample("A", cost=0.5), np.array([1.0]))
    new = editor.freeze()
    assert new.tau[0].tolist() == pytest.approx([0.9 * 1 + 1 / (0.5 + 1), 0.9])
    assert new.updates == 1
    # m ants per iteration: each request evaporates (1 − ρ)^(1/m); m requests evaporate ρ once
    colony = ColonyEditor(two_edge_colony(), UpdateRule(rho=0.1, ants=4, eps=1.0))
    for _ in range(4):
        colony.apply(sample("A", cost=0.0), np.array([1.0]))
    assert colony.tau[0, 1] == pytest.approx(0.9)


def test_intent_weighted_evaporation_spares_the_other_specialist():
    rule = UpdateRule(rho=0.1, ants=1, eps=1.0, evaporation="intent")
    editor = ColonyEditor(two_edge_colony(("a", "b")), rule)
    editor.apply(sample("A", cost=0.0), np.array([1.0, 0.0]))
    assert editor.tau[1].tolist() == [1.0, 1.0]  # type b untouched
    assert editor.tau[0].tolist() == pytest.approx([0.9 + 1.0, 0.9])
    literal = ColonyEditor(
        two_edge_colony(("a", "b")), UpdateRule(rho=0.1, ants=1, eps=1.0, evaporation="all")
    )
    literal.apply(sample("A", cost=0.0), np.array([1.0, 0.0]))
    assert literal.tau[1].tolist() == pytest.approx([0.9, 0.9])


def test_max_min_clamping():
    editor = ColonyEditor(two_edge_colony(), UpdateRule(rho=0.5, ants=1, eps=0.1, tau_min=0.3, tau_max=2.0))
    for _ in range(20):
        editor.apply(sample("A", cost=0.0), np.array([1.0]))
    assert editor.tau[0].tolist() == pytest.approx([2.0, 0.3])


def test_path_edges_hang_fan_out_off_the_previous_layer():
    assert path_edges(["a", "b", "b", "c"]) == [(-1, 0), (0, 1), (0, 2), (2, 3)]


def test_invalid_rule_names_the_parameter():
    with pytest.raises(ConfigurationError, match="rho"):
        UpdateRule(rho=1.5)
    with pytest.raises(ConfigurationError, match="tau_min"):
        AntColonyRouter(tau_min=5.0, tau_max=1.0).fit(tiny_table())


# -- online learning through observe() --------------------------------------------------------------
def finish(
    router: Router, model: str, score: float, *, task_id: str, cost: float = 0.1, stage: str = "execute"
) -> None:
    step = Step(task_id=task_id, index=0, stage=stage, agent=Agent(model=model), cost_usd=cost, score=score)
    router.observe(step)
    router.observe(step, Task(id=task_id, query="aa question", status="done", score=score, cost_usd=cost))


def test_quality_gate_threshold_and_judge():
    router = fitted(quality_threshold=0.7)
    for i, score in enumerate([0.9, 0.5, 0.7, 0.0]):
        finish(router, "m1", score, task_id=f"t{i}")
    router.flush()
    s = router.stats()
    assert (s["accepted"], s["rejected"], s["applied"]) == (2, 2, 2)

    seen: list[Trajectory] = []

    def judge(traj: Trajectory) -> bool:
        seen.append(traj)
        return traj.steps[-1].agent.model == "m2"

    judged = fitted(judge=judge)
    seen.clear()  # the judge also gated the warm start's logged paths
    finish(judged, "m1", 1.0, task_id="x")
    finish(judged, "m2", 0.0, task_id="y")
    judged.flush()
    assert (judged.stats()["accepted"], judged.stats()["rejected"]) == (1, 1)
    assert {t.task.id for t in seen} == {"x", "y"}

    def flaky(traj: Trajectory) -> float:
        if traj.task.id == "bad":
            raise RuntimeError("judge unavailable")
        return 0.9

    judged.set_params(judge=flaky)
    for task_id in ("ok1", "bad", "ok2"):
        finish(judged, "m1", 0.0, task_id=task_id)
    judged.flush()
    s = judged.stats()
    assert (s["accepted"], s["rejected"], s["judge_errors"], s["applied"]) == (3, 2, 1, 3)


def test_online_updates_use_real_stages_and_learn():
    router = fitted(greedy=True, deposit_eps=1.0)
    for i in range(60):
        finish(router, "m2", 1.0, task_id=f"t{i}", stage="solve", cost=0.1)
        finish(router, "m1", 0.0, task_id=f"u{i}", stage="solve", cost=1.0)
    router.flush()
    d = router.export_pheromones()
    assert {"solve"} <= {layer["stage"] for layer in d["layers"]}
    assert router.route(ctx("aa question", stage="solve")).agent.model == "m2"
    assert router.stats()["applied"] == router.stats()["accepted"] == 60


def test_buffer_is_bounded_and_drops_the_oldest():
    gate_open = threading.Event()

    def slow_judge(traj: Trajectory) -> bool:
        gate_open.wait(10)
        return True

    router = fitted(buffer_size=4, update_batch=1).set_params(judge=slow_judge)
    finish(router, "m1", 1.0, task_id="first")
    deadline = time.monotonic() + 5
    while router.stats()["buffered"] != 1 or router._worker._busy != 1:  # the worker holds "first"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    for i in range(10):
        finish(router, "m1", 1.0, task_id=f"t{i}")
    assert router.stats()["dropped"] == 6
    gate_open.set()
    router.flush()
    s = router.stats()
    assert s["sampled"] == 11 and s["accepted"] == s["applied"] == 5 and s["dropped"] == 6


def test_sample_rate_is_seeded():
    router = fitted(sample_rate=0.3)
    for i in range(400):
        finish(router, "m1", 1.0, task_id=f"t{i}")
    router.flush()
    s = router.stats()
    assert s["observed"] == 400 and 80 < s["sampled"] < 160 and s["applied"] == s["sampled"]


def test_concurrent_routing_while_the_worker_updates_no_torn_reads_no_lost_updates():
    # ρ = 0 and a high τ_max: every accepted deposit must be in τ exactly once, whatever the order
    router = fitted(rho=0.0, tau_max=1e9, deposit_eps=1.0, update_batch=7, buffer_size=10_000)
    start = router._colony
    base_m1 = float(start.tau[0, start.edge_index[(START, start.node_index[("*", "m1")])]])
    stop = threading.Event()
    errors: list[str] = []

    def reader() -> None:
        last = -1
        while not stop.is_set():
            colony = router._colony
            if colony.tau.shape != (len(colony.task_types), len(colony.edges)):
                errors.append("torn colony")
            d = router.route(ctx("aa question"))
            version = d.evidence["colony_updates"]
            if version < last or abs(sum(d.evidence["p"]) - 1) > 1e-9:
                errors.append(f"inconsistent decision at version {version}")
            last = version
            time.sleep(0.0001)  # a serving thread also waits on I/O

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    n = 3000
    for i in range(n):
        finish(router, "m1", float(i % 3 != 0), task_id=f"t{i}", cost=0.5)
    assert router.flush(timeout=120)
    stop.set()
    for t in threads:
        t.join()
    s = router.stats()
    good = sum(1 for i in range(n) if i % 3 != 0)
    assert not errors
    assert s["accepted"] == s["applied"] == good and s["rejected"] == n - good and s["dropped"] == 0
    colony = router._colony
    deposit = 1.0 / (0.5 / colony.cost_scale + 1.0)
    # the online node execute/m1 starts from its warm-start twin's τ, then gets every deposit once
    e_m1 = colony.edge_index[(START, colony.node_index[("execute", "m1")])]
    assert colony.tau[0, e_m1] == pytest.approx(base_m1 + good * deposit, rel=1e-9)  # type a: "aa question"


# -- fit: skipped trajectories, persistence ---------------------------------------------------------
def test_fit_skips_and_counts_trajectories_outside_the_pool(caplog):
    def traj(model: str, score: float | None) -> Trajectory:
        task = Task(query="aa question", task_type="a", status="done", score=score)
        return Trajectory(
            task=task,
            steps=[Step(task_id=task.id, index=0, stage="solve", agent=Agent(model=model), score=score)],
        )

    data = [
        traj("m1", 1.0),
        traj("m2", 0.0),
        traj("ghost", 1.0),
        traj("m1", None),
        Trajectory(task=Task(query="x")),
    ]
    with caplog.at_level("WARNING"):
        router = AntColonyRouter(intent=KeywordIntent(), models=["m1", "m2"]).fit(data)
    assert router.skipped_ == 3
    assert router.skip_reasons_ == {"agent not in models": 1, "no score": 1, "no finished step": 1}
    assert "skipped 3" in caplog.text
    assert [layer["stage"] for layer in router.export_pheromones()["layers"]] == ["solve"]


def test_save_load_round_trip_and_clear_state_file_errors(tmp_path):
    router = AntColonyRouter(intent="none", greedy=True).fit(tiny_table())
    finish(router, "m2", 1.0, task_id="t", stage="solve")
    router.flush()
    path = router.save(tmp_path / "ok")
    loaded = Router.load(path)
    assert isinstance(loaded, AntColonyRouter)
    assert loaded.export_pheromones() == router.export_pheromones()
    c = ctx("aa question", stage="solve")
    assert loaded.route(c).evidence["p"] == router.route(c).evidence["p"]

    bad = router.save(tmp_path / "json")
    (bad / "router.json").write_text("{not json")
    with pytest.raises(StateFileError, match=r"router\.json: not valid JSON"):
        AntColonyRouter.load(bad)

    gone = router.save(tmp_path / "gone")
    (gone / "arrays.npz").unlink()
    with pytest.raises(StateFileError, match=r"arrays\.npz: missing"):
        AntColonyRouter.load(gone)

    junk = router.save(tmp_path / "junk")
    (junk / "arrays.npz").write_bytes(b"not a zip")
    with pytest.raises(StateFileError, match=r"arrays\.npz: not a readable"):
        AntColonyRouter.load(junk)

    shape = router.save(tmp_path / "shape")
    arrays = dict(np.load(shape / "arrays.npz"))
    arrays["tau"] = np.ones((1, 1))
    np.savez(shape / "arrays.npz", **arrays)
    with pytest.raises(StateFileError, match=r"router\.json: incompatible state .*'tau' has shape"):
        AntColonyRouter.load(shape)

    version = router.save(tmp_path / "version")
    manifest = json.loads((version / "router.json").read_text())
    manifest["state"]["format"] = 99
    (version / "router.json").write_text(json.dumps(manifest))
    with pytest.raises(StateFileError, match="pheromone state format 99"):
        AntColonyRouter.load(version)


def test_registered_by_name_with_paper_defaults():
    router = make_router("ant-colony")
    assert isinstance(router, AntColonyRouter)
    p = router.get_params()
    assert (p["alpha"], p["beta"], p["rho"], p["q"], p["sample_rate"], p["buffer_size"]) == (
        1.0,
        2.0,
        0.1,
        1.0,
        1.0,
        1024,
    )
    assert (p["tau_min"], p["tau_max"], p["ants"], p["deposit_eps"]) == (0.1, 10.0, 16, 10.0)
    assert (p["lambda_ability"], p["lambda_load"], p["lambda_latency"]) == (0.6, 0.2, 0.2)


# -- real data --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def routerbench(data_dir):
    from agentroute.eval.datasets import load_dataset

    return load_dataset(f"routerbench:{data_dir / 'routerbench'}")


def test_warm_start_beats_an_untrained_colony_on_routerbench(routerbench):
    from agentroute.eval.harness import build_contexts

    ctxs, _ = build_contexts(routerbench, "test")
    table = routerbench.test
    cols = {m: j for j, m in enumerate(table.models)}

    def accuracy(router: AntColonyRouter) -> float:
        router.prime([c.query for c in ctxs])
        picks = [cols[router.route(c).agent.model] for c in ctxs]
        return float(table.scores[np.arange(len(ctxs)), picks].mean())

    warm = accuracy(AntColonyRouter(greedy=True).fit(routerbench))
    cold = accuracy(AntColonyRouter(greedy=True, warm_start=False).fit(routerbench))
    best_single = float(np.nanmean(table.scores, axis=0).max())
    assert warm >= best_single - 0.01
    assert warm > cold + 0.1


def test_load_and_latency_terms_by_hand():
    router = fitted(greedy=True)
    for model, ms in (("m1", 900.0), ("m2", 100.0)):
        step = Step(task_id="lat", index=0, stage="execute", agent=Agent(model=model), latency_ms=ms)
        router.observe(step)
    router.route(ctx("aa question", task_id="busy1"))  # m1 (the better one) now has a call in flight
    ev = router.route(ctx("aa question", task_id="probe")).evidence
    assert ev["load"] == [1.0, 0.0] and ev["latency_ms"] == [900.0, 100.0]
    # wait = load × latency: m1 900 ms, m2 0 → 1/(900 + 1000) vs 1/1000, divided by the larger
    load_term = [0.2 * (1 / 1900) / (1 / 1000), 0.2]
    latency_term = [0.2 * (1 / 1000) / (1 / 200), 0.2]
    ability_term = [0.6, 0.0]
    assert ev["eta"] == pytest.approx(
        [a + b + c for a, b, c in zip(ability_term, load_term, latency_term, strict=True)]
    )
    calls = fitted(greedy=True, load_unit="calls", load_eps=1.0)
    calls.observe(Step(task_id="x", index=0, stage="execute", agent=Agent(model="m2")))
    calls.route(ctx("aa question", task_id="busy"))
    ev = calls.route(ctx("aa question", task_id="probe")).evidence
    assert ev["eta"][0] == pytest.approx(0.6 + 0.2 * (1 / 2) + 0.2)


def test_routers_show_writes_pheromone_json_and_plots(tmp_path):
    from typer.testing import CliRunner

    from agentroute.cli.routers_cmd import routers_app

    router = AntColonyRouter(intent="none").fit(tiny_table())
    for i in range(5):
        plan = Step(
            task_id=f"t{i}", index=0, stage="plan", agent=Agent(role="planner", model="m1"), score=1.0
        )
        solve = Step(
            task_id=f"t{i}", index=1, stage="solve", agent=Agent(model="m2"), score=1.0, cost_usd=0.1
        )
        router.observe(plan)
        router.observe(solve, Task(id=f"t{i}", query="q", status="done", score=1.0, cost_usd=0.1))
    router.flush()
    state = router.save(tmp_path / "state")
    result = CliRunner().invoke(
        routers_app, ["show", "ant-colony", "--state", str(state), "--out", str(tmp_path / "ev")]
    )
    assert result.exit_code == 0, result.output
    export = json.loads((tmp_path / "ev" / "pheromones.json").read_text())
    assert [layer["stage"] for layer in export["layers"]] == ["*", "plan", "solve"]
    assert {"source": "plan/m1", "target": "solve/m2"} in [
        {k: e[k] for k in ("source", "target")} for e in export["edges"]
    ]
    pngs = sorted(p.name for p in (tmp_path / "ev").glob("*.png"))
    assert pngs == ["paths_general.png", "pheromone_general.png", "pheromone_overview.png"]
    assert all((tmp_path / "ev" / name).stat().st_size > 10_000 for name in pngs)
    bad = CliRunner().invoke(
        routers_app,
        ["show", "ant-colony", "--state", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")],
    )
    assert bad.exit_code == 2 and "no saved router here" in bad.output  # a bad --state is bad input


def test_serve_mode_is_the_argmax_and_explore_mode_samples():
    sampler = fitted(seed=3)
    assert sampler.mode == "explore" and sampler.exploring  # a new colony explores (online learning)
    contexts = [ctx("mix question", task_id=f"t{i}") for i in range(200)]
    explored = [sampler.route(c).agent.model for c in contexts]
    served = [sampler.serve().route(c) for c in contexts]
    assert {d.evidence["mode"] for d in served} == {"greedy"}
    assert {d.agent.model for d in served} == {fitted(greedy=True).route(contexts[0]).agent.model}
    assert len(set(explored)) > 1
    assert [sampler.explore().route(c).agent.model for c in contexts] == explored  # same seeded draws

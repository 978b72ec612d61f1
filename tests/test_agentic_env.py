"""The offline agentic environment: tasks, success rules, determinism, hard budgets, taxonomy, BoSFT."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from agentroute.agentic import (
    AgenticEnv,
    boundary_rollouts,
    build_tasks,
    classify,
    summarize,
    synthesize_bosft,
    task_succeeds,
)
from agentroute.agentic.rollout import Job, fixed_tier, random_mix, rollout
from agentroute.budget import Budget
from agentroute.errors import ConfigurationError
from agentroute.outcomes import OutcomeTable
from agentroute.routers import CascadeRouter
from agentroute.routers.tiers import (
    AlwaysLargeRouter,
    AlwaysSmallRouter,
    FirstStepLargeRouter,
    RandomMixRouter,
)

SMALL, LARGE = "small-model", "large-model"


def make_table(
    small: list[float], large: list[float], types: list[str], *, c_small=1e-4, c_large=1e-2
) -> OutcomeTable:
    n = len(small)
    rng = np.random.default_rng(0)
    costs = np.stack([c_small * (1 + 0.1 * rng.random(n)), c_large * (1 + 0.1 * rng.random(n))], axis=1)
    return OutcomeTable(
        query_ids=[f"q{i}" for i in range(n)],
        queries=[f"{types[i]} question number {i}" for i in range(n)],
        models=[SMALL, LARGE],
        scores=np.array([small, large], dtype=float).T,
        costs=costs,
        task_types=list(types),
    )


def random_table(n: int = 120, seed: int = 0) -> OutcomeTable:
    rng = np.random.default_rng(seed)
    types = [("a", "b", "c")[i % 3] for i in range(n)]
    p_small = {"a": 0.9, "b": 0.5, "c": 0.2}
    small = [float(rng.random() < p_small[t]) for t in types]
    large = [float(rng.random() < 0.9) for _ in types]
    return make_table(small, large, types)


def embeddings(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32)


# -- tasks and rules ---------------------------------------------------------------------------
def test_tasks_group_same_type_queries_and_variants_start_with_the_anchor():
    table = random_table(31)
    tasks, left = build_tasks(table.task_types, steps=3, variants=4, embeddings=embeddings(31))
    assert left == 31 - 3 * len(tasks)
    for task in tasks:
        assert len({table.task_types[r] for r in task.rows}) == 1
        for row, variants in zip(task.rows, task.variants, strict=True):
            assert variants[0] == row and len(variants) == 4
            assert {table.task_types[v] for v in variants} == {task.task_type}


@pytest.mark.parametrize(
    ("rule", "ok", "expected"),
    [("all", [1, 1, 1], True), ("all", [1, 0, 1], False), ("majority", [1, 0, 1], True),
     ("any", [0, 0, 1], True), ("last", [1, 1, 0], False), (0.5, [1, 1], True), (0.9, [1, 1], False)],
)  # fmt: skip
def test_success_rules(rule, ok, expected):
    assert task_succeeds([bool(x) for x in ok], 3, rule) is expected


def test_bad_parameters_fail_before_anything_runs():
    table = random_table(30)
    with pytest.raises(ConfigurationError, match="success_rule"):
        AgenticEnv(table, success_rule="most")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="not models of the table"):
        AgenticEnv(table, tiers=[SMALL, "gpt-9"])
    with pytest.raises(ConfigurationError, match="needs embeddings"):
        AgenticEnv(table, variants=3)
    with pytest.raises(ConfigurationError, match="no task of 50 steps"):
        AgenticEnv(table, steps=50)


def test_task_success_and_costs_come_from_the_logged_outcomes():
    table = make_table([1, 0, 1], [1, 1, 0], ["x"] * 3)
    env = AgenticEnv(table, steps=3, tiers=[SMALL, LARGE])
    (small,) = env.run(AlwaysSmallRouter())
    (large,) = env.run(AlwaysLargeRouter())
    assert not small.success and not large.success  # each boundary fails one step
    assert small.cost_usd == pytest.approx(table.costs[:, 0].sum())
    assert large.large_calls == 3 and small.large_calls == 0
    assert (
        AgenticEnv(table, steps=3, tiers=[SMALL, LARGE], success_rule="majority")
        .run(AlwaysSmallRouter())[0]
        .success
    )


def test_rollouts_are_deterministic_for_a_seed_and_differ_across_rollouts():
    table = random_table(90)
    env = AgenticEnv(table, steps=3, variants=5, embeddings=embeddings(90), seed=3)
    one = env.run(RandomMixRouter(p_large=0.5), rollouts=5, seed=11)
    two = env.run(RandomMixRouter(p_large=0.5), rollouts=5, seed=11)
    assert [(r.rows, r.tiers, r.success, r.cost_usd) for r in one] == [
        (r.rows, r.tiers, r.success, r.cost_usd) for r in two
    ]
    rows_per_task = [{r.rows for r in one if r.task_id == t.id} for t in env.tasks]
    assert any(len(rows) > 1 for rows in rows_per_task), "K rollouts of a task should see different variants"
    anchors = env.run(AlwaysSmallRouter())
    assert [r.rows for r in anchors] == [t.rows for t in env.tasks]


# -- hard budgets ------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
def test_budget_caps_are_never_violated(seed):
    """Property-style: random tables, budgets and routers; spending never exceeds any cap."""
    rng = np.random.default_rng(seed)
    table = random_table(150, seed=seed)
    env = AgenticEnv(table, steps=int(rng.integers(2, 6)), variants=3, embeddings=embeddings(150, seed))
    large_cost = float(np.mean([env.cap(env.large, r) for t in env.tasks for r in t.rows]))
    routers = [
        AlwaysLargeRouter(),
        FirstStepLargeRouter(),
        RandomMixRouter(p_large=0.7, seed=seed),
        AlwaysSmallRouter(),
    ]
    for _ in range(6):
        budget = Budget(
            large_calls=int(rng.integers(1, 4)) if rng.random() < 0.6 else None,
            usd=float(rng.uniform(0.05, 2.5) * large_cost) if rng.random() < 0.6 else None,
        ) if rng.random() < 0.9 else Budget(usd=1e-9)  # fmt: skip
        for router in routers:
            results = env.run(router, budget=budget, rollouts=2, seed=int(rng.integers(1000)))
            assert summarize(results)["budget_violations"] == 0
            for r in results:
                if budget.usd is not None:
                    assert r.cost_usd <= budget.usd + 1e-12
                if budget.large_calls is not None:
                    assert r.large_calls <= budget.large_calls


def test_masked_large_tier_falls_back_to_the_cheapest():
    table = make_table([1] * 6, [1] * 6, ["x"] * 6)
    env = AgenticEnv(table, steps=3, tiers=[SMALL, LARGE])
    results = env.run(AlwaysLargeRouter(), budget=Budget(large_calls=1))
    assert [r.tiers for r in results] == [(1, 0, 0)] * 2
    assert all(r.status == "done" and r.success for r in results)


def test_a_cap_no_tier_fits_ends_the_task_budget_exhausted():
    table = make_table([1] * 6, [1] * 6, ["x"] * 6)
    env = AgenticEnv(table, steps=3, tiers=[SMALL, LARGE])
    results = env.run(AlwaysLargeRouter(), budget=Budget(usd=1e-6))
    assert {r.status for r in results} == {"budget_exhausted"}
    assert all(r.calls == 0 and r.cost_usd == 0 and not r.success and not r.violation for r in results)
    # a cap that fits two small calls: the task runs out on its third step
    two = float(np.max(table.costs[:, 0])) * 1.1 * 2.5
    partial = env.run(AlwaysSmallRouter(), budget=Budget(usd=two))
    assert {r.status for r in partial} == {"budget_exhausted"} and {r.calls for r in partial} == {2}


def test_calls_dearer_than_their_worst_case_are_cut_off_and_failed():
    table = make_table([1, 1, 1], [1, 1, 1], ["x"] * 3)
    env = AgenticEnv(
        table, steps=3, tiers=[SMALL, LARGE], cost_caps={(SMALL, None): 1e-9, (LARGE, None): 1.0}
    )
    (r,) = env.run(AlwaysSmallRouter())
    assert r.truncated == 3 and not r.success and r.cost_usd == pytest.approx(3e-9)


def test_feedback_shows_failures_and_lets_a_cascade_escalate():
    table = make_table([0, 1, 1], [1, 1, 1], ["x"] * 3)
    hidden = AgenticEnv(table, steps=3, tiers=[SMALL, LARGE])
    shown = AgenticEnv(table, steps=3, tiers=[SMALL, LARGE], feedback=True, max_attempts=2)
    cascade = CascadeRouter().fit(table)
    assert not hidden.run(cascade)[0].success  # no feedback: nothing to escalate on
    (r,) = shown.run(cascade)
    assert r.success and r.large_calls == 1 and r.calls == 4  # small failed on step 0, large redid it


def test_lockstep_rollouts_let_the_policy_escalate_a_failed_step():
    """At a retry state the failed tier means "accept"; an untried one redoes the step."""
    table = random_table(120)
    env = AgenticEnv(table, steps=3, feedback=True, max_attempts=2)
    jobs = [Job(i, t.rows) for i, t in enumerate(env.tasks)]

    def small_then_escalate(batch):
        for ep, mask in zip(batch.episodes, batch.masks, strict=True):
            if ep.attempts:
                assert mask[ep.tiers[-1]] and mask.sum() == 2  # accept, or the untried large tier
        return np.array([1 if ep.attempts else 0 for ep in batch.episodes]), np.zeros(len(batch.episodes))

    escalating = rollout(env, jobs, small_then_escalate, ref_usd=1e-2)
    accepting = rollout(env, jobs, fixed_tier(0), ref_usd=1e-2)
    cascade = env.run(CascadeRouter().fit(table))
    assert [t.result.tiers for t in escalating] == [r.tiers for r in cascade]
    assert (
        summarize([t.result for t in escalating])["success_rate"]
        > summarize([t.result for t in accepting])["success_rate"]
    )
    assert all(t.result.calls == 3 for t in accepting)


# -- boundary policies, taxonomy, BoSFT ---------------------------------------------------------
def taxonomy_table() -> OutcomeTable:
    """Type e: small always right (easy); h: small wrong, large right (hard); i: both wrong."""
    types = ["e"] * 6 + ["h"] * 6 + ["i"] * 6
    small = [1.0] * 6 + [0.0] * 6 + [0.0] * 6
    large = [1.0] * 6 + [1.0] * 6 + [0.0] * 6
    return make_table(small, large, types)


def test_taxonomy_on_a_hand_built_table():
    table = taxonomy_table()
    env = AgenticEnv(table, steps=2, variants=3, equivalence="task_type")
    boundary = boundary_rollouts(env, rollouts=5, ref_usd=1e-2)
    by_type = {t.task_type: d for t, d in zip(env.tasks, boundary.difficulty, strict=True)}
    assert by_type == {"e": "easy", "h": "hard", "i": "intractable"}
    assert boundary.counts() == {"easy": 3, "hard": 3, "intractable": 3}
    assert (
        classify(0.4, 0.6) == "hard" and classify(0.6, 0.0) == "easy" and classify(0.0, 0.2) == "intractable"
    )


def test_bosft_keeps_the_cheapest_successful_trajectory():
    # small fails only on odd rows, so a hard task's cheapest success uses large exactly there
    small = [1.0, 0.0] * 6
    table = make_table(small, [1.0] * 12, ["h"] * 12)
    env = AgenticEnv(table, steps=2, tiers=[SMALL, LARGE])
    boundary = boundary_rollouts(env, rollouts=1, ref_usd=1e-2)
    hard = boundary.tasks_of("hard")
    assert hard and set(boundary.difficulty) <= {"easy", "hard"}
    data = synthesize_bosft(env, boundary, sweep=200, ref_usd=1e-2)  # P(miss the cheapest) ~ 1e-14
    assert set(data.chosen) == set(hard)
    for i, trace in data.chosen.items():
        rows = env.tasks[i].rows
        assert trace.result.success
        assert list(trace.actions) == [0 if small[r] else 1 for r in rows]
        assert trace.result.cost_usd <= boundary.large[i][0].result.cost_usd


def test_bosft_without_hard_tasks_warns_and_still_has_data(caplog):
    table = make_table([1.0] * 6 + [0.0] * 6, [1.0] * 6 + [0.0] * 6, ["e"] * 6 + ["i"] * 6)
    env = AgenticEnv(table, steps=2, tiers=[SMALL, LARGE])
    boundary = boundary_rollouts(env, rollouts=1, ref_usd=1e-2)
    with caplog.at_level(logging.WARNING):
        data = synthesize_bosft(env, boundary, ref_usd=1e-2)
    assert "no hard task" in caplog.text and data.messages
    assert (
        len(data) == 12 and set(data.actions.tolist()) == {0} and data.tasks == {"easy": 3, "intractable": 3}
    )
    assert data.weights.mean() == pytest.approx(1.0)


def test_lockstep_rollouts_record_states_and_respect_the_ledger():
    table = random_table(60)
    env = AgenticEnv(table, steps=3)
    jobs = [Job(i, t.rows, Budget(large_calls=1)) for i, t in enumerate(env.tasks)]
    traces = rollout(env, jobs, random_mix(1.0, np.random.default_rng(0)), ref_usd=1e-2)
    for trace in traces:
        assert trace.result.large_calls == 1 and trace.actions == [1, 0, 0]
        assert [bool(m[1]) for m in trace.masks] == [True, False, False]
        assert len(trace.scalars) == 3 and all(s.shape == trace.scalars[0].shape for s in trace.scalars)
    small = rollout(env, jobs, fixed_tier(0), ref_usd=1e-2)
    assert summarize([t.result for t in small])["mean_large_calls"] == 0

"""Issue 16: can cross-model agreement beat the per-task ceiling on RouterBench? (an upper bound)

The idea (agreement-based cascades: Yue et al., "Large Language Model Cascades with Mixture of
Thought Representations", arXiv 2310.03094; Kolawole et al., "Agreement-Based Cascading for
Efficient Inference", arXiv 2407.02348): call two or three cheap models; when their answers agree,
keep the answer, otherwise pay for a strong model. What a deployment knows after the cheap calls is
their answers, so this is a signal beyond the task that no pre-call router has. Logged RouterBench
responses make it replayable: answers are compared after :func:`agentroute.strategies.extract_answer`
and :func:`~agentroute.strategies.normalize_answer` (an empty answer never agrees).

A *plan* is either one model, or voters v₁ < … < v_k (k = 2, 3, cheapest first, stopping at the
first disagreement) with a fallback f. For each task and each cost weight λ the plan maximising
``train score − λ · train cost / scale`` is chosen on the train split and replayed on test; every
call is paid. Plans are chosen per **true** task label, so this is an upper bound on what a router
that infers the task could reach; the reference is the same per-true-task choice among single
models only (the per-task lookup with a perfect intent model). Variants: ``agree`` (unanimous
voters, else fallback) and ``vote`` (3–5 cheap voters, the plurality answer if it has ≥ m votes).

    python benchmarks/agreement_cascade.py [--boot 500]

Prints AIQ of each variant, the paired-bootstrap interval of its gain over the single-model plan,
and quality at a few costs per query.
"""

from __future__ import annotations

import argparse
import itertools
from collections import Counter

import numpy as np

from agentroute.eval import metrics as M
from agentroute.eval.datasets import load_dataset
from agentroute.outcomes import OutcomeTable
from agentroute.strategies import extract_answer, normalize_answer

LAMBDAS = [0.0, *np.geomspace(1e-3, 1e3, 60)]


def answer_keys(table: OutcomeTable) -> np.ndarray:
    assert table.responses is not None, "the dataset carries no responses"
    return np.array([[normalize_answer(extract_answer(r)) for r in row] for row in table.responses], dtype=object)


def replay(plan: tuple, s: np.ndarray, c: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(score, cost) per query of a plan: ("one", m) | ("agree", voters, f) | ("vote", voters, m, f)."""
    if plan[0] == "one":
        return s[:, plan[1]], c[:, plan[1]]
    if plan[0] == "agree":
        voters, f = plan[1], plan[2]
        first = k[:, voters[0]]
        agree, cost = first != "", c[:, voters[0]].copy()
        for v in voters[1:]:
            cost += np.where(agree, c[:, v], 0.0)  # stop calling at the first disagreement
            agree &= k[:, v] == first
        return np.where(agree, s[:, voters[-1]], s[:, f]), cost + np.where(agree, 0.0, c[:, f])
    voters, need, f = plan[1], plan[2], plan[3]
    score, cost = np.zeros(len(s)), c[:, list(voters)].sum(1)
    for i in range(len(s)):
        votes = Counter(k[i, v] for v in voters if k[i, v] != "")
        top, n = votes.most_common(1)[0] if votes else ("", 0)
        if n >= need:
            score[i] = s[i, next(v for v in voters if k[i, v] == top)]
        else:
            score[i], cost[i] = s[i, f], cost[i] + c[i, f]
    return score, cost


def plans(table: OutcomeTable, variant: str) -> list[tuple]:
    n = len(table.models)
    singles = [("one", m) for m in range(n)]
    order = np.argsort(table.costs.mean(0))
    if variant == "one":
        return singles
    if variant == "agree":
        return singles + [
            ("agree", tuple(int(x) for x in order if x in v), f)
            for size in (2, 3) for v in itertools.combinations(range(n), size) for f in range(n) if f not in v
        ]  # fmt: skip
    cheap = [int(m) for m in order if table.costs[:, m].mean() < 0.2 * table.costs.mean(0).max()]
    strong = int(np.argmax(table.scores.mean(0)))
    return singles + [
        ("vote", v, need, strong)
        for size in (3, 4, 5) for v in itertools.combinations(cheap, size) for need in range(2, size + 1)
    ]  # fmt: skip


def sweep(train: OutcomeTable, test: OutcomeTable, variant: str) -> tuple[np.ndarray, np.ndarray]:
    """(scores, costs) of shape (n_λ, n_test): per true task, the train-best plan at each λ."""
    k_train, k_test = answer_keys(train), answer_keys(test)
    scale = float(train.costs.mean(0).max())
    candidates = plans(train, variant)
    tasks_train, tasks_test = np.array(train.task_types), np.array(test.task_types)
    scores, costs = np.zeros((len(LAMBDAS), len(test))), np.zeros((len(LAMBDAS), len(test)))
    for task in sorted(set(tasks_test)):
        tr, te = tasks_train == task, tasks_test == task
        fit = np.array([
            [a.mean(), b.mean()] for a, b in (replay(p, train.scores[tr], train.costs[tr], k_train[tr]) for p in candidates)
        ])  # fmt: skip
        for j, lam in enumerate(LAMBDAS):
            best = candidates[int(np.argmax(fit[:, 0] - lam * fit[:, 1] / scale))]
            scores[j, te], costs[j, te] = replay(best, test.scores[te], test.costs[te], k_test[te])
    return scores, costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--boot", type=int, default=500)
    args = parser.parse_args()
    data = load_dataset("routerbench")
    test = data.test
    single = M.single_model_points(test.scores, test.costs)
    anchor = single[np.argmin(single[:, 0])]
    base = sweep(data.train, test, "one")
    print(f"RouterBench test {len(test)} queries; zero router AIQ {M.aiq(single, single):.4f}")
    print("| plan family | AIQ | gain over per-true-task single [90%] | R($0.0005) | R($0.0015) | R($0.0025) |")
    print("|---|---|---|---|---|---|")
    for variant in ("one", "agree", "vote"):
        s, c = base if variant == "one" else sweep(data.train, test, variant)
        points = np.column_stack([c.mean(1), s.mean(1)])
        gain = (
            M.bootstrap_aiq_difference((s, c), base, (test.scores, test.costs), n_boot=args.boot)
            if variant != "one" else (0.0, 0.0, 0.0)
        )  # fmt: skip
        at = [M.quality_at_cost(points, x, anchor) for x in (0.0005, 0.0015, 0.0025)]
        print(
            f"| {variant} | {M.aiq(points, single):.4f} | {gain[0]:+.4f} [{gain[1]:+.4f}, {gain[2]:+.4f}] | "
            + " | ".join(f"{q:.4f}" for q in at) + " |"
        )  # fmt: skip


if __name__ == "__main__":
    main()

"""Metrics of agentroute.eval, each checked against a hand computation (plus the module's doctests)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from agentroute.errors import ConfigurationError
from agentroute.eval import harness, metrics
from agentroute.eval import metrics as M

SINGLES = np.array([[1.0, 0.5], [2.0, 0.6], [4.0, 0.9]])  # cost, accuracy


@pytest.mark.parametrize("module", [metrics, harness], ids=lambda m: m.__name__)
def test_doctests(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


def test_accuracy_and_mean_cost():
    assert M.accuracy([1, 0, 0, 1]) == 0.5
    assert M.mean_cost([1e-3, 3e-3]) == pytest.approx(2e-3)
    with pytest.raises(ConfigurationError, match="nan"):
        M.accuracy([1.0, float("nan")])  # a missing outcome is never scored 0


def test_oracle_takes_the_cheapest_best_model():
    scores = np.array([[1, 1, 0], [0, 0, 0], [0, 1, 1]])
    costs = np.array([[5, 1, 0.1], [3, 2, 1], [9, 4, 2]])
    # row 0: models 0,1 score 1 → the cheaper (1); row 1: all 0 → cheapest (1.0); row 2: 1,2 → 2 (2.0)
    assert M.oracle_choice(scores, costs).tolist() == [1, 2, 2]
    assert M.oracle(scores, costs) == (pytest.approx(2 / 3), pytest.approx((1 + 1 + 2) / 3))


def test_pareto_frontier_and_hull():
    pts = [[1, 0.5], [2, 0.6], [3, 0.55], [4, 0.9], [5, 0.9], [0.5, 0.1]]
    assert M.pareto_frontier(pts).tolist() == [[0.5, 0.1], [1, 0.5], [2, 0.6], [4, 0.9]]
    # (2, .6) lies under the chord (1, .5)–(4, .9) (which passes .633 at cost 2): not on the hull
    assert M.nondecreasing_hull(pts).tolist() == [[0.5, 0.1], [1, 0.5], [4, 0.9]]
    assert M.zero_router(SINGLES).tolist() == [[1, 0.5], [4, 0.9]]


def test_zero_router_aiq_by_hand():
    # Hull (1, .5)–(4, .9): a straight line, mean height (.5 + .9) / 2 = .7 over [1, 4].
    assert M.aiq(SINGLES, SINGLES) == pytest.approx(0.7)


def test_aiq_extension_conventions():
    # One router point at (2, .8): linear from the cheapest model (1, .5) up to it, then flat at .8.
    # ∫ = 1·(.5 + .8)/2 + 2·.8 = .65 + 1.6 = 2.25 over a range of 3 → .75
    assert M.aiq([[2, 0.8]], SINGLES) == pytest.approx(0.75)
    # A point dearer than every single model counts only up to c_max: (1,.5)→(8, 1.0) at cost 4 is
    # .5 + 3/7·.5; area = 3·(.5 + .7142857)/2
    assert M.aiq([[8, 1.0]], SINGLES) == pytest.approx((0.5 + 0.5 + 1.5 / 7) / 2)
    # A router cheaper than the cheapest model: its hull starts there; R(1) = interpolated
    assert M.aiq([[0.5, 0.6], [4, 0.9]], SINGLES) == pytest.approx((0.6 + 0.3 * 0.5 / 3.5 + 0.9) / 2)


def test_quality_at_cost_cost_to_reach_and_gap_closed():
    router = [[1.5, 0.7], [3.0, 0.95]]
    # own hull (1.5, .7) → (3, .95), flat after; nothing below 1.5
    assert M.quality_at_cost(router, 2.0) == pytest.approx(0.7 + 0.5 * 0.25 / 1.5)
    assert M.quality_at_cost(router, 10.0) == pytest.approx(0.95)
    assert np.isnan(M.quality_at_cost(router, 1.0))
    assert M.cost_to_reach(router, 0.9) == pytest.approx(1.5 + 1.5 * 0.2 / 0.25)
    assert M.cost_to_reach(router, 0.6) == pytest.approx(1.5)
    assert M.cost_to_reach(router, 0.99) is None
    # anchored at the cheapest model (1, .5): reachable below 1.5 by mixing with it
    assert M.quality_at_cost(router, 1.25, anchor=[1.0, 0.5]) == pytest.approx(0.6)
    assert M.cost_to_reach(router, 0.6, anchor=[1.0, 0.5]) == pytest.approx(1.25)
    # a router dominated by the cheapest model: AIQ at the anchor's level, its own curve below it
    assert M.aiq([[3.0, 0.4]], SINGLES) == pytest.approx(0.5)
    assert M.quality_at_cost([[3.0, 0.4]], 4.0) == pytest.approx(0.4)
    # at the best single's cost (4) the router gives .95 (flat); best single .9, oracle 1.0 → .5
    assert M.oracle_gap_closed(router, SINGLES, 1.0) == pytest.approx(0.5)
    assert M.best_single(SINGLES).tolist() == [4.0, 0.9]


def test_apgr_and_cpt_by_hand():
    weak, strong = 0.6, 0.8
    # random mixing recovers the gap linearly: APGR .5, CPT(50%) = .5
    shares = np.linspace(0, 1, 11)
    assert M.apgr(shares, weak + shares * (strong - weak), weak, strong) == pytest.approx(0.5)
    assert M.cpt(shares, weak + shares * (strong - weak), weak, strong, 0.5) == pytest.approx(0.5)
    # a router reaching PGR .8 with 20% strong calls: (0,0)→(.2,.8)→(1,1) = .08 + .72 = .8
    assert M.apgr([0.2], [0.76], weak, strong) == pytest.approx(0.8)
    assert M.cpt([0.2], [0.76], weak, strong, 0.5) == pytest.approx(0.125)
    assert M.cpt([0.2], [0.76], weak, strong, 0.8) == pytest.approx(0.2)
    with pytest.raises(ConfigurationError, match="PGR undefined"):
        M.apgr([0.5], [0.7], 0.7, 0.7)


def test_bootstrap_of_identical_routers_is_zero():
    rng = np.random.default_rng(0)
    n = 200
    s = (rng.random((n, 2)) < [0.5, 0.8]).astype(float)
    c = np.tile([1e-4, 1e-3], (n, 1))
    pick = rng.integers(0, 2, (5, n))
    a = (s[np.arange(n), pick], c[np.arange(n), pick])
    diff, low, high = M.bootstrap_aiq_difference(a, a, (s, c), n_boot=50)
    assert diff == low == high == 0.0
    strong = (np.tile(s[:, 1], (1, 1)), np.tile(c[:, 1], (1, 1)))
    weak = (np.tile(s[:, 0], (1, 1)), np.tile(c[:, 0], (1, 1)))
    diff, low, high = M.bootstrap_aiq_difference(strong, weak, (s, c), n_boot=200, seed=1)
    assert low < diff < high


def test_bad_points_are_refused():
    with pytest.raises(ConfigurationError, match="no"):
        M.pareto_frontier(np.zeros((0, 2)))
    with pytest.raises(ConfigurationError, match="non-finite"):
        M.aiq([[np.nan, 0.5]], SINGLES)


def test_bootstrap_against_the_zero_router():
    rng = np.random.default_rng(2)
    s = (rng.random((150, 3)) < [0.4, 0.6, 0.9]).astype(float)
    c = np.tile([1e-4, 5e-4, 2e-3], (150, 1))
    # a "router" whose sweep points are the single models themselves is the zero router
    singles_as_router = (s.T.copy(), c.T.copy())
    diff, low, high = M.bootstrap_aiq_difference(singles_as_router, None, (s, c), n_boot=30)
    assert diff == pytest.approx(0) and low == pytest.approx(0) and high == pytest.approx(0)


def test_aiq_anchors_at_the_tied_cheapest_model_the_router_uses():
    singles = np.array([[1.0, 0.2], [1.0, 0.6], [3.0, 0.9]])  # two models tie for the cheapest cost
    router = np.array([[3.0, 0.9]])  # only ever the dear model
    assert M.cheapest_models(singles).tolist() == [0, 1]
    never = M.anchor_index(singles, np.array([[2, 2, 2]]))
    assert never == 0  # it uses neither: the worst of them, not the best
    assert M.aiq(router, singles, never) == pytest.approx((0.2 + 0.9) / 2)
    assert M.aiq(router, singles) == pytest.approx((0.6 + 0.9) / 2)  # the best-of-tied convention
    uses_b = M.anchor_index(singles, np.array([[1, 1, 2], [2, 2, 2]]))
    assert uses_b == 1


# -- calibration (issue 16) ------------------------------------------------------------------------
def test_reliability_separates_a_calibrated_from_an_overconfident_predictor(tmp_path):
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20000)
    y = (rng.uniform(0, 1, p.size) < p).astype(float)  # outcomes drawn at the predicted rate
    good = M.reliability(p, y)
    bad = M.reliability(np.where(p > 0.5, 1.0, 0.0), y)  # rounds every prediction to 0 or 1
    assert good["ece"] < 0.02 and bad["ece"] > 0.2
    assert abs(good["brier"] - np.mean(p * (1 - p))) < 0.01  # Brier of a calibrated p: E[p(1 − p)]
    assert good["count"].sum() == p.size and np.allclose(good["mean_outcome"], good["mean_pred"], atol=0.03)
    soft = M.reliability([0.25, np.nan, 0.75], [0.5, 1.0, np.nan], bins=4)  # nan cells dropped; soft outcomes
    assert soft["count"].sum() == 1 and soft["ece"] == pytest.approx(0.25)
    from agentroute.eval.plots import plot_reliability

    path = plot_reliability({"good": good, "bad": bad}, tmp_path / "r.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

"""ant-colony's exploration knob `explore_temperature` (T: agents drawn with p ∝ (τ^α η^β)^(1/T)
in explore mode): typed and checked, listed by `agentroute routers list`, and it moves the draws."""

import pytest

from agentroute.cli.routers_cmd import options
from agentroute.errors import ConfigurationError
from agentroute.routers import make_router
from agentroute.routers.ant_colony import AntColonyRouter
from agentroute.testing import contexts, sample_outcomes

TABLE = sample_outcomes(n=30)


def draws(temperature):
    router = make_router("ant-colony", intent="none", task_types="none", explore_temperature=temperature).fit(TABLE)
    ctxs = contexts(TABLE, subsets=False)
    explored = [router.route(c) for c in ctxs]
    served = [router.serve().route(c) for c in ctxs]
    return explored, served


def test_a_higher_temperature_flattens_the_draws_and_leaves_serving_alone():
    cold, cold_served = draws(0.05)
    hot, hot_served = draws(20.0)
    top = [max(d.evidence["p"]) for d in cold], [max(d.evidence["p"]) for d in hot]
    assert min(top[0]) > 0.99 and max(top[1]) < 0.5  # near the argmax; near uniform over 3 agents
    assert [d.agents[0].key for d in cold_served] == [d.agents[0].key for d in hot_served]
    assert [d.agents[0].key for d in cold] == [d.agents[0].key for d in cold_served]  # T→0: the argmax
    assert len({d.agents[0].key for d in hot}) == 3  # T large: every agent drawn


@pytest.mark.parametrize("value", [0, -1.0, float("inf"), "hot", True])
def test_a_bad_temperature_is_refused_naming_the_option(value):
    with pytest.raises(ConfigurationError, match="^ant-colony: '?explore_temperature"):
        make_router("ant-colony", explore_temperature=value)


def test_routers_list_shows_the_knob_with_its_default():
    assert "explore_temperature=1.0" in options(AntColonyRouter).splitlines()

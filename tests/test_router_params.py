"""Router options as users give them: ``make_router``, ``--routers NAME:opt=v``, ``set_params``, a
saved ``router.json``, and ``agentroute routers list``. A value out of range is refused at once,
naming the router and the option, not at ``fit`` (or never)."""

from __future__ import annotations

import inspect
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from agentroute.errors import ConfigurationError, StateFileError
from agentroute.outcomes import OutcomeTable
from agentroute.routers import get_router_class, make_router, router_names
from agentroute.routers.base import Router
from agentroute.types import Agent, RouteContext

NAN = math.nan

# (router, option, bad value): each refused by make_router with both names in the message.
BAD = [
    ("knn", "k", -3),
    ("knn", "k", 0),
    ("knn", "shrinkage", NAN),
    ("knn", "cost_weight", NAN),
    ("knn", "cost_weight", -1.0),
    ("knn", "cost_weight", math.inf),
    ("knn", "seed", None),  # not a knn option: the unknown-name path
    ("logreg", "c", 0.0),
    ("mlp", "validation_fraction", 1.5),
    ("mlp", "hidden", 0),
    ("mlp", "lr", NAN),
    ("mlp", "seed", -1),
    ("mf", "dim", -4),
    ("mf", "validation_fraction", 0.0),
    ("per-task", "prior_strength", -1.0),
    ("best-single", "validation_fraction", 1.0),
    ("stack", "folds", 0),
    ("stack", "bases", ("nope",)),
    ("stack", "validation_fraction", 1.0),
    ("cascade", "threshold", NAN),
    ("cascade", "threshold", 2.0),
    ("random-mix", "p_large", 1.5),
    ("random", "seed", 1.5),  # any integer keys its hashed draws (-1 too), not a fraction
    ("explore", "epsilon", 1.5),
    ("explore", "base", "nope"),
    ("ant-colony", "rho", 2.0),
    ("ant-colony", "ants", 0),
    ("ant-colony", "alpha", NAN),
    ("ant-colony", "cost_weight", math.inf),
    ("graph-router", "lr", -1.0),
    ("graph-router", "epochs", 0),
    ("kg-gnn", "dropout", 1.5),
    ("kg-gnn", "epochs", 0),
    ("kg-gnn", "lr", NAN),
]


@pytest.mark.parametrize(("name", "option", "value"), BAD, ids=[f"{n}-{o}-{v!r}" for n, o, v in BAD])
def test_make_router_refuses_a_bad_value_naming_router_and_option(name: str, option: str, value: object) -> None:
    if name in ("graph-router", "kg-gnn"):
        pytest.importorskip("torch_geometric")
    if option == "seed" and value is None:
        option, value = "kk", 5  # a misspelt option
    with pytest.raises(ConfigurationError) as caught:
        make_router(name, **{option: value})
    text = str(caught.value)
    assert name in text and (option in text or (option == "base" and "nope" in text)), text


def test_fixed_needs_its_model() -> None:
    with pytest.raises(ConfigurationError, match="fixed: 'model' is required"):
        make_router("fixed")
    assert make_router("fixed", model="m").model == "m"


def test_numpy_integers_are_integers() -> None:
    """``k=np.int64(5)`` (a value from a numpy grid) passed the type check, then ``fit`` refused it:
    'k' must be an integer ≥ 1 (got np.int64(5))."""
    router = make_router("knn", k=np.int64(3))
    table = OutcomeTable(
        query_ids=[f"q{i}" for i in range(6)],
        queries=[f"question {i} about {'math' if i % 2 else 'history'}" for i in range(6)],
        models=["small", "big"],
        scores=np.array([[1, 1], [0, 1], [1, 1], [0, 1], [1, 0], [0, 1]], dtype=float),
        costs=np.tile([1e-3, 3e-3], (6, 1)),
    )
    router.fit(table)
    ctx = RouteContext(query="question about math", candidates=[Agent(model="small"), Agent(model="big")])
    assert router.route(ctx).agents[0].model in ("small", "big")


def test_set_params_refuses_and_keeps_the_old_value() -> None:
    router = make_router("knn", k=7)
    with pytest.raises(ConfigurationError, match="'k'"):
        router.set_params(k=-1)
    assert router.k == 7
    with pytest.raises(ConfigurationError, match="'cost_weight'"):
        router.set_params(cost_weight=NAN)
    assert router.cost_weight == 0.0
    assert router.set_params(k=9).k == 9


def test_a_saved_router_with_a_bad_value_is_refused_naming_the_file(tmp_path) -> None:
    router = make_router("per-task").fit(
        OutcomeTable(
            query_ids=["a", "b", "c"], queries=["x one", "y two", "z three"], models=["s", "b"],
            scores=np.array([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]]), costs=np.tile([1e-3, 2e-3], (3, 1)),
        )
    )  # fmt: skip
    router.save(tmp_path / "pt")
    manifest = json.loads((tmp_path / "pt" / "router.json").read_text())
    assert Router.load(tmp_path / "pt").get_params() == router.get_params()
    manifest["params"]["prior_strength"] = -5.0
    (tmp_path / "pt" / "router.json").write_text(json.dumps(manifest))
    with pytest.raises(StateFileError, match="prior_strength"):
        Router.load(tmp_path / "pt")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "2000", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run([sys.executable, "-m", "agentroute", *args], capture_output=True, text=True, env=env, timeout=300)


def test_eval_spec_with_a_bad_value_exits_2_before_reading_the_dataset(tmp_path) -> None:
    missing = tmp_path / "no-such-logs.jsonl"
    result = _cli("eval", "--dataset", f"outcomes:{missing}", "--routers", "cheapest,knn:k=-3", "--out", str(tmp_path / "o"))
    assert result.returncode == 2, result.stderr
    err = " ".join(result.stderr.split())
    assert "knn" in err and "'k'" in err and "no-such-logs" not in err, err
    assert not (tmp_path / "o").exists()


def test_routers_list_shows_every_option_with_its_default() -> None:
    result = _cli("routers", "list")
    assert result.returncode == 0, result.stderr
    rows: dict[str, str] = {}
    name = ""
    for line in result.stdout.splitlines():  # a row: its name on its first line, one option a line
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 5:
            name = cells[1] or name
            rows[name] = rows.get(name, "") + " " + cells[4]
    for name in router_names():
        assert name in rows, name
        try:
            cls = get_router_class(name)
        except ImportError:
            continue
        if cls.__init__ is object.__init__:
            continue
        for p in inspect.signature(cls.__init__).parameters.values():
            if p.kind is p.KEYWORD_ONLY:
                shown = f"{p.name} (required)" if (name, p.name) == ("fixed", "model") else f"{p.name}={p.default!r}"
                assert shown in rows[name], (name, p.name, rows[name])
    assert "k=40" in rows["knn"] and "shrinkage=10.0" in rows["knn"]


def _ghost_table() -> OutcomeTable:
    """'ghost' was logged but never scored; 'good' always succeeds; 'ghost' is the cheaper one."""
    n = 12
    return OutcomeTable(
        query_ids=[f"q{i}" for i in range(n)],
        queries=[f"question {i} on {'maths' if i % 2 else 'history'}" for i in range(n)],
        models=["ghost", "good"],
        scores=np.c_[np.full(n, np.nan), np.ones(n)],
        costs=np.tile([1e-4, 1e-2], (n, 1)),
    )


@pytest.mark.parametrize("name", ["knn", "per-task", "logreg"])
def test_an_agent_never_scored_is_unseen_not_a_column_scored_by_the_mean(tmp_path, name: str) -> None:
    """Before, the fit kept 'ghost' as a trained column scored by the mean of the others (1.0 here),
    which tied 'good' and won on cost: the router sent every query to an agent it knew nothing of,
    and the pool check passed it as trained. Now it is left out, said so, and the pool check refuses
    it unless new agents are allowed."""
    from agentroute.loading import load_router
    from agentroute.pool import ModelPool
    from agentroute.pool.card import ModelCard

    with pytest.warns(UserWarning, match="no scored outcome.*ghost"):
        router = make_router(name).fit(_ghost_table())
    assert router.known_agents() == ["good"]
    assert "ghost" in router.fit_summary()
    router.save(tmp_path / name)
    pool = ModelPool([ModelCard(id="ghost", backend="replay"), ModelCard(id="good", backend="replay")])
    with pytest.raises(ConfigurationError, match="unseen in training: executor:ghost:direct"):
        load_router(str(tmp_path / name), pool=pool)
    loaded = load_router(str(tmp_path / name), pool=pool, allow_new_agents=True, warn=lambda note: None)
    ctx = RouteContext(query="question on maths", candidates=[Agent(model="ghost"), Agent(model="good")])
    decision = loaded.route(ctx)
    assert decision.agents[0].model == "good" or "unseen in training" in decision.why


def test_a_required_option_not_given_names_the_router() -> None:
    from agentroute.routers import register
    from agentroute.routers.base import _REGISTRY, decide

    @register
    class Needs(Router):
        name = "h62-needs-model"

        def __init__(self, *, model: str):
            self.model = model

        def route(self, ctx: RouteContext):  # type: ignore[no-untyped-def]
            return decide(self, ctx, 0)

    try:
        with pytest.raises(ConfigurationError, match="h62-needs-model: .*model"):
            make_router("h62-needs-model")
        assert make_router("h62-needs-model", model="m").model == "m"
    finally:
        _REGISTRY.pop("h62-needs-model", None)

"""Router option checks (helper-68's review of d0953f8): what earlier versions accepted and saved
still loads, a refused saved value says what to change, and every router gets the NaN/inf check."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentroute.errors import ConfigurationError, StateFileError
from agentroute.routers import make_router
from agentroute.routers.base import _REGISTRY, Router, register
from agentroute.types import Decision, RouteContext


def _manifest(folder: Path, router: str, params: dict, state: dict | None = None) -> Path:
    """A router.json as an earlier agentroute wrote it (no arrays)."""
    folder.mkdir(parents=True)
    manifest = {"format_version": 1, "router": router, "params": params, "state": state or {}, "arrays": []}
    (folder / "router.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize(
    ("name", "params"),
    [("random", {"seed": -1}), ("random-mix", {"p_large": 0.3, "seed": -1}), ("explore", {"base": "cheapest", "seed": -1})],
)
def test_a_negative_seed_of_hashed_draws_still_builds_and_loads(tmp_path: Path, name: str, params: dict) -> None:
    """These routers hash the seed into their draws: -1 always worked, so routers saved with it load."""
    router = Router.load(_manifest(tmp_path / name, name, params))
    assert router.get_params()["seed"] == -1
    assert make_router(name, **params).seed == -1


def test_a_seed_for_numpy_generators_is_still_refused_up_front() -> None:
    with pytest.raises(ConfigurationError, match=r"mlp: 'seed' must be an integer ≥ 0"):
        make_router("mlp", seed=-1)


def test_a_saved_value_refused_now_names_the_file_and_what_to_change(tmp_path: Path) -> None:
    folder = _manifest(tmp_path / "knn", "knn", {"k": 0})
    with pytest.raises(StateFileError) as info:
        Router.load(folder)
    text = str(info.value)
    assert "router.json" in text and "'k' must be an integer ≥ 1" in text and "Edit that value" in text


def test_explore_saved_over_a_trained_folder_loads_after_the_folder_moved(tmp_path: Path, routerbench) -> None:
    """The wrapper's base comes back from its saved state; the folder it was built from is gone."""
    train = routerbench().train.rows(list(range(300)))
    make_router("per-task").fit(train).save(tmp_path / "per-task")
    explore = make_router("explore", base=str(tmp_path / "per-task"), epsilon=0.2).fit(train)
    explore.save(tmp_path / "explore")
    shutil.move(tmp_path / "per-task", tmp_path / "moved")
    loaded = Router.load(tmp_path / "explore")
    assert loaded.base_.name == "per-task"
    assert loaded.known_agents() == explore.known_agents()


def test_explore_over_a_missing_folder_says_no_saved_router_there(tmp_path: Path) -> None:
    router = make_router("explore", base=str(tmp_path / "nowhere"))
    with pytest.raises(StateFileError, match="no saved router here"):
        router.base_  # noqa: B018 - reading it builds the base


class _Forgetful(Router):
    """A user's router whose checks forget ``super()._check_params()``."""

    name = "h68-forgetful"

    def __init__(self, *, temperature: float = 1.0):
        self.temperature = temperature

    def _check_params(self) -> None:
        if self.temperature < 0:
            raise ConfigurationError("h68-forgetful: 'temperature' must be ≥ 0")

    def route(self, ctx: RouteContext) -> Decision:
        raise NotImplementedError


@pytest.fixture
def forgetful() -> Iterator[None]:
    register(_Forgetful)
    yield
    _REGISTRY.pop(_Forgetful.name, None)  # the other tests' registry is as it was


@pytest.mark.usefixtures("forgetful")
@pytest.mark.parametrize(("value", "word"), [(math.nan, "NaN"), (math.inf, "infinite")])
def test_a_router_that_forgets_super_still_refuses_nan_and_inf(value: float, word: str) -> None:
    with pytest.raises(ConfigurationError, match=f"'temperature' is {word}"):
        make_router("h68-forgetful", temperature=value)
    router = make_router("h68-forgetful", temperature=2.0)
    with pytest.raises(ConfigurationError):
        router.set_params(temperature=value)
    assert router.temperature == 2.0


def test_a_numpy_integer_option_is_saved_not_dropped_for_the_default(tmp_path: Path, routerbench) -> None:
    """make_router takes np.int64 (from a grid) as an integer; save wrote no value for it, so the
    router came back with its default."""
    import numpy as np

    make_router("random", seed=np.int64(3)).save(tmp_path / "random")
    assert Router.load(tmp_path / "random").seed == 3
    train = routerbench().train.rows(list(range(200)))
    make_router("per-task", cost_weight=np.float32(0.5)).fit(train).save(tmp_path / "per-task")
    assert Router.load(tmp_path / "per-task").cost_weight == 0.5

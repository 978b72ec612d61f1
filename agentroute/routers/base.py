"""The Router contract, its persistence and the registry of routers by name.

A router follows the scikit-learn estimator habits: ``__init__`` takes keyword-only
hyperparameters and only stores them; ``fit`` validates, learns state in attributes ending in
``_`` and returns ``self``; a learned router used before ``fit`` raises
:class:`~agentroute.errors.NotFittedError`. ``save`` writes a versioned JSON manifest (parameters
+ JSON state) and, for learned arrays, an ``arrays.npz`` read back without pickle.

Every router exposes at most one cost–quality knob (``knob``: the name of a constructor
parameter, e.g. λ in ``predicted score − λ·cost``, or a threshold) that evaluation sweeps.

**Modes** (as torch modules have ``train()``/``eval()``): a router is in one of three modes, read
from ``router.mode`` and set by :meth:`Router.train`, :meth:`Router.serve` and
:meth:`Router.explore` (each returns the router):

- ``"serve"``: decisions exploit what was learned — the best candidate under the router's own
  rule, with no exploration draws. This is the mode a router is evaluated in.
- ``"explore"``: decisions may sample to gather feedback for online learning (the ant colony's
  transition rule). A router without an exploring policy (``explores = False``) decides as in
  ``serve``.
- ``"train"``: set around fitting; routing decides as in ``explore``.

The mode is runtime state, not a parameter: it is not in ``get_params``, not saved, and a router
starts in its class's ``default_mode`` ("serve" unless the class explores by default).
"""

from __future__ import annotations

import abc
import contextlib
import difflib
import functools
import hashlib
import inspect
import json
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np

from agentroute._optional import torch_module
from agentroute._signals import signals_deferred
from agentroute.errors import (
    ConfigurationError,
    NotFittedError,
    StateFileError,
    UnknownNameError,
)
from agentroute.outcomes import OFFERED, OutcomeTable, as_outcome_table
from agentroute.training.provenance import RECORD_KEY, recording_fit, valid_record
from agentroute.types import Agent, Decision, RouteContext, Step, Task, Trajectory

FORMAT_VERSION = 1
MANIFEST = "router.json"
ARRAYS = "arrays.npz"

Mode = Literal["train", "serve", "explore"]
MODES: tuple[Mode, ...] = ("train", "serve", "explore")


class Router(abc.ABC):
    """Chooses the agent(s) for a step among legal, affordable candidates.

    Subclasses set ``name`` and implement :meth:`route`. Learned routers set ``learned = True``,
    implement :meth:`fit` and :meth:`get_state`/:meth:`set_state` (and optionally ``get_arrays``/
    ``set_arrays``) so that save/load round-trips.
    """

    name: ClassVar[str] = ""
    learned: ClassVar[bool] = False
    knob: ClassVar[str | None] = None
    knob_grid: ClassVar[tuple[float, ...]] = ()
    #: Whether the router has an exploring policy distinct from serving (see the module docstring).
    explores: ClassVar[bool] = False
    #: The mode a new (or loaded) router starts in.
    default_mode: ClassVar[Mode] = "serve"
    #: Whether agents unseen in training are scored from their descriptors (model card text, price,
    #: tier, strategy), so a pool of new agents is served as well as the training one (graph-router,
    #: kg-gnn). A router that is not inductive refuses a pool of agents it never saw (:func:`check_pool`).
    inductive: ClassVar[bool] = False
    #: Whether ``seed`` only keys hashed draws (random, random-mix, explore, ant-colony), so any
    #: integer is a seed; otherwise it seeds numpy's generators, which take integers ≥ 0.
    any_seed: ClassVar[bool] = False
    #: Set to ``True`` by :meth:`fit` (and :meth:`load`) of a learned router; absent before (see
    #: :attr:`is_fitted`).
    fitted_: bool
    #: What it was last fitted on (:mod:`agentroute.training.provenance`): set by ``fit`` and by
    #: ``agentroute train``, saved as the manifest's ``"trained_on"`` and read back by :meth:`load`.
    trained_on_: dict[str, Any] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A ``fit`` of the class records what it was given (:func:`~agentroute.training.provenance.recording_fit`)."""
        super().__init_subclass__(**kwargs)
        if "fit" in cls.__dict__:
            cls.fit = recording_fit(cls.__dict__["fit"])  # type: ignore[method-assign]

    # -- modes ----------------------------------------------------------------------------------
    @property
    def mode(self) -> Mode:
        """``"train"``, ``"serve"`` or ``"explore"`` (module docstring)."""
        return self.__dict__.get("_mode", type(self).default_mode)

    @property
    def exploring(self) -> bool:
        """Whether routing may sample now: an exploring router in ``explore`` or ``train`` mode."""
        return self.explores and self.mode != "serve"

    def set_mode(self, mode: Mode) -> Self:
        """Switch mode; learned state is untouched. Returns ``self``."""
        if mode not in MODES:
            raise ConfigurationError(f"{self.name}: mode must be one of {list(MODES)} (got {mode!r})")
        self.__dict__["_mode"] = mode
        return self

    def train(self) -> Self:
        """Training mode (fitting, online learning); routing decides as in ``explore``."""
        return self.set_mode("train")

    def serve(self) -> Self:
        """Serving mode: exploit, never explore. The mode evaluation reports."""
        return self.set_mode("serve")

    def explore(self) -> Self:
        """Exploration mode: an exploring router samples its decisions to gather feedback."""
        return self.set_mode("explore")

    # -- the contract ---------------------------------------------------------------------------
    @abc.abstractmethod
    def route(self, ctx: RouteContext) -> Decision:
        """Pick from ``ctx.candidates`` (never outside them)."""

    def observe(self, step: Step, task: Task | None = None) -> None:  # noqa: B027 - optional hook
        """Learn online. Must not block serving.

        The dispatcher calls ``observe(step)`` after every step, and ``observe(last_step, task)``
        once more when the task has finished, with its status and score: the score of ``arun``'s
        gold answers (the task then marked as scored by feedback, as the memory reads it back),
        else its last step's, else ``None``. Feedback given after the task ended
        (``memory.add_feedback``, ``agentroute feedback``) is not observed: routers learn it by
        ``fit`` on the memory (``train --from``).
        """

    def escalate(self, ctx: RouteContext, step: Step) -> bool:
        """Whether the finished ``step`` should be redone by a stronger agent (cascades)."""
        return False

    def fit(self, data: Any) -> Self:
        """Learn from trajectories or a logged-outcome table; returns ``self``."""
        return self

    def known_agents(self) -> list[str] | None:
        """The outcome-table columns the router learned about (agent keys or role-free
        ``model[:strategy]`` names, :mod:`agentroute.outcomes`), or ``None`` when its decisions do
        not depend on a trained set of agents (rules over cards: cheapest, random, …)."""
        return None

    def unseen_treatment(self) -> str | None:
        """How the router treats pool agents it was not trained on, when it has a rule of its own
        (worded to follow "are": "scored from their descriptors" for an inductive router), or
        ``None``: it would score them by a constant, and :func:`check_pool` refuses them unless new
        agents are allowed."""
        return "scored from their descriptors" if self.inductive else None

    def check_agents(self, agents: Sequence[Agent], among: str = "the pool") -> None:  # noqa: B027 - optional hook
        """A :class:`ConfigurationError` when the router, as configured, cannot route over ``agents``
        (``among``: what they are, for the message), e.g. a ``fixed`` router's model that none of
        them plays. Run by :func:`check_pool`: at ``compile``, ``load_router(pool=)`` and ``serve``."""

    def check_fitted(self) -> None:
        if self.learned and not self.is_fitted:
            raise NotFittedError(self.name)

    @property
    def is_fitted(self) -> bool:
        return not self.learned or getattr(self, "fitted_", False)

    # -- parameters (sklearn-style, from the __init__ signature) -------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind is p.KEYWORD_ONLY]

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Self:
        """Set parameters, checked as :func:`make_router` checks them; a value refused leaves the
        router as it was."""
        self._check_names_and_types(params)
        before = {key: self.__dict__[key] for key in params if key in self.__dict__}
        for key, value in params.items():
            setattr(self, key, value)
        try:
            self._run_checks()
        except ConfigurationError:
            for key in params:
                if key in before:
                    setattr(self, key, before[key])
                else:
                    self.__dict__.pop(key, None)
            raise
        return self

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        """A :class:`ConfigurationError` naming the router for a parameter its ``__init__`` does not
        take (with the ones it does, and the closest), a value its annotation does not admit, or a
        value out of its range (:meth:`_check_params` of a router built with ``params``)."""
        cls._build(params)

    @classmethod
    def _build(cls, params: Mapping[str, Any]) -> Self:
        """The router ``cls(**params)``, its parameters checked (:meth:`check_params`)."""
        cls._check_names_and_types(params)
        try:
            router = cls(**params)
        except TypeError as exc:  # a required option not given (a router of one's own)
            raise ConfigurationError(f"{cls.name}: {exc}") from None
        router._run_checks()
        return router

    def _check_params(self) -> None:  # noqa: B027 (routers extend it; none need to)
        """Check the parameters' values (ranges, relations), raising a :class:`ConfigurationError`
        that names the router and the parameter. Run by :func:`make_router`, :meth:`set_params`,
        :meth:`load` and ``fit`` (through :meth:`_run_checks`, which adds the checks every router
        gets, :meth:`_check_common`); routers extend it with ``super()._check_params()``."""

    def _run_checks(self) -> None:
        """The router's :meth:`_check_params` and :meth:`_check_common` (a router whose checks forget
        ``super()._check_params()`` still refuses NaN, ±inf and a bad seed): one error naming each
        option refused, once."""
        prefix = f"{self.name}: "
        try:
            self._check_params()
            said = ""
        except ConfigurationError as exc:
            said = str(exc).removeprefix(prefix)
        refused = [said] if said else []
        refused += [why for key, why in self._common_refusals() if repr(key) not in said]
        if refused:
            raise ConfigurationError(prefix + "; ".join(refused))

    def _check_common(self) -> None:
        """No number is NaN or infinite, and a ``seed`` is an integer (≥ 0 unless :attr:`any_seed`)."""
        refused = [why for _, why in self._common_refusals()]
        if refused:
            raise ConfigurationError(f"{self.name}: " + "; ".join(refused))

    def _common_refusals(self) -> list[tuple[str, str]]:
        """``(option, why)`` for each option :meth:`_check_common` refuses."""
        params = self.get_params()
        refused = [
            (key, f"{key!r} is {'NaN' if np.isnan(value) else 'infinite'} (give a finite number)")
            for key, value in params.items()
            if isinstance(value, float | np.floating) and not np.isfinite(value)
        ]
        if params.get("seed") is not None:
            try:
                check_range(self, "seed", low=None if self.any_seed else 0, integer=True)
            except ConfigurationError as exc:
                refused.append(("seed", str(exc).removeprefix(f"{self.name}: ")))
        return refused

    @classmethod
    def _check_names_and_types(cls, params: Mapping[str, Any]) -> None:
        """Parameters ``__init__`` does not take, and values its annotations do not admit: one error
        naming each."""
        signature = (
            inspect.signature(cls.__init__).parameters.values() if cls.__init__ is not object.__init__ else []
        )
        if any(p.kind is p.VAR_KEYWORD for p in signature):
            return
        takes = [
            p.name
            for p in signature
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        unknown = _unknown_said(cls.name, [key for key in params if key not in takes], takes)
        try:
            types_of = typing.get_type_hints(cls.__init__)
        except Exception:  # an annotation that does not resolve at runtime: names were checked
            types_of = {}
        wrong = [
            f"{key}={value!r} ({type(value).__name__}) is not {_describe(types_of[key])}"
            for key, value in params.items()
            if key in types_of and not _admits(types_of[key], value)
        ]
        said = [unknown] if unknown else []
        if wrong:
            said.append(("" if unknown else f"{cls.name}: ") + "; ".join(wrong))
        if said:
            raise ConfigurationError("; ".join(said))

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # -- persistence ----------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """JSON-serialisable learned state (override in learned routers)."""
        return {}

    def set_state(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore what :meth:`get_state` returned."""

    def get_arrays(self) -> dict[str, np.ndarray]:
        """Learned arrays (weights, embeddings) saved to ``arrays.npz``."""
        return {}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:  # noqa: B027 - optional hook
        """Restore what :meth:`get_arrays` returned."""

    def save(self, path: str | Path) -> Path:
        """Write ``router.json`` (+ ``arrays.npz``) into the directory ``path``.

        The manifest lists the arrays saved (``"arrays"``) and their file's SHA-256, and an
        ``arrays.npz`` left by an earlier save of another router is removed: the folder holds this
        router's files only. Both files are written aside and moved in last, so a save that fails
        or is interrupted leaves the router saved there before as it was.
        """
        self.check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays = self.get_arrays()
        manifest = {
            "format_version": FORMAT_VERSION,
            "router": self.name,
            "params": _jsonable(self.get_params()),
            "state": self.get_state(),
            "arrays": sorted(arrays),
            **({RECORD_KEY: self.trained_on_} if self.trained_on_ is not None else {}),
        }
        staged_arrays, staged_manifest = path / f".{ARRAYS}.partial", path / f".{MANIFEST}.partial"
        try:
            if arrays:
                with staged_arrays.open("wb") as f:
                    np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub: **arrays may also fill savez's allow_pickle: bool
                manifest["arrays_sha256"] = _sha256(staged_arrays)
            staged_manifest.write_text(json.dumps(manifest, indent=1))
            with signals_deferred():  # the two moves: a Ctrl-C waits for both
                if arrays:
                    staged_arrays.replace(path / ARRAYS)
                staged_manifest.replace(path / MANIFEST)
                if not arrays:
                    (path / ARRAYS).unlink(missing_ok=True)
        finally:
            staged_arrays.unlink(missing_ok=True)
            staged_manifest.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a router saved by :meth:`save`; errors name the file and what is wrong."""
        path = Path(path)
        file = path / MANIFEST if path.is_dir() else path
        if not file.exists():
            raise StateFileError(file, "no saved router here")
        try:
            manifest = json.loads(file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StateFileError(file, f"not valid JSON ({exc})") from exc
        if not isinstance(manifest, dict) or "router" not in manifest:
            raise StateFileError(file, "missing the 'router' field")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise StateFileError(
                file, f"format_version {manifest.get('format_version')!r}, expected {FORMAT_VERSION}"
            )
        try:
            klass = cls if cls.name == manifest["router"] else get_router_class(manifest["router"])
        except UnknownNameError as exc:  # saved by a plugin or a newer agentroute: name the file
            raise StateFileError(file, str(exc)) from exc
        if cls is not Router and not issubclass(klass, cls):
            raise StateFileError(file, f"holds router {manifest['router']!r}, not {cls.name!r}")
        if klass is not cls and klass.load.__func__ is not Router.load.__func__:  # type: ignore[attr-defined]
            return klass.load(path)  # type: ignore[return-value]  # its own checks (the ant colony's matrices)
        try:
            router = klass(**manifest.get("params", {}))
            router._run_checks()
        except (ConfigurationError, TypeError) as exc:  # a value refused since, or edited by hand
            raise StateFileError(
                file,
                f'its "params" are refused: {exc}. Edit that value in the file (or save the router again)',
            ) from None
        try:
            router.set_state(manifest.get("state", {}))
            arrays = _saved_arrays(file, manifest)
            if arrays is not None:
                router.set_arrays(arrays)
                _check_digest(file, manifest)
        except StateFileError:
            raise
        except Exception as exc:  # a state the router cannot take: say which file
            raise StateFileError(file, f"incompatible state for {klass.name!r}: {exc}") from exc
        router.fitted_ = True
        router.trained_on_ = valid_record(manifest.get(RECORD_KEY))  # saved again, it keeps the record
        return router  # type: ignore[return-value]


@contextlib.contextmanager
def open_npz(arrays_file: Path) -> Iterator[np.lib.npyio.NpzFile]:
    """``np.load`` of a saved ``arrays.npz``, its file closed on every path: numpy's own ``np.load``
    of a path leaves the file of a truncated zip open (a ResourceWarning, a descriptor held)."""
    with arrays_file.open("rb") as fh, np.load(fh, allow_pickle=False) as npz:
        yield npz


def _saved_arrays(file: Path, manifest: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """The arrays the manifest ``file`` lists, from its folder's ``arrays.npz`` (``None``: none saved).

    A manifest without the list (saved before it was written) takes the file when there is one.
    """
    listed = manifest.get("arrays")
    arrays_file = file.parent / ARRAYS
    if listed == []:
        return None
    if not arrays_file.exists():
        if listed is None:  # a manifest from before the list, and no arrays saved
            return None
        raise StateFileError(arrays_file, f"missing: {file.name} lists arrays {_names(listed)}")
    try:
        with open_npz(arrays_file) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:  # truncated, not a zip, a member cut short
        raise StateFileError(arrays_file, f"not a readable .npz file ({type(exc).__name__}: {exc})") from exc
    if listed is not None and sorted(arrays) != sorted(listed):
        raise StateFileError(
            arrays_file,
            f"holds arrays {_names(sorted(arrays))}, not the {_names(listed)} that {file.name} lists "
            "(written by another save? save the router again)",
        )
    return arrays


def _check_digest(file: Path, manifest: dict[str, Any]) -> None:
    """Refuse an ``arrays.npz`` other than the one the manifest ``file`` was saved with (checked
    after the arrays loaded, so a wrong shape or name keeps its more specific error)."""
    digest, arrays_file = manifest.get("arrays_sha256"), file.parent / ARRAYS
    if digest is not None and digest != _sha256(arrays_file):
        raise StateFileError(
            arrays_file,
            f"is not the file {file.name} was saved with (an interrupted save, or copied from another "
            "router?): save the router again",
        )


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters JSON can hold: numpy numbers as Python's (``k=np.int64(7)`` from a grid is
    saved as 7, not dropped for the default); callables and objects are left out (the defaults are
    used at load)."""
    out = {}
    for key, value in params.items():
        if isinstance(value, np.generic):
            value = value.item()
        try:
            json.dumps(value)
            out[key] = value
        except (TypeError, ValueError):
            continue
    return out


# -- registry ------------------------------------------------------------------------------------
_REGISTRY: dict[str, type[Router]] = {}
_LAZY: dict[str, str] = {}
_ENTRY_POINTS_LOADED = False


def _unknown_said(name: str, unknown: list[str], takes: list[str]) -> str | None:
    """``"NAME takes no parameter KEY (it takes: …); did you mean …?"`` for the ``unknown`` keys, or ``None``."""
    if not unknown:
        return None
    if not takes:
        return f"{name} takes no parameters (got {', '.join(unknown)})"
    close = {key: match[0] for key in unknown if (match := difflib.get_close_matches(key, takes, n=1))}
    if len(unknown) == 1:
        hint = f"; did you mean {close[unknown[0]]!r}?" if close else ""
    else:
        hint = f"; did you mean {', '.join(f'{k!r} → {v!r}' for k, v in close.items())}?" if close else ""
    said = "no parameter" if len(unknown) == 1 else "no parameters"
    return f"{name} takes {said} {', '.join(unknown)} (it takes: {', '.join(takes)}){hint}"


def register(cls: type[Router]) -> type[Router]:
    """Class decorator: make a router addressable by its ``name``."""
    if not cls.name:
        raise ConfigurationError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def register_lazy(name: str, target: str) -> None:
    """Register ``name`` → ``"module:Class"`` without importing it (heavy routers)."""
    _LAZY.setdefault(name, target)


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if not _ENTRY_POINTS_LOADED:
        _ENTRY_POINTS_LOADED = True
        for ep in entry_points(group="agentroute.routers"):
            register_lazy(ep.name, ep.value)


def router_names() -> list[str]:
    _load_entry_points()
    return sorted(set(_REGISTRY) | set(_LAZY))


def get_router_class(name: str) -> type[Router]:
    _load_entry_points()
    if name not in _REGISTRY and name in _LAZY:
        import importlib

        module, _, attr = _LAZY[name].partition(":")
        cls = getattr(importlib.import_module(module), attr)
        _REGISTRY.setdefault(name, cls)
    if name not in _REGISTRY:
        raise UnknownNameError("router", name, router_names())
    return _REGISTRY[name]


def make_router(name: str, **params: Any) -> Router:
    """Build a registered router by name with keyword parameters (:meth:`Router.check_params`)."""
    return get_router_class(name)._build(params)


#: torch, imported when a router's network is fitted or loaded; one that is installed but does not
#: import is a one-line :class:`~agentroute._optional.BrokenDependencyError` (exit 2 at the CLI).
import_torch = torch_module


def check_range(
    router: Router,
    key: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    optional: bool = False,
) -> None:
    """A :class:`ConfigurationError` naming the router and ``key`` unless ``router.<key>`` is a
    finite number (an integer with ``integer``) in the range given (``None`` too with ``optional``).

    >>> check_range(make_router("knn"), "k", low=1, integer=True)
    """
    value = getattr(router, key)
    rule = out_of_range(
        value, low=low, high=high, low_open=low_open, high_open=high_open, integer=integer, optional=optional
    )
    if rule is not None:
        raise ConfigurationError(f"{router.name}: {key!r} must be {rule} (got {value!r})")


def out_of_range(
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    optional: bool = False,
) -> str | None:
    """The rule ``value`` breaks, in :func:`range_rule`'s words (``" or None"`` added with
    ``optional``), or ``None`` when it is a finite number (an integer with ``integer``) in the range:
    the one test behind :func:`check_range` and the training configs' checks.

    >>> out_of_range(0, low=1, integer=True), out_of_range(None, low=0, optional=True)
    ('an integer ≥ 1', None)
    """
    if optional and value is None:
        return None
    number = isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )
    if integer:
        number = isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
    ok = number and bool(np.isfinite(value))
    ok = ok and (low is None or (value > low if low_open else value >= low))
    ok = ok and (high is None or (value < high if high_open else value <= high))
    if ok:
        return None
    return range_rule(low, high, low_open=low_open, high_open=high_open, integer=integer) + (
        " or None" if optional else ""
    )


def range_rule(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> str:
    """The one wording of a range, as :func:`check_range` (and a recipe's checks) say it.

    >>> range_rule(0, 1, low_open=True), range_rule(1, integer=True)
    ('a finite number in (0, 1]', 'an integer ≥ 1')
    """
    kind = "an integer" if integer else "a finite number"
    if low is not None and high is not None:
        return f"{kind} in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{kind} {'>' if low_open else '≥'} {low:g}"
    if high is not None:
        return f"{kind} {'<' if high_open else '≤'} {high:g}"
    return kind


def check_rate(router: Router, key: str) -> None:
    """A :class:`ConfigurationError` naming the router and ``key`` unless ``router.<key>`` is a rate
    in [0, 1) (a dropout, a masking probability)."""
    check_range(router, key, low=0, high=1, high_open=True)


def check_each(router: Router, checks: Mapping[str, Callable[[], object]]) -> None:
    """Run every check of ``checks`` (parameter name → a check raising :class:`ConfigurationError`)
    and raise one error naming each parameter refused, in the order of the router's signature:
    ``"knn: 'k' must be an integer ≥ 1 (got 0); 'shrinkage' must be a finite number ≥ 0 (got -1)"``."""
    order = list(inspect.signature(type(router)).parameters)
    prefix = f"{router.name}: "
    refused = []
    for key in sorted(checks, key=lambda k: order.index(k) if k in order else len(order)):
        try:
            checks[key]()
        except ConfigurationError as exc:
            refused.append(str(exc).removeprefix(prefix))
    if refused:
        raise ConfigurationError(prefix + "; ".join(refused))


def _admits(annotation: Any, value: Any) -> bool:
    """Whether ``value`` fits a parameter annotation (numbers, text, Literal, unions, sequences,
    mappings, callables, classes); what cannot be checked at runtime is admitted."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin is Literal:
        return value in typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_admits(a, value) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if isinstance(value, bool | np.bool_):
        return annotation is bool
    if annotation is int:
        return isinstance(value, int | np.integer)
    if annotation is float:
        return isinstance(value, int | float | np.integer | np.floating)
    kind = origin or annotation
    if kind in (tuple, list, Sequence):
        return isinstance(value, Sequence) and not isinstance(value, str)
    if kind in (dict, Mapping):
        return isinstance(value, Mapping)
    if kind is Callable:
        return callable(value)
    try:
        return isinstance(value, kind)
    except TypeError:  # a Protocol that is not runtime-checkable, a parameterised generic
        return True


def _describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "None"
    kind = origin or annotation
    if kind in (tuple, list, Sequence):
        return "a sequence"
    if kind in (dict, Mapping):
        return "a mapping"
    if kind is Callable:
        return "a callable"
    return getattr(kind, "__name__", str(kind))


# -- helpers shared by routers -------------------------------------------------------------------
def decide(router: Router, ctx: RouteContext, index: int, why: str = "", **scores: Any) -> Decision:
    """A single-agent decision for ``ctx.candidates[index]`` (``scores``/``evidence`` as keywords).

    Its evidence records how many candidates the step offered (``offered``), unless it names them
    (``candidates``, ``probabilities``): a failed call with no fallback left is then its agent's
    failure, learned as such, where with one of many tried it was taken for an outage
    (:func:`agentroute.outcomes.outage_steps`)."""
    if not scores:
        return _plain_decision(router.name, ctx.candidates[index], why, len(ctx.candidates))
    fields = {"scores": {}, "evidence": {}, **scores}  # numpy values are kept as they are
    evidence = fields["evidence"]
    if isinstance(evidence, dict) and not {"candidates", "probabilities", OFFERED} & evidence.keys():
        fields["evidence"] = {**evidence, OFFERED: len(ctx.candidates)}
    return Decision.model_construct(
        agents=[ctx.candidates[index]], weights=[1.0], router=router.name, why=why, **fields
    )


@functools.lru_cache(maxsize=4096)
def _plain_decision(router: str, agent: Agent, why: str, offered: int) -> Decision:
    """Decisions without scores are interned: steps that retain one share a single frozen object,
    which keeps a long batch's results light on memory and on the garbage collector."""
    return Decision(agents=[agent], weights=[1.0], router=router, why=why, evidence={OFFERED: offered})


@dataclass
class PoolFit:
    """How a trained router's agents meet a pool's (:func:`pool_fit`)."""

    trained: list[str]
    """The router's training columns."""
    unseen: list[str]
    """Pool agents (keys) with no training column: the router never saw them."""
    missing: list[str]
    """Training columns that no pool agent plays (routing then covers the others)."""
    roles_seen: set[str]
    """Roles of which some pool agent has a training column."""

    @property
    def disjoint(self) -> bool:
        return len(self.unseen) > 0 and len(self.missing) == len(self.trained)


def pool_fit(router: Router, agents: Iterable[Agent]) -> PoolFit | None:
    """Match a router's training columns with the agents a pool offers (``None``: the router has
    no trained set of agents). A column matches an agent by :func:`agentroute.outcomes.find_column`."""
    from agentroute.outcomes import find_column

    trained = router.known_agents()
    if trained is None:
        return None
    agents = list(dict.fromkeys(agents))
    index = {c: j for j, c in enumerate(trained)}
    found = [find_column(a, index) for a in agents]
    used = {j for j in found if j is not None}
    return PoolFit(
        trained=list(trained),
        unseen=[a.key for a, j in zip(agents, found, strict=True) if j is None],
        missing=[c for j, c in enumerate(trained) if j not in used],
        roles_seen={a.role for a, j in zip(agents, found, strict=True) if j is not None},
    )


def check_pool(
    router: Router,
    agents: Iterable[Agent],
    *,
    allow_new_agents: bool = False,
    source: str = "",
    among: str = "the pool",
) -> list[str]:
    """Refuse to serve a trained router on a pool it does not fit; returns warnings to print.

    The rule (what a RouteLLM or LiteLLM user expects: a router routes over the models it was
    trained on, and says so when it cannot):

    - a router configured for agents the pool lacks (:meth:`Router.check_agents`: a ``fixed``
      router's model) is a :class:`~agentroute.errors.ConfigurationError` (``among``: what the
      agents are, for its message);
    - a pool agent the router has no training column for would be scored by a constant (the
      training mean): a :class:`~agentroute.errors.ConfigurationError` naming the unseen agents
      and the router's agents — unless ``allow_new_agents`` (``--allow-new-agents``), then a
      warning. A pool with *none* of the router's agents is always an error (every candidate would
      score the same; the choice would be arbitrary);
    - inductive routers (:attr:`Router.inductive`: graph-router, kg-gnn) score unseen agents from
      their descriptors: allowed, with a note (their decisions' ``why`` says it too); so are
      routers with a rule of their own for them (:meth:`Router.unseen_treatment`: ant-colony starts
      them at τ_init and learns them online), unless the pool has none of the trained agents;
    - training columns that no pool agent plays are fine: the router routes over the others (a
      router trained on eleven models serves a pool of three of them).

    A warning is returned once per router object: ``load_router(..., pool=)`` and then
    ``graph.compile`` check the same router against the same pool, and the user hears it once.
    """
    agents = list(agents)
    router.check_agents(agents, among)
    fit = pool_fit(router, agents)
    if fit is None or not fit.unseen:
        return []
    notes = _pool_notes(router, fit, allow_new_agents=allow_new_agents, source=source)
    announced: set[frozenset[str]] = router.__dict__.setdefault("_announced_unseen", set())
    if frozenset(fit.unseen) in announced:
        return []
    announced.add(frozenset(fit.unseen))
    return notes


def _pool_notes(router: Router, fit: PoolFit, *, allow_new_agents: bool, source: str) -> list[str]:
    """:func:`check_pool`'s warnings for a router with unseen pool agents (or its error)."""
    who = f"router {source} ({router.name})" if source else f"router {router.name!r}"
    treatment = router.unseen_treatment()
    if treatment is not None and (router.inductive or not fit.disjoint):
        return [
            f"{who}: {len(fit.unseen)} pool agent(s) unseen in training are {treatment}: {_names(fit.unseen)}"
        ]
    trained = f"it was trained on {_names(fit.trained)}"
    renamed = _renames(fit)
    if fit.disjoint:
        raise ConfigurationError(
            f"{who} does not fit this pool: {trained} and the pool offers none of them "
            f"(missing from the pool: {_names(fit.missing)}; the pool's agents: {_names(fit.unseen)}). "
            "Use a pool with those agents, or retrain on this pool's (`agentroute train NAME --from "
            f"MEMORY_URL` after serving it with `--router explore`){renamed}"
        )
    roles = [r for r in dict.fromkeys(k.split(":", 1)[0] for k in fit.unseen) if r not in fit.roles_seen]
    no_role = (
        f"; no outcome at all for role(s) {', '.join(roles)} (were those steps scored?)" if roles else ""
    )
    unseen = f"pool agent(s) unseen in training: {_names(fit.unseen)} ({trained}{no_role})"
    if not allow_new_agents:
        raise ConfigurationError(
            f"{who}: {unseen}; they would be scored by the training mean. Remove them from the pool (or "
            "restrict the role's models), retrain on this pool, or pass --allow-new-agents (Python: "
            f"allow_new_agents=True) to route over them anyway{renamed}"
        )
    return [
        f"{who}: routing over {unseen}, as --allow-new-agents asks: they are scored by the training mean. "
        "To score them by their own outcomes, retrain on this pool (`agentroute train NAME --from MEMORY_URL` "
        f"after serving it with `--router explore`){renamed}"
    ]


def _renames(fit: PoolFit) -> str:
    """Hints for unseen pool agents: a trained model played in a strategy never logged, or a model
    whose id is close to a trained model missing from the pool (a card renamed after training:
    the router knows models by card id)."""
    from agentroute.outcomes import column_agent

    trained: dict[str, list[str]] = {}  # model -> the strategies it was logged in, by any role
    for agent in map(column_agent, fit.trained):
        trained.setdefault(agent.model, []).append(agent.strategy)
    missing = [
        m
        for m in dict.fromkeys(column_agent(c).model for c in fit.missing)
        if m not in {column_agent(k).model for k in fit.unseen}
    ]
    strategies: dict[str, list[str]] = {}
    pairs: dict[str, str] = {}
    for key in fit.unseen:
        agent = column_agent(key)
        if agent.model in trained:
            if (
                agent.strategy not in trained[agent.model]
            ):  # else logged by another role: a new agent, no new strategy
                strategies.setdefault(
                    f"{agent.model}:{agent.strategy}", list(dict.fromkeys(trained[agent.model]))
                )
            continue
        close = difflib.get_close_matches(
            agent.model, [m for m in missing if m not in pairs.values()], n=1, cutoff=0.6
        )
        if close and agent.model not in pairs:
            pairs[agent.model] = close[0]
    hints = []
    if strategies:
        shown = ", ".join(
            f"{new} (logged as {', '.join(new.rsplit(':', 1)[0] + ':' + s for s in logged)})"
            for new, logged in list(strategies.items())[:5]
        )
        hints.append(f"Strategies never logged: {shown}: a strategy is a new agent — keep the card's "
                     "strategies as trained, or explore the new ones and retrain")  # fmt: skip
    if pairs:
        shown = ", ".join(f"{new!r} (trained as {old!r})" for new, old in list(pairs.items())[:5])
        hints.append(f"Renamed since training? {shown}: the router knows a model by its card id — keep the old "
                     "id and put the provider's new name in the card's `model:` field")  # fmt: skip
    return "".join(f". {h}" for h in hints)


def _names(keys: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" … and {len(keys) - limit} more" if len(keys) > limit else "")


def check_fit_data(router: Router, data: Any) -> Any:
    """``data`` as ``fit`` takes it: an :class:`~agentroute.outcomes.OutcomeTable` or a dataset with
    ``.train`` (returned as they are), or trajectories (returned as a list); anything else is a
    :class:`ConfigurationError` naming the router and what it takes."""
    if isinstance(data, OutcomeTable) or isinstance(getattr(data, "train", None), OutcomeTable):
        return data
    iterable = isinstance(data, Iterable) and not isinstance(data, str | bytes | Mapping)
    items = list(data) if iterable else []
    odd = next((t for t in items if not isinstance(t, Trajectory)), None)
    if iterable and odd is None:
        return items
    got = type(data).__name__ + (f" of {type(odd).__name__}" if odd is not None else "")
    hint = (
        "; read a file with agentroute.eval.datasets.load_dataset('outcomes:PATH')"
        if isinstance(data, str | Path)
        else ""
    )
    raise ConfigurationError(
        f"{router.name}: fit() takes an OutcomeTable, a dataset with .train (load_dataset) or Trajectory "
        f"objects (got {got}){hint}"
    )


def fit_table(router: Router, data: Any) -> OutcomeTable:
    """The :class:`~agentroute.outcomes.OutcomeTable` a router fits on (:func:`check_fit_data`)."""
    return as_outcome_table(check_fit_data(router, data))


def require_candidates(router: Router, ctx: RouteContext) -> None:
    """The first line of ``route``: a :class:`RouteContext` with candidates, or an error naming the router."""
    if not isinstance(ctx, RouteContext):
        raise ConfigurationError(
            f"{router.name}: route() takes a RouteContext(query=..., candidates=[Agent(model=...), ...]) "
            f"(got {type(ctx).__name__})"
        )
    if not ctx.candidates:
        raise ConfigurationError(f"{router.name}: route() called with no candidates")


TrajectoryData = Iterable[Trajectory]
Scorer = Callable[[Step], float]

"""What a saved router was fitted on, so that ``agentroute eval`` can tell when a test split holds
queries it was trained on.

``agentroute train`` records, in the saved ``router.json`` (``"trained_on"``), a 48-bit BLAKE2b
digest of each training query's text — stripped, as the seeded split by query text groups texts
(:func:`~agentroute.eval.datasets.load_outcomes`) — with the dataset spec, seed and split it came
from (or the memory it was read from). The digests compare with any later split, whatever its
seed: ten thousand queries take about 80 kB in the manifest, and a chance match between two
distinct texts among 10k × 10k is about one in three million.

A router fitted in Python (``router.fit(data)``, every router class's ``fit``: see
:func:`recording_fit`) records the texts of that fit (``"fit"``: what it was given), replacing
the record it had: every router's ``fit`` learns afresh, so the record is that fit's queries.
``Router.load`` reads the record back, so a router loaded, served (``observe``) and saved again
keeps it; online learning adds no texts to it. :func:`check_test_split` is the rule ``agentroute
eval`` and :func:`~agentroute.eval.harness.evaluate` both apply.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import inspect
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: The manifest's key for the record.
RECORD_KEY = "trained_on"
#: Bytes of each text's digest.
DIGEST_BYTES = 6
DIGEST = f"blake2b-{8 * DIGEST_BYTES} of the stripped query text"


class TrainedOnTestWarning(UserWarning):
    """A router evaluated as trained was fitted on queries of the evaluation's test split, so its
    figures flatter it (``warnings.simplefilter("ignore", TrainedOnTestWarning)`` silences it)."""


class UncheckedRecordWarning(UserWarning):
    """Routers evaluated as trained were saved without a record of their training queries, so
    whether the test split holds any cannot be checked."""


def text_key(text: object) -> str:
    """The form of a query text that is digested: stripped, as the seeded split groups texts."""
    return str(text).strip()


def _digest(text: object) -> bytes:
    return hashlib.blake2b(text_key(text).encode("utf-8", "surrogatepass"), digest_size=DIGEST_BYTES).digest()


def text_digests(texts: Iterable[object]) -> tuple[int, str]:
    """(how many distinct texts, their digests sorted as one base64 string) of ``texts``."""
    unique = sorted({_digest(t) for t in texts})
    return len(unique), base64.b64encode(b"".join(unique)).decode("ascii")


def training_record(
    data: Any, *, memory_url: str | None, dataset: str | None, seed: int = 0,
    limit: int | None = None, sample: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The record of a fit on what :func:`~agentroute.cli.train_cmd.training_data` returned:
    trajectories from ``memory_url``, or the dataset ``dataset`` (its train split)."""
    if isinstance(data, list):
        return memory_record(data, str(memory_url))
    return dataset_record(data, str(dataset), seed=seed, limit=limit, sample=sample)


def dataset_record(
    data: Any, spec: str, *, seed: int, limit: int | None, sample: float | None
) -> dict[str, Any]:
    """The record of a fit on ``data``'s train split (a :class:`~agentroute.eval.datasets.RoutingDataset`
    loaded from ``spec`` with ``seed``, ``limit`` and ``sample``)."""
    texts = list(data.train.queries)
    return {
        "dataset": spec,
        "seed": seed,
        **({"limit": limit} if limit is not None else {}),
        **({"sample": sample} if sample is not None else {}),
        "split": str(data.notes.get("split", "the dataset's train split")),
        **_texts(texts),
    }


def memory_record(trajectories: Iterable[Any], url: str) -> dict[str, Any]:
    """The record of a fit on ``trajectories`` read from the memory at ``url`` (its password hidden):
    each task's query and each step's input, the texts its rows may be named by."""
    from agentroute.memory.engine import safe_url

    texts = [t for trajectory in trajectories for t in _trajectory_texts(trajectory)]
    return {"memory": safe_url(url), **_texts(texts)}


def _trajectory_texts(trajectory: Any) -> Iterable[str]:
    yield trajectory.task.query
    for step in trajectory.steps:
        if step.input:
            yield step.input


def _texts(texts: list[Any]) -> dict[str, Any]:
    count, digests = text_digests(texts)
    return {"queries": count, "digest": DIGEST, "texts": digests}


def fit_record(data: Any) -> dict[str, Any] | None:
    """The record of a fit in Python on ``data``: an :class:`~agentroute.outcomes.OutcomeTable`, a
    dataset (its train split, as ``fit`` reads it) or trajectories; ``None`` for anything else
    (a memory store: its texts are not read twice), which leaves the router unchecked."""
    from agentroute.outcomes import OutcomeTable
    from agentroute.types import Trajectory

    if isinstance(data, OutcomeTable):
        return {"fit": "an outcome table in Python", **_texts(list(data.queries))}
    train = getattr(data, "train", None)
    if isinstance(train, OutcomeTable):
        split = getattr(data, "notes", {}).get("split")
        where = f"{getattr(data, 'name', 'a dataset')}'s train split" + (f" ({split})" if split else "")
        return {"fit": f"{where} in Python", **_texts(list(train.queries))}
    if isinstance(data, list) and data and all(isinstance(t, Trajectory) for t in data):
        return {"fit": "trajectories in Python", **_texts([t for x in data for t in _trajectory_texts(x)])}
    return None


def recording_fit(fit: F) -> F:
    """``fit`` that, once it has returned, sets the router's ``trained_on_`` to
    :func:`fit_record` of its data (its first argument, by position or by name; a fit that fails
    leaves the record as it was). A fit that hands other data to a fit it calls (``super().fit(
    table)`` after converting a frame) keeps the record that call made. The data reaches ``fit`` as
    given: a plain iterator (a generator, ``iter(list)``, ``map``; not a file or a reader with
    attributes of its own) is passed through a generator that keeps the items the fit reads, which
    are recorded."""
    if getattr(fit, "_records_training", False) or not inspect.isfunction(fit):  # a classmethod: as it is
        return fit
    try:
        name = list(inspect.signature(fit).parameters)[1]
    except (IndexError, TypeError, ValueError):  # no data parameter (a fit(self, *args)): by position only
        name = None

    @functools.wraps(fit)
    def fit_and_record(self: Any, *args: Any, **kwargs: Any) -> Any:
        data = args[0] if args else kwargs.get(name) if name is not None else None
        seen: list[Any] | None = None
        if isinstance(data, Iterator) and type(data).__module__ in _PLAIN_ITERATORS:
            seen = []
            if args:
                args = (_read_through(data, seen), *args[1:])
            elif name is not None:
                kwargs[name] = _read_through(data, seen)
        before = getattr(self, "trained_on_", None)
        fitted = fit(self, *args, **kwargs)
        record = fit_record(seen if seen is not None else data)
        inner = getattr(self, "trained_on_", None)
        self.trained_on_ = record if record is not None or inner is before else inner
        return fitted

    fit_and_record._records_training = True  # type: ignore[attr-defined]
    return fit_and_record  # type: ignore[return-value]


#: The modules of the iterators a fit is given read through (:func:`_read_through`): no attribute
#: but ``next`` to lose.
_PLAIN_ITERATORS = frozenset({"builtins", "itertools"})


def _read_through(source: Iterator[Any], items: list[Any]) -> Iterator[Any]:
    """``source``'s items as the fit reads them, each kept in ``items`` (for its record)."""
    for item in source:
        items.append(item)
        yield item


def valid_record(value: object) -> dict[str, Any] | None:
    """``value`` when it is a record this version reads (a manifest's ``"trained_on"``), else ``None``."""
    return value if isinstance(value, dict) and value.get("digest") == DIGEST else None


def read_record(router_dir: Path) -> dict[str, Any] | None:
    """The record saved in ``router_dir``'s manifest (``None``: saved without one)."""
    from agentroute.routers.base import MANIFEST

    try:
        record = json.loads((router_dir / MANIFEST).read_text()).get(RECORD_KEY)
    except (OSError, ValueError, AttributeError):  # Router.load names what is wrong with the file
        return None
    return valid_record(record)


def count_trained_on(record: dict[str, Any], texts: Iterable[object]) -> int:
    """How many of ``texts`` (a test split's queries) the recorded fit was trained on."""
    raw = base64.b64decode(str(record.get("texts", "")))
    known = {raw[i : i + DIGEST_BYTES] for i in range(0, len(raw), DIGEST_BYTES)}
    return sum(_digest(t) in known for t in texts)


def overlap_warning(name: str, record: dict[str, Any], count: int, total: int, *, seed: int) -> str:
    """One line: router ``name`` was trained on ``count`` of the ``total`` test queries of an eval
    split drawn with ``seed``, where it came from, and what to do."""
    said = f"router {name} was trained on {count} of the {total} test queries ({count / total:.0%})"
    if "fit" in record:
        return (
            f"{said} — it was fitted on {record['fit']} — so its figures flatter it: fit it on this "
            "evaluation's train split, or evaluate on data that holds none of its training queries"
        )
    if "memory" in record:
        return (
            f"{said}: they are logged in the memory it was trained on ({record['memory']}), so its figures "
            "flatter it; evaluate on a dataset without them, or train on a memory without them"
        )
    trained = f"it was fitted on {record.get('dataset')} with --seed {record.get('seed')}"
    if record.get("seed") != seed:
        return (
            f"{said} — {trained}, this eval splits with --seed {seed} — so its figures flatter it: "
            f"evaluate with --seed {record.get('seed')}, or train with --seed {seed}"
        )
    return (
        f"{said} — {trained} — so its figures flatter it: train it on data that holds none of this "
        "test split's queries"
    )


def unchecked_note(names: list[str]) -> str:
    """One line for the saved routers that carry no record (saved by an older agentroute, or after
    a fit on data whose texts are not recorded): whether they were trained on the test split cannot
    be checked."""
    which = ", ".join(names)
    return (
        f"{which}: saved without a record of {'its' if len(names) == 1 else 'their'} training queries, so "
        "whether the test split holds queries it was trained on cannot be checked; retrain with "
        "`agentroute train` (or fit and save it in Python) to have it checked"
    )


@dataclass
class SplitCheck:
    """What :func:`check_test_split` found for the routers evaluated as trained."""

    #: Test queries each router with a record was trained on (0: held out).
    counts: dict[str, int] = field(default_factory=dict)
    #: One line (:func:`overlap_warning`) for each router trained on some.
    warnings: list[str] = field(default_factory=list)
    #: The routers saved without a record.
    unchecked: list[str] = field(default_factory=list)

    @property
    def note(self) -> str | None:
        """One line naming the routers that cannot be checked (:func:`unchecked_note`), if any."""
        return unchecked_note(self.unchecked) if self.unchecked else None


def check_test_split(
    records: Mapping[str, dict[str, Any] | None], test: Sequence[str], *, seed: int
) -> SplitCheck:
    """The rule: how many ``test`` queries (an eval split drawn with ``seed``) each router was
    trained on, by its record (``None``: saved without one), with the lines to show."""
    check = SplitCheck()
    for name, record in records.items():
        if record is None:
            check.unchecked.append(name)
            continue
        check.counts[name] = count = count_trained_on(record, test)
        if count:
            check.warnings.append(overlap_warning(name, record, count, len(test), seed=seed))
    return check

"""What a saved router was fitted on, so that ``agentroute eval`` can tell when a test split holds
queries it was trained on.

``agentroute train`` records, in the saved ``router.json`` (``"trained_on"``), a 48-bit BLAKE2b
digest of each training query's text — stripped, as the seeded split by query text groups texts
(:func:`~agentroute.eval.datasets.load_outcomes`) — with the dataset spec, seed and split it came
from (or the memory it was read from). The digests compare with any later split, whatever its
seed: ten thousand queries take about 80 kB in the manifest, and a chance match between two
distinct texts among 10k × 10k is about one in three million.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: The manifest's key for the record.
RECORD_KEY = "trained_on"
#: Bytes of each text's digest.
DIGEST_BYTES = 6
DIGEST = f"blake2b-{8 * DIGEST_BYTES} of the stripped query text"


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


def read_record(router_dir: Path) -> dict[str, Any] | None:
    """The record saved in ``router_dir``'s manifest (``None``: saved without one)."""
    from agentroute.routers.base import MANIFEST

    try:
        record = json.loads((router_dir / MANIFEST).read_text()).get(RECORD_KEY)
    except (OSError, ValueError, AttributeError):  # Router.load names what is wrong with the file
        return None
    return record if isinstance(record, dict) and record.get("digest") == DIGEST else None


def count_trained_on(record: dict[str, Any], texts: Iterable[object]) -> int:
    """How many of ``texts`` (a test split's queries) the recorded fit was trained on."""
    raw = base64.b64decode(str(record.get("texts", "")))
    known = {raw[i : i + DIGEST_BYTES] for i in range(0, len(raw), DIGEST_BYTES)}
    return sum(_digest(t) in known for t in texts)


def overlap_warning(name: str, record: dict[str, Any], count: int, total: int, *, seed: int) -> str:
    """One line: router ``name`` was trained on ``count`` of the ``total`` test queries of an eval
    split drawn with ``seed``, where it came from, and what to do."""
    said = f"router {name} was trained on {count} of the {total} test queries ({count / total:.0%})"
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
    """One line for the saved routers that carry no record (saved before it was kept, or by
    ``Router.save``): whether they were trained on the test split cannot be checked."""
    which = ", ".join(names)
    return (
        f"{which}: saved without a record of {'its' if len(names) == 1 else 'their'} training queries, so "
        "whether the test split holds queries it was trained on cannot be checked; retrain with "
        "`agentroute train` to have it checked"
    )

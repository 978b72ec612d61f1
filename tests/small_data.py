"""Small copies of the shared datasets, for tests whose subject is not the data (a CLI's signals,
checkpoints, exit codes): the same loader and code paths, a fraction of the rows to read and embed."""

from __future__ import annotations

import csv
from pathlib import Path


def small_routerbench(data_dir: Path, target: Path, rows: int = 30) -> Path:
    """A RouterBench folder (``<task>_{train,test}.csv``) holding the first ``rows`` records of each
    file of ``data_dir / "routerbench"``; returns ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    csv.field_size_limit(1 << 30)
    for source in sorted((data_dir / "routerbench").glob("*.csv")):
        with source.open(newline="", encoding="utf-8") as src, (target / source.name).open(
            "w", newline="", encoding="utf-8"
        ) as dst:
            writer = csv.writer(dst)
            for i, record in enumerate(csv.reader(src)):
                if i > rows:  # the header, then `rows` records
                    break
                writer.writerow(record)
    return target

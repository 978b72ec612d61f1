"""What the sweep of crashed cache writes may delete: in ``$AGENTROUTE_CACHE/models`` only, a folder
named as a cache write names it (``.tmp-<stem>-<size hex>-<pid>-<hex>``), holding files only, untouched
for ``STALE_TMP_S``. Was: any ``.tmp-<x>-<digits>-<8 hex>`` folder an hour old, subfolders and all, in
``models/`` and in the cache root itself (where a user may keep folders of their own)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from agentroute.pool.backends.local import drop_old_smollm_cache, sweep_left_tmp

DAY_AGO = time.time() - 86400


def folder(path: Path, *, sub: bool = False, age: float = DAY_AGO) -> Path:
    """A folder holding one file (and a subfolder when ``sub``), all last modified at ``age``."""
    (path / "sub" if sub else path).mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"\0" * 8)
    for p in (*path.rglob("*"), path):
        os.utime(p, (age, age))
    return path


def test_the_cache_root_keeps_folders_of_its_own(tmp_path: Path) -> None:
    ours = folder(tmp_path / "models" / "SmolLM2-135M-Instruct.Q4_1-5a3c")
    mine = [folder(tmp_path / name) for name in (".tmp-notes-12-0123abcd", ".tmp-run-1f-12-0123abcd")]
    assert drop_old_smollm_cache(tmp_path, ours) == 0
    assert all((p / "model.safetensors").is_file() for p in mine)  # a day old, yet not a cache write's


def test_only_a_stale_flat_cache_write_goes(tmp_path: Path) -> None:
    models = tmp_path / "models"
    crashed = folder(models / ".tmp-tiny-2f80-4242-0123abcd")
    nested = folder(models / ".tmp-tiny-2f80-4243-0123abcd", sub=True)  # not what save_pretrained writes
    live = folder(models / ".tmp-tiny-2f80-4244-0123abcd", age=time.time())  # another process writing now
    linked = folder(models / ".tmp-tiny-2f80-4245-0123abcd")
    os.symlink(nested / "model.safetensors", linked / "tokenizer.json")
    os.utime(linked, (DAY_AGO, DAY_AGO))
    assert sweep_left_tmp(models) == 1
    assert not crashed.exists()
    assert all((p / "model.safetensors").is_file() for p in (nested, live, linked))
    assert sorted(p.name for p in models.iterdir()) == sorted(p.name for p in (nested, live, linked))

"""The hidden folder an interrupted removal of the old SmolLM2 copy leaves
(``<cache>/.tmp-smollm2-135m-instruct-<pid>-<hex>``, ≈ 517 MB: renamed away, its process killed
before the delete) is swept by the next load of the default model; nothing else is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from agentroute.pool.backends.local import drop_old_smollm_cache  # noqa: E402

LEFT = ".tmp-smollm2-135m-instruct-4242-0123abcd"


def test_a_left_over_renamed_copy_is_swept_and_nothing_else(tmp_path: Path) -> None:
    ours = tmp_path / "models" / "SmolLM2"
    ours.mkdir(parents=True)
    (ours / "model.safetensors").write_bytes(b"\0" * 64)
    left = tmp_path / LEFT
    (left / "sub").mkdir(parents=True)
    (left / "model.safetensors").write_bytes(b"\0" * 4096)  # half deleted or whole: either way ours
    (left / "sub" / "x").write_text("x")
    kept = [
        ".tmp-smollm2-135m-instruct-4242-0123abcde",  # not our name: one hex digit more
        ".tmp-smollm2-135m-instruct-notes",
        "tmp-smollm2-135m-instruct-4242-0123abcd",
        ".tmp-models-4242-0123abcd",
    ]
    for name in kept:
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_text("mine")
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "f").write_text("mine")
    os.symlink(target, tmp_path / ".tmp-smollm2-135m-instruct-7-89abcdef")  # a link: never followed
    (tmp_path / ".tmp-smollm2-135m-instruct-8-89abcdef").write_text("a file, not our folder")
    assert drop_old_smollm_cache(tmp_path, ours) == 0  # no old copy to remove: the sweep alone
    assert not left.exists()
    assert all((tmp_path / name / "f").read_text() == "mine" for name in kept)
    assert (target / "f").is_file() and (tmp_path / ".tmp-smollm2-135m-instruct-7-89abcdef").is_symlink()
    assert (tmp_path / ".tmp-smollm2-135m-instruct-8-89abcdef").is_file()
    assert drop_old_smollm_cache(tmp_path / "nowhere", ours) == 0  # a missing cache root: never raises

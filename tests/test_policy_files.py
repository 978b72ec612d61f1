"""A Router-R1 policy directory that a killed or partial save left behind: loading it is an error
naming the broken file (or the directory), never a library traceback that names none."""

from __future__ import annotations

import json

import pytest

from agentroute.errors import StateFileError
from agentroute.training.lm_policy import HFPolicy


def test_weights_cut_short_are_an_error_naming_the_file(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"__meta")  # a header cut short
    with pytest.raises(StateFileError, match=r"model\.safetensors: not a readable weights file"):
        HFPolicy.load(tmp_path)  # was: the tokenizer's ValueError, then safetensors' error naming no file


def test_a_directory_without_its_files_is_an_error_naming_it(tmp_path):
    (tmp_path / "config.json").write_text("{")  # cut short
    with pytest.raises(StateFileError) as refused:
        HFPolicy.load(tmp_path)
    assert str(refused.value).startswith(f"{tmp_path}: not a loadable policy checkpoint")

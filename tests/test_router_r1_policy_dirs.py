"""`ask --policy-url URL --policy DIR` where DIR (which supplies the served model's tokenizer) holds a
model but no tokenizer: one line naming it (was: transformers' several-line message after `error:`)."""

from __future__ import annotations

import json

import pytest

from agentroute.errors import ConfigurationError
from agentroute.routers.router_r1.graph import load_policy


def test_a_policy_dir_without_a_tokenizer_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 64}))
    with pytest.raises(ConfigurationError) as refused:
        load_policy(tmp_path, policy_url="http://127.0.0.1:9/v1")  # refused before the server is asked
    text = str(refused.value)
    assert text.startswith(f"policy '{tmp_path}' holds no tokenizer: ") and "\n" not in text, text

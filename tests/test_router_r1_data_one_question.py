"""Router-R1 ``data.path``: a JSON Lines file of one question is one question."""

from __future__ import annotations

import json

from agentroute.routers.router_r1.data import load_hotpotqa


def test_json_lines_of_one_question(tmp_path):
    """Was: 'expected a list of questions (got a dict)' — one line of JSON Lines parses as a JSON object."""
    file = tmp_path / "mine.jsonl"
    file.write_text(json.dumps({"question": "Capital of France?", "answer": "Paris"}) + "\n")
    assert load_hotpotqa(file) == [{"id": "0", "question": "Capital of France?", "answer": "Paris"}]

"""Router-R1 trained on the user's own questions (``data.path`` of the recipe), not HotpotQA."""

from __future__ import annotations

import json

import pytest

from agentroute.errors import ConfigurationError
from agentroute.routers.router_r1.data import load_hotpotqa, split


def test_own_questions_as_json_lines_with_id_or_none(tmp_path):
    file = tmp_path / "mine.jsonl"
    file.write_text(json.dumps({"id": "q7", "question": "Who wrote Dune?", "answer": "Frank Herbert"}) + "\n\n"
                    + json.dumps({"question": "2+2?", "answer": "4"}) + "\n")
    rows = load_hotpotqa(file)  # was: JSONDecodeError (JSON Lines), then KeyError '_id'
    assert rows == [{"id": "q7", "question": "Who wrote Dune?", "answer": "Frank Herbert"},
                    {"id": "1", "question": "2+2?", "answer": "4"}]
    assert split(rows, 1)[0] == rows[:1]


def test_own_questions_as_a_json_list_with_hotpotqa_ids(tmp_path):
    file = tmp_path / "mine.json"
    file.write_text(json.dumps([{"_id": "a", "question": "Q?", "answer": "A", "supporting_facts": []}]))
    assert load_hotpotqa(file) == [{"id": "a", "question": "Q?", "answer": "A"}]


@pytest.mark.parametrize(("text", "says"), [
    ('[{"question": "Q?"}]', "question 0 must be an object with 'question' and 'answer' texts"),  # was: KeyError
    ('{"question": "Q?", "answer": "A"', "neither JSON nor JSON Lines"),  # was: JSONDecodeError
    ('{"questions": []}', "expected a list of questions (got a dict)"),  # was: TypeError
])
def test_a_malformed_file_is_an_error_naming_it(tmp_path, text, says):
    file = tmp_path / "mine.json"
    file.write_text(text)
    with pytest.raises(ConfigurationError) as refused:
        load_hotpotqa(file)
    assert str(refused.value).startswith(f"{file}: ") and says in str(refused.value)


def test_a_missing_file_names_it(tmp_path):
    with pytest.raises(ConfigurationError, match=f"questions not found at {tmp_path / 'nope.json'}$"):
        load_hotpotqa(tmp_path / "nope.json")

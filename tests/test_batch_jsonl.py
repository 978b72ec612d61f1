"""Reading batch input: JSONL lines split on \\n only, BOM and CRLF accepted, binary input refused; stable query ids."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentroute.batch import content_query_id, default_batch_id, read_jsonl_queries
from agentroute.errors import ConfigurationError

# query text of any Unicode, U+2028/U+2029/NEL/form feed included; lone surrogates only as JSON escapes
texts = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1).filter(lambda t: t.strip())
metadata = st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=10), st.none()), max_size=3)
records = st.fixed_dictionaries({"query": texts}, optional={"task_type": st.text(min_size=1, max_size=8), "metadata": metadata})


def _write(path, lines: list[str], *, bom: bool, crlf: bool) -> None:
    end = "\r\n" if crlf else "\n"
    data = end.join(lines) + end
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data.encode("utf-8"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(records, min_size=1, max_size=8), bom=st.booleans(), crlf=st.booleans(), ascii_only=st.booleans())
def test_any_records_read_back_exactly(tmp_path, rows, bom, crlf, ascii_only):
    path = tmp_path / "in.jsonl"
    _write(path, [json.dumps(r, ensure_ascii=ascii_only) for r in rows], bom=bom, crlf=crlf)
    items, bad = read_jsonl_queries(path)
    assert bad == []
    assert [{k: v for k, v in i.items() if k != "query_id"} for i in items] == rows
    assert len({i["query_id"] for i in items}) == len(items)  # duplicates get #2, #3 …
    again, _ = read_jsonl_queries(path)
    assert [i["query_id"] for i in again] == [i["query_id"] for i in items]  # stable across reads


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(good=st.lists(records, min_size=1, max_size=5), junk=st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20), max_size=5))  # a NUL byte is binary input: refused whole
def test_bad_lines_are_reported_with_their_number_and_never_stop_the_rest(tmp_path, good, junk):
    lines = [json.dumps(r) for r in good] + [j.replace("\n", " ").replace("\r", " ") for j in junk]
    path = tmp_path / "in.jsonl"
    _write(path, lines, bom=False, crlf=False)
    items, bad = read_jsonl_queries(path)
    assert [i["query"] for i in items][: len(good)] == [r["query"] for r in good]
    assert all(len(good) < number <= len(lines) for number, _ in bad)


def test_unicode_line_separators_inside_a_line_are_text(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"query": "a\xe2\x80\xa8b\xe2\x80\xa9c\xc2\x85d\x0ce"}\n"second"\n')
    items, bad = read_jsonl_queries(path)
    assert bad == [] and [i["query"] for i in items] == ["a\u2028b\u2029c\x85d\x0ce", "second"]


def test_escaped_nul_and_lone_surrogates_in_json_are_read_as_given(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"query": "x\\u0000y"}\n{"query": "lone \\ud800"}\n')
    items, _ = read_jsonl_queries(path)
    assert [i["query"] for i in items] == ["x\x00y", "lone \ud800"]


def test_metadata_that_is_not_an_object_is_kept_for_the_batch_to_fail_that_task(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"query": "a", "metadata": [1, 2]}\n{"query": "b", "metadata": "x"}\n')
    items, bad = read_jsonl_queries(path)
    assert bad == [] and [i["metadata"] for i in items] == [[1, 2], "x"]


def test_duplicate_query_ids_are_bad_lines_and_identical_queries_get_distinct_ids(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"query": "a", "query_id": "1"}\n{"query": "b", "query_id": "1"}\n"same"\n"same"\n')
    items, bad = read_jsonl_queries(path)
    assert bad == [(2, "duplicate query_id '1' (first on line 1)")]
    base = content_query_id({"query": "same"})
    assert [i["query_id"] for i in items] == ["1", base, f"{base}#2"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary input"),
        (b'{"query": "ok"}\n\xff\xfe\xfa garbage\n', "line 2 is not UTF-8"),
        (b'{"query": "a\x00"}\n', "NUL byte"),
    ],
)
def test_binary_input_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "in.jsonl"
    path.write_bytes(content)
    with pytest.raises(ConfigurationError, match=message):
        read_jsonl_queries(path)


def test_a_directory_or_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigurationError, match="is a directory"):
        read_jsonl_queries(tmp_path)
    with pytest.raises(ConfigurationError, match="does not exist"):
        read_jsonl_queries(tmp_path / "nope.jsonl")


def test_default_batch_id_names_the_same_input_the_same_way():
    items = [{"query_id": "a"}, {"query_id": "b"}]
    assert default_batch_id("qa", items) == default_batch_id("qa", list(items))
    assert default_batch_id("qa", items) != default_batch_id("qa", items[:1])
    assert default_batch_id("qa", items).startswith("qa-")


def test_a_blank_query_id_or_a_query_that_is_not_text_is_a_bad_line_that_says_so(tmp_path):
    """``"query_id": ""`` became a query named "" (every blank id the same query); ``{"query": 5}``
    was reported as having no query at all."""
    path = tmp_path / "in.jsonl"
    path.write_text('{"query": "a", "query_id": ""}\n{"query": 5}\n{"query": "b", "query_id": 7}\n{"query": "c", "query_id": true}\n')
    items, bad = read_jsonl_queries(path)
    assert [(i["query"], i["query_id"]) for i in items] == [("b", "7")]
    assert [n for n, _ in bad] == [1, 2, 4]
    assert "query_id must be a non-empty string or number (got '')" in bad[0][1]
    assert bad[1][1] == "query is not text (got int 5)"
    assert "got True" in bad[2][1]

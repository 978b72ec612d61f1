"""A researcher's own logs, as they come: ``agentroute eval``/``train`` on an ``outcomes:`` file,
run from a folder of her own (not the checkout), and the mess such files carry — nullable parquet
columns, a prompt logged under several ids, renamed columns, too few queries, a folder or a
spreadsheet given as the dataset."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from agentroute.eval.datasets import load_outcomes
from tests.test_cli_first_hour import agentroute

MODELS = ("small-model", "big-model")
FAST = ("--routers", "cheapest,strongest", "--no-peers", "--boot", "0")


def _rows(n: int, *, ids: str = "q{i}") -> list[dict[str, object]]:
    """Two models on ``n`` queries: the small one right on even queries, the big one always."""
    return [
        {"query_id": ids.format(i=i), "query": f"question number {i}?", "model": m,
         "score": 1 if m == "big-model" or i % 2 == 0 else 0, "cost_usd": 0.01 if m == "big-model" else 0.001}
        for i in range(n) for m in MODELS
    ]  # fmt: skip


def _csv(path: Path, rows: list[dict[str, object]], **rename: str) -> Path:
    with path.open("w", newline="") as fh:
        names = [rename.get(k, k) for k in rows[0]]
        writer = csv.writer(fh)
        writer.writerow(names)
        writer.writerows([list(r.values()) for r in rows])
    return path


def _error(run) -> str:  # noqa: ANN001
    """The one error line of a refused run (exit 2, no traceback)."""
    assert run.returncode == 2, (run.returncode, run.stderr[-2000:])
    assert "Traceback" not in run.stderr, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    return lines[0]


def test_a_parquet_of_nullable_booleans_and_ints_is_read_with_its_empty_cells_missing(tmp_path: Path) -> None:
    """Before: a ``boolean`` score column with a missing cell (what pandas writes for a nullable
    pass/fail flag) stopped ``eval`` with a traceback (TypeError: Invalid value … for dtype 'boolean')."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame(_rows(40))
    frame["score"] = frame["score"].astype("boolean")
    frame.loc[[0, 5], "score"] = pd.NA
    frame["tokens_out"] = pd.array([7] * len(frame), dtype="Int64")
    frame.loc[3, "tokens_out"] = pd.NA
    frame.to_parquet(tmp_path / "logs.parquet")
    run = agentroute("eval", "--dataset", "outcomes:logs.parquet", *FAST, "--out", "out", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "2 rows without an outcome" in run.stdout, run.stdout
    data = load_outcomes(tmp_path / "logs.parquet")
    assert data.notes["dropped_rows_without_outcome"] == 2
    scores = [v for t in (data.train, data.test) for v in t.scores.ravel().tolist() if v == v]
    assert sorted(set(scores)) == [0.0, 1.0] and len(scores) == 78 - data.notes["test_queries_dropped_incomplete"]


def test_a_parquet_of_nullable_strings_and_ids_with_missing_cells_is_read(tmp_path: Path) -> None:
    """Before: a ``string`` split, task or response column, or an ``Int64`` query_id, with a missing
    cell stopped ``eval`` with a traceback (TypeError: boolean value of NA is ambiguous)."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame(_rows(40))
    frame["query_id"] = pd.array(range(len(frame)), dtype="Int64") // 2
    frame.loc[[2, 9], "query_id"] = pd.NA  # rows 2 and 9 take the id their query text has
    text = pd.StringDtype("python")
    frame["split"] = pd.array(["test" if i < 24 else "train" for i in range(len(frame))], dtype=text)
    frame.loc[[0, 1], "split"] = pd.NA  # a query without a label: train
    frame["task"] = pd.array(["qa"] * len(frame), dtype=text)
    frame.loc[4, "task"] = pd.NA
    frame["response"] = pd.array(["an answer"] * len(frame), dtype=text)
    frame.loc[6, "response"] = pd.NA
    frame.to_parquet(tmp_path / "logs.parquet")
    run = agentroute("eval", "--dataset", "logs.parquet", *FAST, "--out", "out", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "outcomes: 29 train / 11 test queries, 0 rows without an outcome" in run.stdout, run.stdout


def test_a_prompt_logged_under_two_ids_is_held_out_whole_by_the_seeded_split(tmp_path: Path) -> None:
    """The same traffic logged twice (each run its own ids): before, a text could be trained on
    under one id and tested under the other (about half the test queries), so a router was
    judged on queries whose outcomes it had memorised. Now each text falls on one side."""
    rows = _rows(60, ids="run1-{i}") + _rows(60, ids="run2-{i}")
    data = load_outcomes(_csv(tmp_path / "logs.csv", rows))
    assert len(data.train) + len(data.test) == 120 and len(data.test) > 20
    assert not set(data.test.queries) & set(data.train.queries)


def test_a_split_column_that_puts_one_text_on_both_sides_is_warned_about(tmp_path: Path) -> None:
    """With a ``split`` column the split is the user's: ``eval`` keeps it, and says how many test
    queries' text is also a train query (under another id)."""
    rows = [{**r, "split": "test" if i < 40 else "train"} for i, r in enumerate(_rows(20, ids="a{i}") + _rows(20, ids="b{i}"))]
    run = agentroute("eval", "--dataset", "outcomes:logs.csv", *FAST, "--out", "out", cwd=_csv(tmp_path / "logs.csv", rows).parent)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "warning: 20 of 20 test queries have the text of a train query" in run.stdout, run.stdout


def test_one_logged_query_is_refused_as_too_few_to_split_not_as_bandit_logs(tmp_path: Path) -> None:
    """Before: 'no test query has every agent's outcome (0 incomplete): … for bandit logs use
    --from MEMORY_URL' for a complete log of one query, which the seeded split put in train."""
    _csv(tmp_path / "logs.csv", _rows(1))
    line = _error(agentroute("eval", "--dataset", "logs.csv", *FAST, cwd=tmp_path))
    assert "1 query" in line and "split" in line and "bandit" not in line and "--from" not in line, line


def test_renamed_columns_are_refused_naming_the_name_each_should_have(tmp_path: Path) -> None:
    """Before: 'missing ['query', 'score', 'agent or model'] (the file's columns: …)' — and a
    ``cost`` column: 'no cost_usd column, and no tokens_in/tokens_out to price', no columns named."""
    _csv(tmp_path / "logs.csv", _rows(10), query="prompt", score="correct", model="model_name")
    line = _error(agentroute("eval", "--dataset", "logs.csv", *FAST, cwd=tmp_path))
    assert "rename 'prompt' to 'query', 'correct' to 'score', 'model_name' to 'model'" in line, line
    _csv(tmp_path / "costs.csv", _rows(10), cost_usd="Cost")
    line = _error(agentroute("train", "knn", "--dataset", "outcomes:costs.csv", "--out", "knn", cwd=tmp_path))
    assert "costs.csv" in line and "rename 'Cost' to 'cost_usd'" in line and "'query_id', 'query'" in line, line


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("logs", "logs: a folder, not an outcomes file: pass the file in it (outcomes:logs/FILE.csv"),
        ("logs.xlsx", "logs.xlsx: an outcomes file is .csv, .tsv, .jsonl or .parquet (not .xlsx)"),
    ],
)
def test_a_folder_or_a_spreadsheet_as_the_dataset_says_what_to_pass(tmp_path: Path, given: str, expected: str) -> None:
    """Before: "unknown dataset 'logs'; known: dcrouter, outcomes, …" for a folder of logs or an Excel file."""
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs.xlsx").write_bytes(b"PK\x03\x04")
    line = _error(agentroute("eval", "--dataset", given, *FAST, cwd=tmp_path))
    assert expected in line, line


def test_ids_given_per_call_are_named_when_no_test_query_is_complete(tmp_path: Path) -> None:
    """A log whose ``query_id`` is a request id (one per row) reads as one agent per query; before,
    the error pointed to counterfactual evaluation only, never at the ids."""
    rows = [{**r, "query_id": f"req-{k}"} for k, r in enumerate(_rows(30))]
    line = _error(agentroute("eval", "--dataset", "logs.csv", *FAST, cwd=_csv(tmp_path / "logs.csv", rows).parent))
    assert "30 query texts are logged under several query_ids" in line and "drop the query_id column" in line, line


@pytest.mark.parametrize("spec", ["logs.csv", "outcomes:logs.csv"])
def test_train_on_a_bare_logs_file_takes_bandit_logs_as_outcomes_does(tmp_path: Path, spec: str) -> None:
    """docs/outcomes.md: a bare ``.csv`` file is ``outcomes:`` and ``train`` fits bandit logs (one
    agent per query) as they are. Before: ``train knn --dataset logs.csv`` refused them ('no test
    query has every agent's outcome … `agentroute train --dataset` uses the train rows as they
    are'), while ``outcomes:logs.csv`` trained."""
    rows = [r for i, r in enumerate(_rows(30)) if i % 2 == (i // 2) % 2]  # one model per query
    _csv(tmp_path / "logs.csv", rows)
    run = agentroute("train", "per-task", "--dataset", spec, "--out", "r", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "30 train queries × 2 models" in run.stdout, run.stdout


def test_train_says_how_many_rows_it_dropped_or_averaged(tmp_path: Path) -> None:
    """Before: ``train`` dropped rows with an empty score and averaged repeated rows without a word
    (``eval`` said both)."""
    rows = _rows(30)
    rows[0]["score"] = ""
    rows[3]["score"] = "N/A"
    _csv(tmp_path / "logs.csv", [*rows, rows[5]])
    run = agentroute("train", "per-task", "--dataset", "logs.csv", "--out", "r", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    out = " ".join(run.stdout.split())
    assert "2 rows without a query, agent, score or cost dropped" in out, out
    assert "1 repeated (query, agent) rows averaged" in out, out


def test_a_split_column_of_other_labels_names_the_file_and_its_labels(tmp_path: Path) -> None:
    """Before: "unknown split 'B' for query 'q1': expected train, test" — no file, no other labels."""
    rows = [{**r, "split": "A" if i % 4 < 2 else "B"} for i, r in enumerate(_rows(10))]
    _csv(tmp_path / "logs.csv", rows)
    line = _error(agentroute("eval", "--dataset", "logs.csv", *FAST, cwd=tmp_path))
    assert "logs.csv: column 'split' holds ['A', 'B']" in line and "rename the column" in line, line


def test_pass_fail_scores_are_read_as_one_and_zero(tmp_path: Path) -> None:
    """A grader's verdicts (``pass``/``fail``, ``correct``/``incorrect``, any case) read as 1 and 0,
    like ``yes``/``no``. Before: refused ('score 'pass' is not a number')."""
    words = {1: "PASS", 0: "fail"}
    rows = [{**r, "score": words[int(r["score"])] if i % 3 else ("correct" if r["score"] else "Incorrect")} for i, r in enumerate(_rows(30))]  # type: ignore[call-overload]
    plain = load_outcomes(_csv(tmp_path / "plain.csv", _rows(30)))
    run = agentroute("eval", "--dataset", "logs.csv", *FAST, "--out", "out", cwd=_csv(tmp_path / "logs.csv", rows).parent)
    assert run.returncode == 0, run.stderr[-2000:]
    assert load_outcomes(tmp_path / "logs.csv").test.scores.tolist() == plain.test.scores.tolist()


def test_one_model_spelt_two_ways_is_named(tmp_path: Path) -> None:
    """``Big-Model`` on some rows and ``big-model`` on others are two agents, each with half the
    queries; before, ``eval`` dropped the test queries (as incomplete) and ``train`` fitted three
    columns without a word."""
    rows = [{**r, "model": "Big-Model"} if r["model"] == "big-model" and i % 4 == 1 else r for i, r in enumerate(_rows(40))]
    _csv(tmp_path / "logs.csv", rows)
    run = agentroute("train", "per-task", "--dataset", "logs.csv", "--out", "r", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "1 agent(s) spelt several ways, each read as its own agent: 'Big-Model' vs 'big-model'" in " ".join(run.stdout.split()), run.stdout
    line = _error(agentroute("eval", "--dataset", "logs.csv", *FAST, cwd=tmp_path))
    assert "'Big-Model' vs 'big-model'" in line, line


def test_a_json_array_of_rows_is_read_and_an_object_of_columns_is_refused_saying_how_to_write_rows(tmp_path: Path) -> None:
    """``json.dump(rows, f)`` writes one array; ``DataFrame.to_json()`` an object of columns. Before:
    'line 1: expected a JSON object per line' and 'row 1, column 'query': a nested JSON value …
    Flatten it first', neither saying how to write the file."""
    import json

    (tmp_path / "logs.json").write_text(json.dumps(_rows(30), indent=2))
    run = agentroute("eval", "--dataset", "logs.json", *FAST, "--out", "out", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "outcomes: 21 train / 9 test queries" in run.stdout, run.stdout
    columns = {k: {str(i): r[k] for i, r in enumerate(_rows(30))} for k in _rows(1)[0]}
    (tmp_path / "columns.json").write_text(json.dumps(columns))
    line = _error(agentroute("eval", "--dataset", "columns.json", *FAST, cwd=tmp_path))
    assert "columns.json: one JSON object of columns" in line and "orient='records', lines=True" in line, line


def test_a_utf16_export_is_refused_as_utf16_not_as_binary(tmp_path: Path) -> None:
    """Excel's 'Unicode Text' and PowerShell write UTF-16. Before: 'a binary file, not CSV text'."""
    text = _csv(tmp_path / "utf8.csv", _rows(10)).read_text()
    (tmp_path / "logs.csv").write_bytes(text.encode("utf-16"))
    line = _error(agentroute("eval", "--dataset", "logs.csv", *FAST, cwd=tmp_path))
    assert "logs.csv: UTF-16 text; save it as UTF-8" in line, line


def test_models_of_one_cost_are_warned_about(tmp_path: Path) -> None:
    """Local models logged at cost 0 leave no cost to trade: every router's AIQ is its accuracy at
    that cost, and the zero router's is the best model's. Before: figures without a word."""
    _csv(tmp_path / "logs.csv", [{**r, "cost_usd": 0} for r in _rows(40)])
    run = agentroute("eval", "--dataset", "logs.csv", *FAST, "--out", "out", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "warning: every model costs the same on the test split ($0.000000/query)" in run.stdout, run.stdout
    run = agentroute("eval", "--dataset", "outcomes:" + str(_csv(tmp_path / "priced.csv", _rows(40))), *FAST, "--out", "out2", cwd=tmp_path)
    assert run.returncode == 0 and "costs the same" not in run.stdout, run.stdout


def test_a_sparsely_logged_agent_that_empties_the_test_split_is_named(tmp_path: Path) -> None:
    """A third model logged on one query in five leaves four test queries in five incomplete; before,
    the header said only 'N incomplete test queries dropped', not whose outcomes they lack."""
    rows = _rows(50) + [
        {"query_id": f"q{i}", "query": f"question number {i}?", "model": "rare-model", "score": 1, "cost_usd": 0.005}
        for i in range(50) if i % 5 == 0
    ]  # fmt: skip
    _csv(tmp_path / "logs.csv", rows)
    run = agentroute("eval", "--dataset", "logs.csv", *FAST, "--out", "out", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    out = " ".join(run.stdout.split())
    assert "of them rare-model's: without rare-model 15 of 15 test queries would be kept" in out, out


def test_a_wide_file_given_as_outcomes_says_how_to_make_it_long(tmp_path: Path) -> None:
    """A score column per model (how many eval scripts write results) or RouterBench's own wide file,
    passed as an outcomes file. Before: only 'missing ['score', 'agent or model']'."""
    (tmp_path / "wide.csv").write_text("query,small-model,big-model\nwhat?,0,1\nwho?,1,1\n")
    line = _error(agentroute("eval", "--dataset", "wide.csv", *FAST, cwd=tmp_path))
    assert "is wide: make it one row per query × model first, e.g. df.melt(" in line, line
    (tmp_path / "bench.csv").write_text("prompt,a,a|total_cost,a|model_response\nwhat?,1,0.1,x\n")
    line = _error(agentroute("eval", "--dataset", "bench.csv", *FAST, cwd=tmp_path))
    assert "RouterBench's wide format (a column per model): pass it as routerbench:FILE" in line, line


def test_a_log_of_one_model_is_refused_as_one_model_not_as_bandit_logs(tmp_path: Path) -> None:
    """Before: 'agents with outcomes in both splits: ['big-model']; … For bandit logs (one agent per
    query) use `agentroute eval --from MEMORY_URL`' — for a complete log of a single model."""
    _csv(tmp_path / "logs.csv", [r for r in _rows(30) if r["model"] == "big-model"])
    line = _error(agentroute("eval", "--dataset", "logs.csv", *FAST, cwd=tmp_path))
    assert "every row is big-model's: a router needs two agents" in line and "--from" not in line, line


def test_unpriced_token_counts_name_the_file_and_the_columns_to_add(tmp_path: Path) -> None:
    """Before: 'no price for model(s) …: pass prices={model: (input, output)} per 1M tokens' — no file
    named, and a fix that the command line cannot take."""
    _csv(tmp_path / "logs.csv", [{**{k: v for k, v in r.items() if k != "cost_usd"}, "tokens_in": 90, "tokens_out": 9} for r in _rows(10)])
    line = _error(agentroute("eval", "--dataset", "logs.csv", *FAST, cwd=tmp_path))
    assert line.startswith("error: logs.csv: no price for model(s) big-model, small-model") and "add input_price and output_price columns" in line, line


def test_an_unquoted_comma_in_a_prompt_is_one_line_naming_the_line_and_the_fix(tmp_path: Path) -> None:
    """Before: pandas' message with its trailing newline, so the error took two lines, and no word
    on quoting."""
    (tmp_path / "logs.csv").write_text("query,model,score,cost_usd\nhello there,a,1,0.1\nhi, how are you,a,1,0.1\n")
    line = _error(agentroute("eval", "--dataset", "logs.csv", *FAST, cwd=tmp_path))
    assert "Expected 4 fields in line 3, saw 5)" in line and "must be in double quotes" in line, line

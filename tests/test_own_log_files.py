"""A user's own log files as spreadsheets and tools write them, and the headline figures on a log
small enough to work out by hand. Each file is read right or refused naming the file, the row and
the column: a cell that is not a number never silently drops its row from the figures."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from agentroute.cli import app
from agentroute.errors import ConfigurationError, DatasetError
from agentroute.eval.datasets import load_dataset, load_outcomes
from agentroute.eval.harness import evaluate

runner = CliRunner(env={"COLUMNS": "300"})

# -- a log whose figures are worked out by hand ---------------------------------------------------
# test split: small costs 1, big costs 3; scores (small, big) per query
HAND_TEST = {"a": (1, 1), "b": (0, 1), "c": (0, 1), "d": (1, 0)}


def _hand_rows() -> list[dict]:
    rows = []
    for i in range(6):  # train: the models alternate, so that fitted routers have something to fit
        rows += [{"query": f"train {i}", "model": "small", "score": i % 2, "cost_usd": 1.0, "split": "train"},
                 {"query": f"train {i}", "model": "big", "score": 1 - i % 2, "cost_usd": 3.0, "split": "train"}]  # fmt: skip
    for q, (small, big) in HAND_TEST.items():
        rows += [{"query": f"test {q}", "model": "small", "score": small, "cost_usd": 1.0, "split": "test"},
                 {"query": f"test {q}", "model": "big", "score": big, "cost_usd": 3.0, "split": "test"}]  # fmt: skip
    return rows


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _csv(path: Path, rows: list[dict], *, header: list[str] | None = None, sep: str = ",") -> Path:
    """CSV as Excel saves it: a BOM, CRLF line ends; ``header`` renames the columns as written."""
    buf = io.StringIO()
    fields = list(rows[0])
    writer = csv.writer(buf, delimiter=sep, lineterminator="\r\n")
    writer.writerow(header or fields)
    writer.writerows([[r[f] for f in fields] for r in rows])
    path.write_bytes(b"\xef\xbb\xbf" + buf.getvalue().encode())
    return path


def test_the_headline_figures_equal_the_hand_computation(tmp_path):
    data = load_dataset(f"outcomes:{_jsonl(tmp_path / 'hand.jsonl', _hand_rows())}")
    result = evaluate(data, "cheapest,strongest,oracle", peers=False, progress=False, n_boot=50)
    singles = {s.model: (s.accuracy, s.cost) for s in result.single_models}
    assert singles == {"small": (0.5, 1.0), "big": (0.75, 3.0)}
    # oracle: a → small (tie, cheaper), b, c → big, d → small: accuracy 1, cost (1 + 3 + 3 + 1) / 4
    assert (result.oracle.accuracy, result.oracle.cost) == (1.0, 2.0)
    # zero router: the chord (1, .5) → (3, .75), mean .625; oracle: (1,.5) → (2, 1) then flat: (.75 + 1) / 2
    assert result.zero_router_aiq == pytest.approx(0.625) and result.oracle.aiq == pytest.approx(0.875)
    assert (result.best_single.model, result.best_single.accuracy) == ("big", 0.75)
    cheapest, strongest, oracle = (result.router(n) for n in ("cheapest", "strongest", "oracle"))
    assert cheapest.aiq == pytest.approx(0.5) and strongest.aiq == pytest.approx(0.625)
    assert cheapest.vs_zero[0] == pytest.approx(-0.125) and strongest.vs_zero[0] == pytest.approx(0.0)
    assert oracle.aiq == pytest.approx(0.875) and oracle.max_accuracy == 1.0
    # RouteLLM: the oracle calls big on half the queries and recovers PGR (1 − .5) / (.75 − .5) = 2 there;
    # APGR = area under (0,0) → (.5, 2) → (1, 1) = .5 + .75; CPT(50%) = .5 · .5 / 2
    assert oracle.apgr == pytest.approx(1.25) and oracle.cpt50 == pytest.approx(0.125)
    assert cheapest.apgr == pytest.approx(0.5) and strongest.strong_share == [1.0]
    for r in result.routers:  # every row has its paired interval around its own gain
        d, lo, hi = r.vs_zero
        assert lo <= d + 1e-12 and d <= hi + 1e-12


# -- cells that are not numbers -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("column", "cell", "hint"),
    [
        ("cost_usd", "$0.001", "drop the currency sign"),
        ("score", "0,5", "A comma in a number"),
        ("score", "85%", "Write a percentage as a number"),
        ("score", "inf", ""),
        ("tokens_in", "1,200", "A comma in a number"),
    ],
)
def test_a_cell_that_is_not_a_number_is_refused_naming_file_row_and_column(tmp_path, column, cell, hint):
    rows = [dict(r, tokens_in=100, tokens_out=10, input_price=1.0, output_price=2.0) for r in _hand_rows()]
    rows[4][column] = cell  # row 5 of the file; before, the row was dropped and the figures moved
    if column == "tokens_in":
        rows[4]["cost_usd"] = ""  # priced by its tokens
    path = _csv(tmp_path / "logs.csv", rows)
    with pytest.raises(DatasetError) as caught:
        load_outcomes(path)
    said = "inf is not a finite number" if cell == "inf" else f"{cell!r} is not a number"
    message = str(caught.value)
    assert str(path) in message and f"(row 5: {column} {said})" in message and hint in message, message
    result = runner.invoke(app, ["eval", "--dataset", f"outcomes:{path}", "--routers", "cheapest", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and f"(row 5: {column} {said})" in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_empty_cells_and_missing_markers_stay_missing_not_zero(tmp_path):
    rows = _hand_rows()
    rows[0]["score"], rows[1]["cost_usd"], rows[2]["score"] = "", "N/A", "nan"
    data = load_outcomes(_csv(tmp_path / "logs.csv", rows))
    assert data.notes["dropped_rows_without_outcome"] == 3 and data.notes["scores"] == "as given"


@pytest.mark.parametrize(("yes", "no"), [("yes", "no"), ("True", "False"), ("TRUE", "false"), ("Yes", "No")])
def test_scores_written_as_words_read_as_one_and_zero(tmp_path, yes, no):
    rows = [dict(r, score=yes if r["score"] else no) for r in _hand_rows()]
    words = load_outcomes(_csv(tmp_path / "words.csv", rows))
    numbers = load_outcomes(_csv(tmp_path / "numbers.csv", _hand_rows()))
    assert np.array_equal(words.test.scores, numbers.test.scores) and words.test.scores.sum() == 5
    assert np.array_equal(words.train.scores, numbers.train.scores)


def test_column_names_in_another_case_or_with_blanks_are_read(tmp_path):
    path = _csv(tmp_path / "export.csv", _hand_rows(), header=["Query", " Model ", "SCORE", "Cost USD", "Split"])
    data = load_outcomes(path)
    assert data.models == ["small", "big"] and len(data.test) == 4 and data.notes["split"].startswith("from the split column")
    same = tmp_path / "twice.csv"
    same.write_text("QUERY,Query,model,score,cost_usd\nx,y,a,1,0.1\n")
    with pytest.raises(DatasetError, match=r"columns 'QUERY' and 'Query' both read as 'query'"):
        load_outcomes(same)


def test_a_semicolon_csv_is_refused_saying_so_and_a_tsv_file_is_read_with_tabs(tmp_path):
    semicolon = _csv(tmp_path / "excel.csv", _hand_rows(), sep=";")
    result = runner.invoke(app, ["eval", "--dataset", f"outcomes:{semicolon}", "--routers", "cheapest"])
    assert result.exit_code == 2 and "separated by semicolons" in " ".join(result.output.split()), result.output
    data = load_outcomes(_csv(tmp_path / "logs.tsv", _hand_rows(), sep="\t"))
    assert data.models == ["small", "big"] and len(data.test) == 4


def test_a_nested_json_query_is_refused_not_read_as_its_repr(tmp_path):
    rows = _hand_rows()
    rows[3]["query"] = {"role": "user", "content": "train 1"}
    with pytest.raises(DatasetError, match=r"row 4, column 'query': a nested JSON value"):
        load_outcomes(_jsonl(tmp_path / "nested.jsonl", rows))
    rows = [dict(r, meta={"latency_ms": 120, "tags": ["a"]}) for r in _hand_rows()]  # nested extras are ignored
    assert len(load_outcomes(_jsonl(tmp_path / "extra.jsonl", rows)).test) == 4


def test_parquet_reads_as_the_same_table(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    pd.DataFrame(_hand_rows()).to_parquet(tmp_path / "logs.parquet")
    parquet = load_outcomes(tmp_path / "logs.parquet")
    jsonl = load_outcomes(_jsonl(tmp_path / "logs.jsonl", _hand_rows()))
    assert np.array_equal(parquet.test.scores, jsonl.test.scores) and np.array_equal(parquet.test.costs, jsonl.test.costs)


def test_repeated_rows_and_rescaled_scores_are_counted_and_printed(tmp_path):
    rows = [dict(r, score=100 * r["score"]) for r in _hand_rows()]
    rows.append(dict(rows[-1], score=50))  # test d, big again: (0 + 50) / 2, then / 100
    path = _csv(tmp_path / "logs.csv", rows)
    data = load_outcomes(path)
    assert data.notes["repeated_rows_averaged"] == 1 and data.test.scores[-1].tolist() == [1.0, 0.25]
    result = runner.invoke(
        app, ["eval", "--dataset", f"outcomes:{path}", "--routers", "cheapest", "--no-peers", "--boot", "0",
              "--out", str(tmp_path / "r")],
    )  # fmt: skip
    out = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert "1 repeated (query, agent) rows averaged" in out and "scores rescaled (min-max) from [0, 100] to [0, 1]" in out
    assert "warning: only 4 test queries: one more or less moves AIQ by 0.25" in out  # the hand log is tiny


def test_an_evaluation_on_enough_test_queries_gives_no_warning(tmp_path):
    rows = [{"query": f"q{i}", "model": m, "score": (i + k) % 2, "cost_usd": 1.0 + k, "split": "test" if i % 2 else "train"}
            for i in range(70) for k, m in enumerate(("small", "big"))]  # fmt: skip
    result = evaluate(load_dataset(f"outcomes:{_jsonl(tmp_path / 'l.jsonl', rows)}"), "cheapest", peers=False,
                      progress=False, n_boot=0)  # fmt: skip
    assert result.n_test == 35 and "few_test_queries" not in result.notes


def test_results_csv_gives_each_interval_as_three_numbers(tmp_path):
    pd = pytest.importorskip("pandas")
    data = load_dataset(f"outcomes:{_jsonl(tmp_path / 'hand.jsonl', _hand_rows())}")
    result = evaluate(data, "cheapest,strongest", peers=["per-task"], progress=False, n_boot=50)
    table = pd.read_csv(result.write(tmp_path / "out")["csv"]).set_index("name")
    for r in result.routers:  # before: one cell holding the text "[gain, low, high]"
        assert table.loc[r.name, ["vs_zero", "vs_zero_low", "vs_zero_high"]].tolist() == pytest.approx(r.vs_zero)
    assert table.loc["cheapest", "vs_zero"] == pytest.approx(-0.125)
    assert np.isnan(table.loc["per-task", "vs_reference_low"])  # the reference has no gain over itself


def test_a_bare_log_file_is_read_as_outcomes_by_eval(tmp_path):
    path = _csv(tmp_path / "logs.csv", _hand_rows())  # before: "unknown dataset '/…/logs.csv'"
    result = runner.invoke(
        app, ["eval", "--dataset", str(path), "--routers", "cheapest", "--no-peers", "--boot", "0", "--json",
              "--out", str(tmp_path / "r")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["zero_router_aiq"] == pytest.approx(0.625)
    missing = runner.invoke(app, ["eval", "--dataset", str(tmp_path / "nope.jsonl"), "--routers", "cheapest"])
    assert missing.exit_code == 2 and "nope.jsonl does not exist; expected an outcomes file" in " ".join(missing.output.split())


def test_a_query_whose_rows_name_both_splits_is_refused(tmp_path):
    rows = _hand_rows()
    rows[-1]["split"] = "validation"  # test d: small says test, big says validation (train)
    with pytest.raises(DatasetError, match=r"query '\w+' \('test d'\) has rows in both train and test"):
        load_outcomes(_jsonl(tmp_path / "mixed.jsonl", rows))  # before: the first row's split, silently
    rows[-1]["split"] = "TEST "  # the same split however written
    assert len(load_outcomes(_jsonl(tmp_path / "same.jsonl", rows)).test) == 4


def _blind_router(seed: int, n: int = 1000) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Random outcomes of two models, and a 48-point sweep that knows nothing of them: at knob p it
    sends to the dear model the queries whose draw u < p (nested, as a threshold router's)."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 2, (n, 2)).astype(float)
    costs = np.tile([1.0, 10.0], (n, 1))
    choice = (rng.random(n)[None, :] < np.linspace(0, 1, 48)[:, None]).astype(int)
    rows = np.arange(n)
    return (scores[rows, choice], costs[rows, choice]), (scores, costs)


def test_a_router_that_knows_nothing_is_not_called_better_than_the_zero_router():
    from agentroute.eval import metrics as M

    above = []
    for seed in range(12):
        sweep, single = _blind_router(seed, n=3000)
        d, low, high = M.bootstrap_aiq_difference(sweep, None, single, n_boot=100, seed=seed)  # basic: the default
        assert d >= 0 and low < high  # its sweep holds both single models: never below the zero router
        above.append(bool(low > 0))
        _, p_low, p_high = M.bootstrap_aiq_difference(sweep, None, single, n_boot=100, seed=seed, interval="percentile")
        assert (low, high) == pytest.approx((2 * d - p_high, 2 * d - p_low))  # the same draws, reflected
    # a 90% interval lies above 0 for a useless router about 5% of the time; the percentile
    # interval did in about half the draws (15 of 30 at 3,000 queries)
    assert sum(above) <= 1, above


def test_eval_takes_the_basic_interval_and_says_which_it_gave(tmp_path, capsys):
    path = _jsonl(tmp_path / "hand.jsonl", _hand_rows())
    data = load_dataset(f"outcomes:{path}")
    basic = evaluate(data, "strongest", peers=False, progress=False, n_boot=50)  # the default
    plain = evaluate(data, "strongest", peers=False, progress=False, n_boot=50, interval="percentile")
    (d, lo, hi), (_, p_lo, p_hi) = basic.router("strongest").vs_zero, plain.router("strongest").vs_zero
    assert (lo, hi) == pytest.approx((2 * d - p_hi, 2 * d - p_lo)) and basic.boot["interval"] == "basic"
    with pytest.raises(ConfigurationError, match="interval must be one of"):
        evaluate(data, "strongest", peers=False, progress=False, interval="bca")
    for given, said in (([], "basic"), (["--interval", "percentile"], "percentile")):
        out = runner.invoke(app, ["eval", "--dataset", str(path), "--routers", "cheapest", "--boot", "20", "--no-peers", *given])
        assert out.exit_code == 0, out.output
        assert f"paired-bootstrap {said} interval" in " ".join(out.output.split())


def test_apgr_on_two_models_that_differ_within_noise_says_so(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(400):  # random outcomes: the two models differ only by chance
        for model, cost in (("small", 1.0), ("big", 10.0)):
            rows.append({"query": f"q{i}", "model": model, "score": int(rng.integers(0, 2)), "cost_usd": cost})
    result = evaluate(load_dataset(f"outcomes:{_jsonl(tmp_path / 'noise.jsonl', rows)}"), "cheapest",
                      peers=False, progress=False, n_boot=0)  # fmt: skip
    assert "mostly measure noise" in result.notes["apgr"]
    assert "apgr" in evaluate(load_dataset(f"outcomes:{_jsonl(tmp_path / 'hand.jsonl', _hand_rows())}"), "cheapest",
                              peers=False, progress=False, n_boot=0).notes  # .5 vs .75, but on 4 queries  # fmt: skip
    rows = [{"query": f"q{i}", "model": model, "score": int(i % 10 < right), "cost_usd": cost}
            for i in range(100) for model, cost, right in (("small", 1.0, 3), ("big", 10.0, 9))]  # fmt: skip
    clear = evaluate(load_dataset(f"outcomes:{_jsonl(tmp_path / 'clear.jsonl', rows)}"), "cheapest",
                     peers=False, progress=False, n_boot=0)  # fmt: skip
    assert "apgr" not in clear.notes and clear.router("cheapest").apgr == pytest.approx(0.5)


def test_rows_of_a_query_logged_with_and_without_its_query_id_stay_one_query(tmp_path):
    rows = [dict(r, query_id=f"id-{r['query']}") for r in _hand_rows()]
    for r in rows[1::4]:
        r["query_id"] = None  # a logger that sometimes drops the id
    rows[3]["query_id"] = ""
    data = load_outcomes(_jsonl(tmp_path / "ids.jsonl", rows))
    # before: each such row became a query of its own, the test queries "incomplete" and dropped
    assert (len(data.train), len(data.test)) == (6, 4) and data.notes["test_queries_dropped_incomplete"] == 0
    assert data.notes["train_cells_missing"] == 0 and all(q.startswith("id-") for q in data.test.query_ids)

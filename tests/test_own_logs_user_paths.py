"""A new user's own logs, through the real CLI: outcome files written by hand (BOM, CRLF, CJK,
emoji, missing fields, duplicates), memories that are empty, failed or unscored, and bad paths.
Every bad input is a one-line error with exit 2, never a traceback, and never a file created."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from agentroute import AgentGraph, make_router
from agentroute.cli import app
from agentroute.eval.datasets import load_outcomes
from agentroute.loading import load_router
from agentroute.memory import SQLMemory
from agentroute.pool import ModelCard, ModelPool, ReplayBackend
from agentroute.routers.explore import ExploreRouter
from tests.helpers import replay_pool

runner = CliRunner(env={"COLUMNS": "200"})

MODELS = {"llama-3-8b": (0.4, 0.0001), "gpt-4o-mini": (0.7, 0.0005), "claude-3-opus": (0.9, 0.004)}
TOPICS = (
    "翻译成英文：我今天{i}点起床",
    "write a haiku about cat {i} 🐱",
    "what is {i} + {i}?",
    "¿Cuánto es {i} por 3?",
)


def _own_log(n: int = 60, *, new_model: bool = True) -> list[dict]:
    """What a user writes from their own logs: three models on every query, a split column,
    CJK/emoji prompts, a few rows without cost or score, a repeated row, and a fourth model
    logged only on test queries (it was added to production last week)."""
    rows = []
    for i in range(n):
        split = "test" if i % 4 == 0 else "train"
        for k, (model, (p, cost)) in enumerate(MODELS.items()):
            row = {"query": TOPICS[i % 4].format(i=i), "model": model, "score": float((i * 7 + k * 3) % 10 < 10 * p),
                   "cost_usd": cost, "task": f"t{i % 4}", "split": split}  # fmt: skip
            if i % 13 == 1 and k == 0:
                del row["cost_usd"]
            if i % 11 == 2 and k == 1:
                row["score"] = None
            rows.append(row)
        if i % 9 == 0:
            rows.append(dict(rows[-1]))
        if split == "test" and new_model:
            rows.append(
                {
                    "query": TOPICS[i % 4].format(i=i),
                    "model": "mistral-new",
                    "score": 1.0,
                    "cost_usd": 0.0002,
                    "split": "test",
                }
            )
    return rows


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    """JSONL as a Windows tool writes it: a BOM and CRLF line ends."""
    path.write_bytes(
        b"\xef\xbb\xbf" + "".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in rows).encode()
    )
    return path


def _write_csv(path: Path, rows: list[dict]) -> Path:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=["query", "model", "score", "cost_usd", "task", "split"], lineterminator="\r\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    path.write_bytes(b"\xef\xbb\xbf" + buf.getvalue().encode())
    return path


@pytest.mark.parametrize("write", [_write_jsonl, _write_csv])
def test_a_model_logged_only_on_test_queries_is_left_out_and_said_so(tmp_path, write):
    path = write(tmp_path / ("logs.jsonl" if write is _write_jsonl else "logs.csv"), _own_log())
    data = load_outcomes(path)
    assert data.models == list(MODELS) and "mistral-new" in data.notes["models_dropped"]
    assert len(data.test) >= 12  # test queries are no longer dropped for lacking the new model's outcome
    queries = data.train.queries + data.test.queries  # read intact through the BOM and the CRLF line ends
    assert "翻译成英文：我今天0点起床" in queries and "write a haiku about cat 1 🐱" in queries

    result = runner.invoke(
        app, ["train", "knn", "--dataset", f"outcomes:{path}", "--out", str(tmp_path / "knn")]
    )
    assert result.exit_code == 0, result.output
    assert "× 3 models" in result.output and "mistral-new" in result.output
    assert "mistral-new" not in json.dumps(json.loads((tmp_path / "knn" / "router.json").read_text()))
    # a pool with the untrained model: the router says it never saw it, rather than routing to it blind
    pool = ModelPool(
        [
            ModelCard(id=m, backend="litellm", input_price=1, output_price=1)
            for m in ("gpt-4o-mini", "mistral-new")
        ]
    )
    with pytest.raises(Exception, match="unseen in training: executor:mistral-new:direct"):
        load_router(str(tmp_path / "knn"), pool=pool)

    result = runner.invoke(app, ["eval", "--dataset", f"outcomes:{path}", "--routers", "cheapest,strongest",
                                 "--no-peers", "--boot", "0", "--out", str(tmp_path / "ev")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "mistral-new" in result.output and "Traceback" not in result.output
    results = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert [m["model"] for m in results["single_models"]] == list(MODELS) and "mistral-new" in results[
        "notes"
    ]["models_dropped"]


def test_a_model_retired_before_the_test_split_is_left_out_of_eval_but_trained(tmp_path):
    rows = _own_log(new_model=False)
    rows += [
        {"query": "old query 𝛑", "model": "old-model", "score": 1.0, "cost_usd": 0.001, "split": "train"}
    ]
    path = _write_jsonl(tmp_path / "logs.jsonl", rows)
    data = load_outcomes(path)
    assert (
        data.models == list(MODELS) and "old-model" in data.notes["models_dropped"] and len(data.test) >= 12
    )
    assert "old-model" in load_outcomes(path, require_test=False).train.models  # training keeps it


def test_bandit_logs_with_a_rarely_chosen_agent_still_train_on_both_and_are_not_replayed(tmp_path):
    # one agent per query, the second agent chosen once (on a query of the test split drawn by seed 3): a log
    rows = [{"query": f"q {i} 😀", "agent": "executor:m:cot" if i == 3 else "executor:m:direct", "score": i % 2,
             "cost_usd": 0.001} for i in range(20)]  # fmt: skip
    path = _write_jsonl(tmp_path / "x.jsonl", rows)
    with pytest.raises(Exception, match=r"no train outcome.*a router needs two.*eval --from MEMORY_URL"):
        load_outcomes(path, seed=3)
    assert load_outcomes(path, seed=3, require_test=False).train.models == ["executor:m:direct", "executor:m:cot"]


def test_an_empty_outcomes_file_says_it_is_empty(tmp_path):
    for name in ("empty.jsonl", "blank.jsonl"):
        (tmp_path / name).write_text("" if name == "empty.jsonl" else "\r\n\n")
        result = runner.invoke(
            app, ["train", "knn", "--dataset", f"outcomes:{tmp_path / name}", "--out", str(tmp_path / "r")]
        )
        assert (
            result.exit_code == 2 and "no outcome rows" in result.output and "missing [" not in result.output
        )


def test_train_checks_out_before_fitting(tmp_path):
    path = _write_jsonl(tmp_path / "logs.jsonl", _own_log(20, new_model=False))
    spec = f"outcomes:{path}"
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.tex").write_text("mine")
    for out in (a_file, busy):
        result = runner.invoke(app, ["train", "per-task", "--dataset", spec, "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert f"--out {out}" in result.output and "training" not in result.output  # refused before fitting
    assert a_file.read_text() == "mine" and sorted(p.name for p in busy.iterdir()) == ["thesis.tex"]
    # a directory that holds a saved router is retrained in place
    for _ in range(2):
        result = runner.invoke(app, ["train", "per-task", "--dataset", spec, "--out", str(tmp_path / "r")])
        assert result.exit_code == 0, result.output


def test_eval_and_routers_show_check_out_first(tmp_path):
    path = _write_jsonl(tmp_path / "logs.jsonl", _own_log(20, new_model=False))
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    result = runner.invoke(app, ["eval", "--dataset", f"outcomes:{path}", "--routers", "cheapest", "--no-peers",
                                 "--boot", "0", "--out", str(a_file)])  # fmt: skip
    assert (
        result.exit_code == 2
        and "--out" in result.output
        and not isinstance(result.exception, FileExistsError)
    )
    assert (
        runner.invoke(
            app, ["train", "per-task", "--dataset", f"outcomes:{path}", "--out", str(tmp_path / "r")]
        ).exit_code
        == 0
    )
    result = runner.invoke(
        app, ["routers", "show", "per-task", "--state", str(tmp_path / "r"), "--out", str(a_file)]
    )
    assert (
        result.exit_code == 2
        and "--out" in result.output
        and not isinstance(result.exception, FileExistsError)
    )
    assert a_file.read_text() == "mine"


def test_train_from_a_memory_and_a_dataset_at_once_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path}/m.db"
    _serve(url, replay_pool(6), 6)
    path = _write_jsonl(tmp_path / "logs.jsonl", _own_log(20, new_model=False))
    result = runner.invoke(app, ["train", "knn", "--from", url, "--dataset", f"outcomes:{path}", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "not both" in result.output and not (tmp_path / "r").exists(), result.output
    result = runner.invoke(app, ["eval", "--from", url, "--dataset", f"outcomes:{path}", "--routers", "cheapest"])
    assert result.exit_code == 2 and "not both" in result.output, result.output  # --dataset was silently ignored


def test_train_and_eval_from_a_memory_file_that_does_not_exist_create_none(tmp_path):
    url = f"sqlite:///{tmp_path}/typo.db"
    for args in (
        ["train", "knn", "--from", url, "--out", str(tmp_path / "r")],
        ["eval", "--from", url, "--routers", "cheapest"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "no memory database at" in result.output, result.output
    assert not (tmp_path / "typo.db").exists() and not (tmp_path / "r").exists()


class _Unscored(ReplayBackend):
    """Replays answers and costs but, like a live provider, no score."""

    async def complete(self, request, card):
        return (await super().complete(request, card)).model_copy(update={"score": None})


def _serve(url: str, pool: ModelPool, n: int, router=None) -> None:
    with SQLMemory(url) as memory:
        graph = AgentGraph("one").add_role("executor", prompt="p")
        compiled = graph.compile(
            pool=pool, router=router or ExploreRouter(base="cheapest", epsilon=0.5), memory=memory
        )
        asyncio.run(
            compiled.arun_many([{"query": f"question {i} 🙂", "query_id": f"q{i}"} for i in range(n)])
        )


def test_a_memory_of_failed_or_unscored_tasks_says_what_it_holds(tmp_path):
    failed = f"sqlite:///{tmp_path}/failed.db"  # a replay pool with no logged outcome: every call fails
    _serve(
        failed,
        ModelPool([ModelCard(id="m", backend="replay", input_price=1, output_price=1)]),
        3,
        make_router("cheapest"),
    )
    result = runner.invoke(app, ["train", "knn", "--from", failed, "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "failed: 3" in result.output, result.output

    unscored = f"sqlite:///{tmp_path}/unscored.db"  # served by a backend that knows no outcome, never scored
    logged = replay_pool(5)
    _serve(
        unscored,
        ModelPool(list(logged), {"replay": _Unscored(logged.backend("small")._outcomes.values())}),
        5,
    )
    with SQLMemory(unscored) as memory:
        assert len(memory.trajectories()) == 5 and not memory.trajectories(with_score=True)
    result = runner.invoke(app, ["eval", "--from", unscored, "--routers", "cheapest"])
    assert result.exit_code == 2 and "'unscored': 5" in result.output, result.output


def test_memory_export_refuses_what_it_cannot_write_or_read_back(tmp_path):
    url = f"sqlite:///{tmp_path}/m.db"
    _serve(url, replay_pool(10), 10)
    for out, said in ((tmp_path, "a directory"), (tmp_path / "logs", ".jsonl, .csv or .parquet")):
        result = runner.invoke(
            app, ["memory", "export", "--format", "outcomes", "--out", str(out), "--memory", url]
        )
        assert result.exit_code == 2 and said in result.output, result.output
    result = runner.invoke(
        app, ["memory", "export", "--format", "jsonl", "--out", str(tmp_path), "--memory", url]
    )
    assert result.exit_code == 2 and "a directory" in result.output, result.output
    bad = ((["--status", "finnished"], "--status finnished: not a task status"), (["--limit", "0"], "--limit must be at least 1"))
    for option, said in bad:  # a typo exported nothing, silently
        result = runner.invoke(app, ["memory", "export", "--out", str(tmp_path / "t.jsonl"), "--memory", url, *option])
        assert result.exit_code == 2 and said in result.output and not (tmp_path / "t.jsonl").exists(), result.output


def test_errors_keep_brackets_and_name_the_unpriced_models(tmp_path):
    # rich markup must not eat "[v2]" out of a path: the message would name another file
    result = runner.invoke(app, ["train", "knn", "--dataset", f"outcomes:{tmp_path / 'logs[v2].jsonl'}", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "logs[v2].jsonl does not exist" in result.output, result.output
    rows = [{"query": f"question {i}", "model": m, "score": float(i % 3 == 0 or m == "big"), "tokens_in": 100, "tokens_out": 20}
            for i in range(20) for m in ("small", "big")]  # fmt: skip
    path = _write_jsonl(tmp_path / "tokens.jsonl", rows)
    result = runner.invoke(app, ["train", "knn", "--dataset", f"outcomes:{path}", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "no price for model(s) big, small" in result.output, result.output
    assert "input_price and output_price columns" in result.output and "np.str_" not in result.output


def test_eval_header_counts_rows_and_queries_apart(tmp_path):
    path = _write_jsonl(tmp_path / "logs.jsonl", _own_log(new_model=False))
    data = load_outcomes(path)
    rows, queries = data.notes["dropped_rows_without_outcome"], data.notes["test_queries_dropped_incomplete"]
    assert rows > 0 and queries > 0
    result = runner.invoke(app, ["eval", "--dataset", f"outcomes:{path}", "--routers", "cheapest", "--no-peers",
                                 "--boot", "0", "--out", str(tmp_path / "ev")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"{rows} rows without an outcome and {queries} incomplete test queries dropped" in result.output


def test_the_memory_export_trains_the_same_table_as_the_memory(tmp_path):
    url = f"sqlite:///{tmp_path}/m.db"
    with SQLMemory(url) as memory:  # two routed roles: each task logs two scored steps
        graph = AgentGraph("two").add_role("planner", prompt="Plan.").add_role("executor", prompt="Answer.")
        graph.add_edge("planner", "executor")
        compiled = graph.compile(pool=replay_pool(12), router=ExploreRouter(base="cheapest", epsilon=0.5), memory=memory)
        asyncio.run(compiled.arun_many([{"query": f"question {i} 🙂", "query_id": f"q{i}"} for i in range(12)]))
        trajectories = memory.trajectories(with_score=True)
    assert {len(t.steps) for t in trajectories} == {2}
    out = tmp_path / "logs.csv"
    assert runner.invoke(app, ["memory", "export", "--format", "outcomes", "--out", str(out), "--memory", url]).exit_code == 0
    from agentroute.outcomes import OutcomeTable

    logged = OutcomeTable.from_trajectories(trajectories)
    exported = load_outcomes(out, require_test=False).train
    assert sorted(exported.queries) == sorted(logged.queries) and len(exported) == len(logged) == 12
    assert set(exported.models) == set(logged.models)
    by_query = {q: i for i, q in enumerate(exported.queries)}
    for i, query in enumerate(logged.queries):  # the same cells, row by row
        row = exported.scores[by_query[query]]
        assert [row[exported.models.index(m)] for m in logged.models] == pytest.approx(list(logged.scores[i]), nan_ok=True)


def test_a_file_whose_every_row_lacks_an_outcome_says_what_row_1_lacks(tmp_path):
    path = tmp_path / "graded.csv"
    path.write_text("query,model,score,cost_usd\r\nwhat is 2+2?,a,high,0.1\r\nwhat is 3+3?,b,low,0.2\r\n")
    result = runner.invoke(app, ["train", "knn", "--dataset", f"outcomes:{path}", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "(row 1: score 'high' is not a number)" in result.output, result.output
    rows = [{"query": q, "model": m, "score": 1.0, "cost_usd": 0.1} for q in ("  ", "what?", "why?") for m in "ab"]
    data = load_outcomes(_write_jsonl(tmp_path / "blank.jsonl", rows), require_test=False)  # a blank query is no query
    assert data.notes["dropped_rows_without_outcome"] == 2 and sorted(data.train.queries + data.test.queries) == ["what?", "why?"]


def test_train_says_what_it_holds_out_and_keeps_rows_the_split_column_calls_train(tmp_path):
    rows = _own_log(40, new_model=False)
    for row in rows:
        row["split"] = "train"  # every row marked train: all of them are trained on
    marked = _write_jsonl(tmp_path / "marked.jsonl", rows)
    result = runner.invoke(app, ["train", "per-task", "--dataset", f"outcomes:{marked}", "--out", str(tmp_path / "a")])
    assert result.exit_code == 0 and "outcomes: 40 train queries" in result.output and "held out" not in result.output, result.output
    for row in rows:
        del row["split"]  # no split column: a seeded 30% is held out, and train says so
    plain = _write_jsonl(tmp_path / "plain.jsonl", rows)
    result = runner.invoke(app, ["train", "per-task", "--dataset", f"outcomes:{plain}", "--out", str(tmp_path / "b")])
    assert result.exit_code == 0 and "test queries held out: seeded random split by query" in result.output, result.output
    # eval needs a test split: a drawn one would judge the router trained on every row on rows it saw
    result = runner.invoke(app, ["eval", "--dataset", f"outcomes:{marked}", "--routers", "cheapest", "--no-peers"])
    assert result.exit_code == 2 and "the split column names only train queries: label some test" in result.output


def test_a_query_id_reused_for_different_queries_is_refused(tmp_path):
    rows = _own_log(20, new_model=False)
    for row in rows:
        row["query_id"] = "session-7" if row["query"].startswith("what is") else row["query"]  # one id, five prompts
    path = _write_jsonl(tmp_path / "logs.jsonl", rows)
    result = runner.invoke(app, ["train", "knn", "--dataset", f"outcomes:{path}", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "query_id 'session-7' names different queries" in result.output, result.output


def test_a_propensity_that_is_not_a_number_is_missing_not_a_traceback(tmp_path):
    rows = [{"query": f"q {i}", "model": m, "score": float(m == "b" or i % 2), "cost_usd": 0.1 if m == "a" else 1.0,
             "propensity": "n/a" if i == 3 else 0.5} for i in range(20) for m in ("a", "b")]  # fmt: skip
    path = _write_jsonl(tmp_path / "logs.jsonl", rows)
    result = runner.invoke(app, ["train", "knn", "--dataset", f"outcomes:{path}", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    train = load_outcomes(path).train
    assert train.propensity is not None and np.isnan(train.propensity).sum() == (2 if "q 3" in train.queries else 0)


def test_wrong_columns_and_formats_are_named(tmp_path):
    (tmp_path / "excel.csv").write_text("query;model;score;cost_usd\r\nx;a;1;0.1\r\n")  # a semicolon CSV
    (tmp_path / "logs.xlsx").write_bytes(b"PK\x03\x04")
    said = {"excel.csv": "the file's columns: ['query;model;score;cost_usd']", "logs.xlsx": "got '.xlsx'"}
    for name, text in said.items():
        result = runner.invoke(app, ["eval", "--dataset", f"outcomes:{tmp_path / name}", "--routers", "cheapest"])
        assert result.exit_code == 2 and text in result.output and "<task>_train.csv" not in result.output, result.output


def test_a_subset_of_sparse_train_logs_leaves_out_the_agents_it_loses(tmp_path):
    # production logs (one agent per query) to train on, a full-information benchmark to test on
    cost = {"a": 0.1, "b": 0.5, "c": 1.0}
    rows = [{"query": f"prod {i}", "model": "abc"[i % 3] if i % 5 else "a", "score": float(i % 2), "cost_usd": cost["abc"[i % 3] if i % 5 else "a"],
             "split": "train"} for i in range(30)]  # fmt: skip
    rows += [{"query": f"bench {i}", "model": m, "score": float((i + ord(m)) % 3 == 0), "cost_usd": cost[m], "split": "test"}
             for i in range(10) for m in "abc"]  # fmt: skip
    path = _write_jsonl(tmp_path / "mixed.jsonl", rows)
    result = runner.invoke(app, ["eval", "--dataset", f"outcomes:{path}", "--routers", "cheapest", "--no-peers", "--boot", "0",
                                 "--limit", "5", "--out", str(tmp_path / "ev")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "left out of the subset: b (no train outcome in it)" in result.output and "input_price" not in result.output


def test_a_misspelt_recipe_parameter_is_named(tmp_path):
    path = _write_jsonl(tmp_path / "logs.jsonl", _own_log(20, new_model=False))
    recipe = tmp_path / "knn.yaml"
    recipe.write_text(f"params:\n  kk: 5\ndataset: outcomes:{path}\n")
    result = runner.invoke(app, ["train", "knn", "--config", str(recipe), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "knn takes no parameter kk (it takes: cost_weight, k," in result.output, result.output


def test_a_misspelt_router_spec_parameter_is_named_by_eval_too(tmp_path):
    path = _write_jsonl(tmp_path / "logs.jsonl", _own_log(20, new_model=False))
    url = f"sqlite:///{tmp_path}/m.db"
    _serve(url, replay_pool(6), 6)
    out = ["--out", str(tmp_path / "ev")]  # --from writes no folder: eval refuses --out there (an option its mode does not use)
    for source in (["--dataset", f"outcomes:{path}", *out], ["--from", url]):  # --from raised a TypeError traceback
        result = runner.invoke(app, ["eval", *source, "--routers", "cheapest,knn:kk=5"])
        assert result.exit_code == 2 and "router spec 'knn:kk=5': knn takes no parameter kk" in result.output, result.output


def test_a_folder_that_holds_no_saved_router_is_bad_input_everywhere(tmp_path):
    empty = tmp_path / "not-a-router"
    empty.mkdir()
    path = _write_jsonl(tmp_path / "logs.jsonl", _own_log(20, new_model=False))
    for args in (["routers", "show", "knn", "--state", str(empty), "--out", str(tmp_path / "ev")],
                 ["eval", "--dataset", f"outcomes:{path}", "--routers", str(empty), "--no-peers", "--boot", "0"]):  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "no saved router here" in result.output, result.output


def test_exporting_a_memory_without_scores_says_why_the_file_is_empty(tmp_path):
    url = f"sqlite:///{tmp_path}/m.db"
    logged = replay_pool(4)
    _serve(url, ModelPool(list(logged), {"replay": _Unscored(logged.backend("small")._outcomes.values())}), 4)
    out = tmp_path / "logs.csv"
    result = runner.invoke(app, ["memory", "export", "--format", "outcomes", "--out", str(out), "--memory", url])
    assert result.exit_code == 0 and "wrote 0 outcome rows" in result.output and "score them first" in result.output
    result = runner.invoke(app, ["train", "knn", "--dataset", f"outcomes:{out}", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "no outcome rows" in result.output and "missing [" not in result.output, result.output


def test_an_out_path_that_cannot_be_created_is_an_error_not_a_traceback(tmp_path):
    path = _write_jsonl(tmp_path / "logs.jsonl", _own_log(20, new_model=False))
    (tmp_path / "a-file").write_text("mine")
    under_a_file = tmp_path / "a-file" / "sub"  # mkdir fails (not a directory)
    assert runner.invoke(app, ["train", "per-task", "--dataset", f"outcomes:{path}", "--out", str(tmp_path / "r")]).exit_code == 0
    for args in (["train", "per-task", "--dataset", f"outcomes:{path}"],
                 ["eval", "--dataset", f"outcomes:{path}", "--routers", "cheapest", "--no-peers", "--boot", "0"],
                 ["routers", "show", "per-task", "--state", str(tmp_path / "r")]):  # fmt: skip
        result = runner.invoke(app, [*args, "--out", str(under_a_file)])
        assert result.exit_code == 2 and "cannot write" in result.output, result.output

"""Loaders of agentroute.eval on the real logged-outcome data (reference figures of issue 3)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from agentroute.errors import ConfigurationError, DatasetError, UnknownNameError
from agentroute.eval import load_dataset, load_dcrouter, load_routellm_mmlu, load_routerbench
from agentroute.eval import metrics as M
from agentroute.types import CompletionRequest

GPT4 = "gpt-4-1106-preview"


@pytest.fixture(scope="module")
def routerbench(data_dir):
    return load_routerbench(data_dir / "routerbench")


@pytest.fixture(scope="module")
def dcrouter(data_dir):
    return load_dcrouter(data_dir / "llmrouter")


@pytest.fixture(scope="module")
def mmlu(data_dir):
    return load_routellm_mmlu(data_dir / "routellm" / "mmlu_responses")


# -- reference figures ---------------------------------------------------------------------------
def test_routerbench_reference_figures(routerbench):
    test = routerbench.test
    assert len(test) == 945
    assert routerbench.notes["dropped_by_split"]["test"] == 8
    assert routerbench.dropped_rows == sum(routerbench.notes["dropped_by_split"].values())
    j = test.models.index(GPT4)
    assert round(M.accuracy(test.scores[:, j]), 3) == 0.879
    assert round(M.mean_cost(test.costs[:, j]), 4) == 0.0050
    assert round(M.oracle(test.scores, test.costs)[0], 3) == 0.976
    assert len(test.models) == 11
    assert not np.isnan(test.scores).any() and not np.isnan(test.costs).any()


def test_routerbench_rows_keep_tasks_responses_and_unique_ids(routerbench):
    test = routerbench.test
    assert set(test.task_types) == {"arc-challenge", "winogrande", "mbpp"}
    assert test.responses is not None and len(test.responses[0]) == len(test.models)
    ids = routerbench.train.query_ids + test.query_ids
    assert len(set(ids)) == len(ids)  # the subset repeats a few sample_ids: made unique
    assert not test.queries[0].startswith("['")  # the list-literal prompt is unpacked
    # so are the responses: a cascade reads what the model said ("A"), not the CSV's "['A\\n']"
    assert not any(r.startswith("['") for row in test.responses for r in row)
    arc = test.task_types.index("arc-challenge")
    assert test.responses[arc][test.models.index("gpt-4-1106-preview")] in {"A", "B", "C", "D"}


def test_dcrouter_reference_figures(dcrouter):
    test = dcrouter.test
    assert len(test) == 500 and len(dcrouter.train) == 5608
    singles = M.single_model_points(test.scores, test.costs)
    best = int(np.argmax(singles[:, 1]))
    assert test.models[best] == "llama-3.1-nemotron-51b-instruct"
    assert round(singles[best, 1], 3) == 0.563
    assert round(M.oracle(test.scores, test.costs)[0], 3) == 0.743


def test_dcrouter_joins_tasks_and_states_its_cost_assumption(dcrouter, data_dir):
    assert dcrouter.notes["unjoined_queries"] == 0
    assert None not in dcrouter.test.task_types and "gsm8k" in set(dcrouter.test.task_types)
    assert dcrouter.test.gold is not None and all(g is not None for g in dcrouter.test.gold)
    assert "MiniLM" in dcrouter.notes["tokenizer"]
    assert "Gemma" in dcrouter.cards()["gemma-2-9b-it"].description  # default_llm.json's feature text
    assert dcrouter.notes["output_tokens_assumed"] == dcrouter.output_tokens == 256
    # cost = (prompt tokens × input price + 256 × output price) / 1e6, with real token counts
    tokens = dcrouter.prompt_tokens("test")
    j = dcrouter.test.models.index("gemma-2-9b-it")
    p_in, p_out = dcrouter.prices["gemma-2-9b-it"]
    assert np.allclose(dcrouter.test.costs[:, j], (tokens * p_in + 256 * p_out) / 1e6)
    assert tokens.min() > 0 and len(set(tokens.tolist())) > 50
    short = load_dcrouter(data_dir / "llmrouter", output_tokens=0)
    assert np.allclose(short.test.costs[:, j], tokens * p_in / 1e6)


def test_routellm_mmlu_split_and_prices(mmlu, data_dir):
    assert mmlu.models == ["mistralai/Mixtral-8x7B-Instruct-v0.1", GPT4]
    assert len(mmlu.train) + len(mmlu.test) == 14042 and mmlu.dropped_rows == 0
    assert 0.25 < len(mmlu.test) / 14042 < 0.35
    assert not set(mmlu.train.queries) & set(mmlu.test.queries)  # duplicates stay on one side
    assert "seeded" in mmlu.notes["split"]
    ratio = mmlu.test.costs[:, 1] / mmlu.test.costs[:, 0]
    assert np.all(ratio > 30)  # GPT-4 at $10/$30 against Mixtral at $0.24 per M tokens
    # the parent folder works too; the same seed gives the same split; other prices, other costs
    again = load_routellm_mmlu(data_dir / "routellm", seed=0, prices={m: (1.0, 1.0) for m in mmlu.models})
    assert again.test.query_ids == mmlu.test.query_ids
    assert np.allclose(again.test.costs[:, 0], again.test.costs[:, 1])
    other = load_routellm_mmlu(data_dir / "routellm", seed=1)
    assert other.test.query_ids != mmlu.test.query_ids
    with pytest.raises(ConfigurationError, match="no price"):
        load_routellm_mmlu(data_dir / "routellm", prices={GPT4: (1.0, 1.0)})


def test_load_dataset_specs(data_dir):
    ds = load_dataset(f"routerbench:{data_dir / 'routerbench'}")
    assert ds.name == "routerbench" and len(ds.test) == 945
    with pytest.raises(UnknownNameError, match="routellm-mmlu"):
        load_dataset("nope:/tmp")
    with pytest.raises(ConfigurationError, match="takes no option"):
        load_dataset(f"routerbench:{data_dir / 'routerbench'}", output_tokens=5)


# -- bad input ---------------------------------------------------------------------------------------
def test_missing_paths_name_what_was_expected(tmp_path):
    with pytest.raises(DatasetError, match="does not exist.*RouterBench"):
        load_routerbench(tmp_path / "absent")
    with pytest.raises(DatasetError, match="_train.csv"):
        load_routerbench(tmp_path)
    with pytest.raises(DatasetError, match="dcrouter_preprocessed/train.json"):
        load_dcrouter(tmp_path)
    with pytest.raises(DatasetError, match="mmlu_<subject>.csv"):
        load_routellm_mmlu(tmp_path)


def test_a_path_built_from_an_unset_variable_says_so(monkeypatch):
    """`--dataset routerbench:$AGENTROUTE_DATA/routerbench` with the variable unset is `/routerbench`."""
    monkeypatch.delenv("AGENTROUTE_DATA", raising=False)
    with pytest.raises(DatasetError, match=r"/routerbench does not exist.*is \$AGENTROUTE_DATA unset\? a bare kind"):
        load_dataset("routerbench:/routerbench")


def test_empty_cells_are_dropped_and_counted(tmp_path, data_dir):
    pd = pytest.importorskip("pandas")
    src = pd.read_csv(data_dir / "routerbench" / "mbpp_train.csv").head(20)
    src.loc[3, GPT4] = None
    src.loc[5, "claude-v2|total_cost"] = None
    src.to_csv(tmp_path / "mini_train.csv", index=False)
    src.head(6).to_csv(tmp_path / "mini_test.csv", index=False)
    ds = load_routerbench(tmp_path)
    assert len(ds.train) == 18 and len(ds.test) == 4
    assert ds.dropped_rows == 4 and ds.notes["dropped_by_split"] == {"train": 2, "test": 2}
    assert set(ds.train.task_types) == {"mbpp"}


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_routerbench_single_file_is_split_with_a_seed(tmp_path, data_dir, suffix):
    pd = pytest.importorskip("pandas")
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    frame = pd.read_csv(data_dir / "routerbench" / "winograde_test.csv")
    path = tmp_path / f"routerbench_0shot{suffix}"
    frame.to_parquet(path) if suffix == ".parquet" else frame.to_csv(path, index=False)
    ds = load_routerbench(path, test_fraction=0.25, seed=3)
    assert len(ds.train) + len(ds.test) == len(frame) - ds.dropped_rows
    assert len(ds.test) == round(0.25 * (len(frame) - ds.dropped_rows))
    assert "seeded" in ds.notes["split"]


class _Payload:
    """Unpickling this creates a directory: the proof that a loader ran code from a file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.mkdir, (self.marker,))


def test_routerbench_pickle_is_refused_and_never_unpickled(tmp_path):
    import pickle

    marker = tmp_path / "PWNED"
    payload = pickle.dumps(_Payload(marker))
    for name in ("routerbench_0shot.pkl", "data.pickle", "looks_like.parquet", "looks_like.csv", "noext"):
        (tmp_path / name).write_bytes(payload)
    with pytest.raises(DatasetError, match=r"refusing to read a pickle.*to_parquet"):
        load_routerbench(tmp_path / "routerbench_0shot.pkl")
    with pytest.raises(DatasetError, match="refusing to read a pickle"):
        load_dataset(f"routerbench:{tmp_path / 'data.pickle'}")
    with pytest.raises(DatasetError, match="parquet"):
        load_routerbench(tmp_path / "looks_like.parquet")
    with pytest.raises(DatasetError, match="binary"):
        load_routerbench(tmp_path / "looks_like.csv")
    with pytest.raises(DatasetError, match="expected a .csv or .parquet"):
        load_routerbench(tmp_path / "noext")
    assert not marker.exists()
    pickle.loads(payload)  # the payload is live: loading it for real does create the marker
    assert marker.is_dir()


def test_binary_non_utf8_and_directory_inputs_are_clear_errors(tmp_path):
    (tmp_path / "bin_train.csv").write_bytes(b"\x00\x01\x02prompt,a\n")
    (tmp_path / "bin_test.csv").write_bytes("prompt,a\nr\xe9sum\xe9,1\n".encode("latin-1"))
    with pytest.raises(DatasetError, match="bin_train.csv: a binary file"):
        load_routerbench(tmp_path)
    (tmp_path / "bin_train.csv").write_bytes("prompt,a\nr\xe9sum\xe9,1\n".encode("latin-1"))
    with pytest.raises(DatasetError, match="bin_t.*not UTF-8"):
        load_routerbench(tmp_path)
    folder = tmp_path / "mmlu"
    (folder / "mmlu_x.csv").mkdir(parents=True)  # a directory with a file's name is skipped
    with pytest.raises(DatasetError, match="mmlu_<subject>.csv"):
        load_routellm_mmlu(folder)


def test_dcrouter_files_are_read_as_untrusted_text(tmp_path, data_dir):
    import shutil

    root = tmp_path / "llmrouter"
    shutil.copytree(data_dir / "llmrouter", root)
    jsonl = root / "example_data/query_data/default_query_test.jsonl"
    lines = jsonl.read_text().split("\n")
    row = json.loads(lines[0])
    row["note"] = "a line\u2028separator inside a string"
    lines[0] = json.dumps(row, ensure_ascii=False)
    jsonl.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode())  # a BOM and a raw U+2028
    ds = load_dcrouter(root)
    assert ds.notes["unjoined_queries"] == 0 and len(ds.test) == 500
    (root / "dcrouter_preprocessed/test.json").write_bytes(b"\x80\x04\x95garbage")
    with pytest.raises(DatasetError, match="test.json"):
        load_dcrouter(root)
    llm = root / "example_data/llm_candidates/default_llm.json"
    (root / "dcrouter_preprocessed/test.json").write_text("[]")
    text = llm.read_text()
    model = next(iter(json.loads(text)))
    data = json.loads(text)
    data[model]["input_price"] = float("nan")
    llm.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="input_price must be finite"):
        load_dcrouter(root)


# -- replay ------------------------------------------------------------------------------------------
def test_replay_pool_serves_the_split(routerbench):
    pool = routerbench.replay_pool("test")
    assert set(pool.ids) == set(routerbench.models)
    assert all(card.priced and card.backend == "replay" for card in pool)
    i, j = 7, routerbench.test.models.index(GPT4)
    qid = routerbench.test.query_ids[i]
    request = CompletionRequest(model=GPT4, messages=[{"role": "user", "content": "x"}], query_id=qid)
    completion = asyncio.run(pool.backend(GPT4).complete(request, pool.card(GPT4)))
    assert completion.score == routerbench.test.scores[i, j]
    assert completion.cost_usd == pytest.approx(routerbench.test.costs[i, j])
    assert completion.text == routerbench.test.responses[i][j]
    with pytest.raises(ConfigurationError):
        routerbench.replay_pool("validation")  # type: ignore[arg-type]

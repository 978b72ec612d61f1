import pytest

from agentroute import ConfigurationError, ModelPool, UnknownNameError


def write(tmp_path, text):
    path = tmp_path / "pool.yaml"
    path.write_text(text)
    return path


def test_default_pool_is_the_local_model_in_three_strategies():
    pool = ModelPool.default()
    assert pool.ids == ["smollm2-135m"]
    assert [a.strategy for a in pool.agents("executor")] == ["direct", "cot", "sc@3"]
    assert pool.card("smollm2-135m").priced


def test_malformed_yaml_names_line_and_field(tmp_path):
    path = write(tmp_path, "models:\n  - id: a\n    backend: openai\n    input_price: cheap\n    output_price: 1\n")
    with pytest.raises(ConfigurationError, match=r"line 4: model 'a' field 'input_price'"):
        ModelPool.from_yaml(path)


def test_unknown_field_and_backend_are_rejected_with_their_line(tmp_path):
    path = write(tmp_path, "models:\n  - id: a\n    backend: carrier-pigeon\n")
    with pytest.raises(ConfigurationError, match=r"line 3: .*'backend'"):
        ModelPool.from_yaml(path)
    path = write(tmp_path, "models:\n  - id: a\n    prize: 3\n")
    with pytest.raises(ConfigurationError, match=r"line 3: .*'prize'"):
        ModelPool.from_yaml(path)


def test_missing_models_list_and_duplicates(tmp_path):
    with pytest.raises(ConfigurationError, match="top-level 'models:'"):
        ModelPool.from_yaml(write(tmp_path, "cards: []\n"))
    with pytest.raises(ConfigurationError, match="appears twice"):
        ModelPool.from_yaml(write(tmp_path, "models:\n  - {id: a}\n  - {id: a}\n"))
    with pytest.raises(ConfigurationError, match="does not exist"):
        ModelPool.from_yaml(tmp_path / "nope.yaml")


def test_unknown_model_lists_known_ones():
    with pytest.raises(UnknownNameError, match="known: smollm2-135m"):
        ModelPool.default().card("gpt-9")

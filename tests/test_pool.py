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


# -- nonsense in cards is refused at load (issue 10) --------------------------------------------------
CARD = "models:\n  - id: a\n    backend: replay\n"


@pytest.mark.parametrize(
    "line, field, message",
    [
        ("    input_price: .inf", "input_price", "must be finite"),
        ("    input_price: -.inf", "input_price", "must be finite"),
        ("    input_price: .nan", "input_price", "must be finite"),
        ("    input_price: -1", "input_price", "must be non-negative"),
        ("    input_price: true", "input_price", "must be a number \\(got bool True\\)"),
        ("    output_price: 1e400", "output_price", "must be finite"),
        ("    price_per_second: no", "price_per_second", "must be a number \\(got bool False\\)"),
        ("    context_window: yes", "context_window", "must be a number"),
        ("    max_tokens: 0", "max_tokens", "must be positive"),
        ("    max_tokens: 2.5", "max_tokens", "must be a whole number"),
        ("    max_tokens: 9000", "max_tokens", "max_tokens \\(9000\\) is above context_window \\(8192\\)"),
        ("    timeout_s: 0", "timeout_s", "must be positive"),
        ("    latency_ms: .nan", "latency_ms", "must be finite"),
        ("    strategies: [direct, bogus]", "strategies", "unknown strategy 'bogus'"),
        ("    strategies: sc@0", "strategies", "unknown strategy 'sc@0'"),
        ("    strategies: [sc@-1]", "strategies", "unknown strategy 'sc@-1'"),
        ("    strategies: [sc@01]", "strategies", "unknown strategy 'sc@01'"),
        ("    strategies: [sc@100000]", "strategies", "1 ≤ K ≤ 64"),
        ("    strategies: []", "strategies", "non-empty list"),
        ("    strategies: [cot, cot]", "strategies", "'cot' is listed twice"),
        ("    strategies: [[direct]]", "strategies", "a strategy is a name"),
    ],
)
def test_nonsense_card_values_are_errors_naming_line_and_field(tmp_path, line, field, message):
    path = write(tmp_path, CARD + line + "\n")
    with pytest.raises(ConfigurationError, match=rf"pool.yaml line 4: model 'a' field '{field}': .*{message}"):
        ModelPool.from_yaml(path)


def test_duplicate_keys_and_ids_name_both_lines(tmp_path):
    with pytest.raises(ConfigurationError, match=r"line 5: duplicate key 'input_price' \(first at line 4\)"):
        ModelPool.from_yaml(write(tmp_path, "models:\n  - id: a\n    backend: replay\n    input_price: 1\n    input_price: 0\n"))
    with pytest.raises(ConfigurationError, match=r"line 4: model id 'a' appears twice \(first at line 2\)"):
        ModelPool.from_yaml(write(tmp_path, "models:\n  - id: a\n    backend: replay\n  - id: a\n    backend: replay\n"))


def test_cards_built_in_python_are_checked_the_same_way():
    from decimal import Decimal

    import numpy as np

    from agentroute.pool.card import CardError, ModelCard

    for bad in ({"input_price": float("nan")}, {"output_price": True}, {"input_price": "1"}, {"max_tokens": 10, "context_window": 5}):
        with pytest.raises(CardError, match=f"field '{next(iter(bad))}'"):
            ModelCard(id="m", backend="replay", **bad)
    card = ModelCard(id="m", backend="replay", input_price=Decimal("0.5"), output_price=np.float32(2), max_tokens=np.int64(8))
    assert (card.input_price, card.output_price, card.max_tokens) == (0.5, 2.0, 8)
    assert ModelCard(id="m", input_price=0, output_price=0).priced  # free is a price; 0 is allowed


@pytest.mark.parametrize("name", ["bogus", "sc@0", "sc@-1", "sc@", "SC@3", "sc@3 ", "", "sc@65"])
def test_unknown_strategies_are_configuration_errors(name):
    from agentroute.strategies import get_strategy

    with pytest.raises(ConfigurationError, match="unknown strategy"):
        get_strategy(name)
    with pytest.raises(ConfigurationError, match="a strategy is a name"):
        get_strategy(["sc@3"])  # type: ignore[arg-type]
    assert get_strategy("sc@64").samples == 64


def test_a_pool_may_add_backends_under_its_own_names(tmp_path):
    from agentroute.errors import UnknownNameError
    from agentroute.pool import ModelCard, ModelPool, ReplayBackend

    card = ModelCard(id="mine", backend="my-backend", input_price=0, output_price=0)
    backend = ReplayBackend([])
    assert ModelPool([card], backends={"my-backend": backend}).backend("mine") is backend
    with pytest.raises(UnknownNameError, match="unknown backend 'my-backend'; known: .*replay"):
        ModelPool([card])
    path = tmp_path / "pool.yaml"
    path.write_text("models:\n  - id: a\n    backend: nope\n    input_price: 1\n    output_price: 1\n")
    with pytest.raises(ConfigurationError, match=r"line 3: model 'a' field 'backend': unknown backend 'nope'"):
        ModelPool.from_yaml(path)

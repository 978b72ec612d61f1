"""No user path executes code or hangs (issue 10, requirement 8): pool files are untrusted input.

A pool YAML file either loads into a valid pool or raises :class:`ConfigurationError` naming the
file — never another exception, never a hang, never a huge message — whatever it holds: a
"billion laughs" alias bomb, deep nesting, object-building tags, binary bytes, a directory.
(Dataset files: see ``test_eval_datasets.py``; the pickle refusal is tested there.)
"""

from __future__ import annotations

import math
import threading
import time
import tracemalloc

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentroute._yaml import MAX_ALIAS_NODES
from agentroute._yaml import MAX_BYTES as MAX_POOL_BYTES
from agentroute.errors import ConfigurationError
from agentroute.pool import ModelCard, ModelPool

# A file the size of issue 10's 368-byte bomb: nine levels of nine aliases, 9⁹ ≈ 387 million strings once expanded.
BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
    "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
    "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n"
    "models: [{id: *i}]\n"
)


def write(tmp_path, text: str | bytes, name: str = "pool.yaml"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def load_within(path, seconds: float = 5.0):
    """``ModelPool.from_yaml(path)`` in a thread; fails the test if it has not returned in time."""
    outcome: dict = {}

    def target():
        try:
            outcome["pool"] = ModelPool.from_yaml(path)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"loading {path} did not finish within {seconds}s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["pool"]


# -- the alias bomb and its relatives ----------------------------------------------------------------
def test_the_368_byte_alias_bomb_is_refused_at_once(tmp_path):
    path = write(tmp_path, BOMB)
    assert path.stat().st_size <= 368
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(
        ConfigurationError, match=rf"line \d+: aliases expand to more than {MAX_ALIAS_NODES}"
    ) as info:
        load_within(path)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seconds < 2 and peak < 20 * 2**20
    assert len(str(info.value)) < 400 and "lol" not in str(info.value)


def test_anchors_for_shared_settings_still_work(tmp_path):
    path = write(
        tmp_path,
        "defaults: &d {backend: replay, input_price: 1e-3, output_price: 2, max_tokens: 64}\n"
        "models:\n"
        "  - {<<: *d, id: a}\n"
        "  - <<: *d\n"
        "    id: b\n"
        "    output_price: 3.5E+1\n",
    )
    pool = ModelPool.from_yaml(path)
    assert pool.ids == ["a", "b"]
    assert pool.card("a").input_price == 0.001 and pool.card("b").output_price == 35.0


@pytest.mark.parametrize(
    "text, message",
    [
        ("a: &a [*a]\nmodels: []\n", "line 1: alias \\*a refers to itself"),
        ("models: " + "[" * 10_000 + "]" * 10_000 + "\n", "line 1: nesting deeper than"),
        ("models: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n", "line 1: nesting deeper than"),
        (
            "models:\n  - !!python/object/apply:os.system ['touch pwned']\n",
            "line 2: invalid YAML: could not determine a constructor",
        ),
        ("models:\n  - !!python/name:os.system\n", "could not determine a constructor"),
        ("models: []\n---\nmodels: []\n", "line 2: invalid YAML"),
        ("models:\n  - id: a\n  - {id: b, id: c}\n", "line 3: duplicate key 'id' \\(first at line 3\\)"),
        ("models:\n  - id: a\nmodels:\n  - id: b\n", "line 3: duplicate key 'models' \\(first at line 1\\)"),
        ("models:\n  - ? [a, b]\n    : 1\n", "line 2: mapping keys must be plain names"),
        ("models:\n  - id: a\n    max_tokens: " + "9" * 5000 + "\n", "invalid YAML"),
        ("models:\n  - id: 2001-13-45\n", "invalid YAML: month must be in 1..12"),
        ("models:\n  - 1: a\n", "line 2: field names must be strings"),
        ("models: hello\n", "line 1: expected a top-level 'models:' list"),
        ("- id: a\n", "line 1: expected a top-level 'models:' list"),
        ("", "line 1: expected a top-level 'models:' list"),
        ("models:\n  - [a]\n", "line 2: each model must be a mapping"),
    ],
)
def test_hostile_yaml_is_a_configuration_error_with_its_line(tmp_path, text, message):
    with pytest.raises(ConfigurationError, match=message) as info:
        load_within(write(tmp_path, text))
    assert str(info.value).startswith(str(tmp_path)) and len(str(info.value)) < 600
    assert not (tmp_path / "pwned").exists()


def test_files_that_are_not_yaml_text_are_clear_errors(tmp_path):
    with pytest.raises(ConfigurationError, match="is binary"):
        ModelPool.from_yaml(write(tmp_path, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"))
    with pytest.raises(ConfigurationError, match=r"line 2: not UTF-8 text \(byte 0xe9"):
        ModelPool.from_yaml(write(tmp_path, "models:\n  - id: caf\xe9\n".encode("latin-1")))
    with pytest.raises(ConfigurationError, match="is a directory"):
        ModelPool.from_yaml(tmp_path)
    with pytest.raises(ConfigurationError, match="larger than"):
        ModelPool.from_yaml(write(tmp_path, "# " + "x" * MAX_POOL_BYTES + "\nmodels: []\n"))
    with pytest.raises(ConfigurationError, match="control characters|invalid YAML"):
        ModelPool.from_yaml(write(tmp_path, "models:\n  - id: a\x07b\n"))
    # a UTF-8 BOM is fine
    pool = ModelPool.from_yaml(write(tmp_path, "\ufeffmodels:\n  - {id: a, backend: replay}\n".encode()))
    assert pool.ids == ["a"]


# -- properties --------------------------------------------------------------------------------------
FIELDS = list(ModelCard.model_fields)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(
        [
            "direct",
            "cot",
            "sc@3",
            "sc@0",
            "sc@-1",
            "bogus",
            "replay",
            "openai",
            "local",
            "small",
            "large",
            "1e-3",
            ".inf",
            ".nan",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=10,
)
cards = st.dictionaries(st.sampled_from([*FIELDS, "prize", "strategy"]), values, max_size=8) | st.builds(
    dict,
    id=st.text(min_size=1, max_size=8),
    backend=st.sampled_from(["replay", "openai", "local", "litellm", "pigeon"]),
    input_price=scalars,
    output_price=scalars,
    max_tokens=st.integers(-5, 20_000),
    context_window=st.integers(-5, 20_000),
    strategies=st.lists(
        st.sampled_from(["direct", "cot", "sc@3", "sc@0", "sc@01", "sc@65", "bogus"]), max_size=3
    ),
)


def check_valid(pool: ModelPool) -> None:
    for card in pool:
        for price in (card.input_price, card.output_price, card.price_per_second):
            assert price is None or (math.isfinite(price) and price >= 0 and not isinstance(price, bool))
        assert 0 < card.max_tokens <= card.context_window and card.strategies
        assert len(set(card.strategies)) == len(card.strategies)
    assert len(set(pool.ids)) == len(pool)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(models=st.lists(cards, max_size=4), flow=st.booleans())
def test_any_card_mapping_loads_or_is_a_configuration_error(tmp_path, models, flow):
    text = yaml.safe_dump({"models": models}, default_flow_style=flow, allow_unicode=True)
    path = write(tmp_path, text)
    try:
        pool = load_within(path)
    except ConfigurationError as exc:
        assert str(exc).startswith(str(path)) and len(str(exc)) < 1000
    else:
        check_valid(pool)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_mangled_pool_text_loads_or_is_a_configuration_error(tmp_path, data):
    """Random edits of a valid pool file: insertions of YAML syntax, anchors and aliases, bytes."""
    text = (
        "defaults: &d {backend: replay, input_price: 1, output_price: 2}\n"
        "models:\n  - <<: *d\n    id: a\n    strategies: [direct, sc@3]\n  - {id: b, backend: replay}\n"
    )
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        piece = data.draw(
            st.sampled_from(
                [
                    "*d",
                    "&x ",
                    "*x",
                    "[",
                    "]",
                    "{",
                    "}",
                    ": ",
                    "\n  - ",
                    "!!str ",
                    "!!float ",
                    "<<: *d",
                    "- ",
                    "'",
                    '"',
                    "\t",
                    "#",
                    "\x00",
                    "\udc80",
                    "?",
                ]
            )
            | st.text(max_size=3)
        )
        text = text[:at] + piece + text[at:]
    path = write(tmp_path, text.encode("utf-8", "surrogateescape"))
    try:
        pool = load_within(path)
    except ConfigurationError as exc:
        assert len(str(exc)) < 1000
    else:
        check_valid(pool)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200))
def test_any_bytes_load_or_are_a_configuration_error(tmp_path, raw):
    path = write(tmp_path, raw)
    try:
        load_within(path)
    except ConfigurationError as exc:
        assert len(str(exc)) < 1000


# -- --dataset never unpickles (the CLI path of the pickle case of issue 10) ---------------------------
class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("command", [["eval"], ["eval", "--agentic"], ["train", "cheapest", "--out", "OUT"]])
def test_a_crafted_pickle_dataset_is_refused_by_every_command(tmp_path, command):
    import pickle

    from typer.testing import CliRunner

    from agentroute.cli import app

    marker = tmp_path / "PWNED"
    crafted = tmp_path / "routerbench_0shot.pkl"
    crafted.write_bytes(pickle.dumps(_Payload(marker)))
    args = [str(tmp_path / "out") if a == "OUT" else a for a in command]
    result = CliRunner().invoke(app, [*args, "--dataset", f"routerbench:{crafted}"])
    assert result.exit_code == 2, result.output
    assert "refusing to read a pickle" in " ".join(result.output.split())
    assert not marker.exists()


# -- graph files: the user's own Python, imported on purpose; anything else is a clear error ----------
@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x00\x01binary", "is binary; expected Python source"),
        (b"x = (\n", "line 1 failed to import: SyntaxError"),
        (b"import agentroute_no_such_module\n", "failed to import: ModuleNotFoundError"),
        (b"graph = 3\n", "'graph' is a int, not an AgentGraph"),
    ],
)
def test_a_bad_graph_file_is_a_configuration_error(tmp_path, content, message):
    from agentroute.loading import load_graph

    path = tmp_path / "g.py"
    path.write_bytes(content)
    with pytest.raises(ConfigurationError, match=message):
        load_graph(str(path))
    with pytest.raises(ConfigurationError, match="not a file"):
        load_graph(str(tmp_path))


def test_error_messages_echo_little_of_a_huge_file(tmp_path):
    huge = "x" * 100_000
    for text in (
        f"models:\n  - id: a\n    {huge}: 1\n",
        f"models:\n  - id: {huge}\n    input_price: .nan\n",
        f"models:\n  - id: a\n    strategies: [{huge}]\n",
        f"models:\n  - id: a\n    backend: {huge}\n",
        f"models:\n  - id: a\n  - id: a\n    {huge}: 1\n    {huge}: 2\n",
        f"models: [{huge}\n",
    ):
        with pytest.raises(ConfigurationError) as info:
            ModelPool.from_yaml(write(tmp_path, text))
        assert len(str(info.value)) < 600, str(info.value)[:200]

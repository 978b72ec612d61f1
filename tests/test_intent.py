"""Intent models: the protocol, persistence, and held-out accuracy on RouterBench task labels."""

from __future__ import annotations

import numpy as np
import pytest

from agentroute.errors import ConfigurationError, NotFittedError, UnknownNameError
from agentroute.intent import (
    EmbeddingIntentModel,
    IntentModel,
    PersistentIntentModel,
    SingleIntent,
    SmolLMIntentModel,
    intent_from_state,
    make_intent_model,
)

QUERIES = [
    "What is 12 plus 30?", "Compute 7 times 8.", "Is 91 a prime number?", "Solve for x: 2x + 3 = 11.",
    "Write a Python function that reverses a string.", "Fix the bug in this loop: for i in range(10) print(i)",
    "Implement binary search in Python.", "Write a function returning the n-th Fibonacci number.",
    "Who wrote Pride and Prejudice?", "Which river flows through Paris?", "What is the capital of Japan?",
    "When did the Berlin wall fall?",
]  # fmt: skip
LABELS = ["math"] * 4 + ["code"] * 4 + ["facts"] * 4


def test_models_satisfy_the_protocols():
    for model in (EmbeddingIntentModel(), SmolLMIntentModel(), SingleIntent()):
        assert isinstance(model, IntentModel)
        assert isinstance(model, PersistentIntentModel)
    with pytest.raises(UnknownNameError, match="embedding"):
        make_intent_model("nope")


def test_embedding_intent_fits_predicts_and_round_trips():
    model = EmbeddingIntentModel().fit(QUERIES, LABELS)
    assert model.labels == ["code", "facts", "math"]
    proba = model.predict_proba(["What is 3 plus 4?", "Write a Python class for a stack."])
    assert proba.shape == (2, 3) and np.allclose(proba.sum(axis=1), 1.0)
    assert model.predict(["What is 3 plus 4?", "Write a Python class for a stack."]) == ["math", "code"]
    again = intent_from_state({"kind": "embedding", **model.get_state()}, model.get_arrays())
    assert np.allclose(again.predict_proba(QUERIES), model.predict_proba(QUERIES))


def test_binary_and_single_label_cases():
    two = EmbeddingIntentModel().fit(QUERIES[:8], LABELS[:8])
    assert two.predict_proba(["Compute 3 times 9."]).shape == (1, 2)
    assert two.predict(["Compute 3 times 9."]) == ["math"]
    one = EmbeddingIntentModel().fit(QUERIES[:4], LABELS[:4])
    assert one.predict_proba(["anything"]).tolist() == [[1.0]]
    assert SingleIntent().fit([]).predict_proba(["a", "b"]).tolist() == [[1.0], [1.0]]


def test_errors():
    with pytest.raises(NotFittedError):
        EmbeddingIntentModel().predict_proba(["x"])
    with pytest.raises(ConfigurationError, match="2 queries but 1 labels"):
        EmbeddingIntentModel().fit(["a", "b"], ["x"])
    with pytest.raises(ConfigurationError, match="unknown intent model kind"):
        intent_from_state({"kind": "gpt-9"}, {})
    model = EmbeddingIntentModel().fit(QUERIES, LABELS)
    with pytest.raises(ConfigurationError, match="do not fit 3 labels"):
        intent_from_state(
            {"kind": "embedding", **model.get_state()}, {"coef": np.zeros((5, 384)), "intercept": np.zeros(5)}
        )


@pytest.fixture(scope="module")
def routerbench_folder(data_dir):
    """RouterBench read from its folder (the split it ships), not the session's ``routerbench``."""
    from agentroute.eval.datasets import load_dataset

    return load_dataset(f"routerbench:{data_dir / 'routerbench'}")


def test_embedding_intent_accuracy_on_routerbench_task_labels(routerbench_folder):
    train, test = routerbench_folder.train, routerbench_folder.test
    model = EmbeddingIntentModel().fit(train.queries, train.task_types)
    assert model.labels == ["arc-challenge", "mbpp", "winogrande"]
    assert model.score(test.queries, test.task_types) >= 0.97


@pytest.mark.slow
def test_smollm_intent_learns_routerbench_task_labels(routerbench_folder):
    """SmolLM2-135M with a trained head and top layer on 90 labelled queries, their first 16 tokens
    (test accuracy 1.0 as with 32, in a third of the time: the queries' median is 386 tokens)."""
    from agentroute.pool.backends.local import DEFAULT_GGUF, LocalModel

    shared = LocalModel.shared(DEFAULT_GGUF).model  # the local backend's model
    pristine = {k: v.clone() for k, v in shared.model.layers[-1].state_dict().items()}
    rng = np.random.default_rng(0)
    train, test = routerbench_folder.train, routerbench_folder.test
    tr, te = rng.choice(len(train), 90, replace=False), rng.choice(len(test), 60, replace=False)
    model = SmolLMIntentModel(train_layers=1, max_length=16, epochs=3, batch_size=16, lr=1e-4)
    model.fit([train.queries[i] for i in tr], [train.task_types[i] for i in tr])
    accuracy = model.score([test.queries[i] for i in te], [test.task_types[i] for i in te])
    assert accuracy >= 0.6  # three balanced-ish classes: chance is about 0.46 (the majority class)
    arrays = model.get_arrays()
    again = intent_from_state({"kind": "smollm", **model.get_state()}, arrays)
    queries = [test.queries[i] for i in te[:4]]
    assert np.allclose(again.predict_proba(queries), model.predict_proba(queries), atol=1e-5)
    # one SmolLM per process, shared with the local backend: the round trip loaded no second copy,
    assert again._model is model._model is shared
    # and each intent model trains its own copy of the top layer: the others are left as they were
    other = SmolLMIntentModel(train_layers=1, max_length=32, epochs=1, lr=1e-2, seed=1).fit(QUERIES[::3], LABELS[::3])
    for name, value in model.get_arrays().items():
        np.testing.assert_array_equal(value, arrays[name], err_msg=name)
    for name, value in shared.model.layers[-1].state_dict().items():
        assert value.equal(pristine[name]), name
        assert not np.array_equal(other.get_arrays()[f"top0.{name}"], pristine[name].numpy()), name

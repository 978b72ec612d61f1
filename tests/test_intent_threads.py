"""A saved SmolLM intent model, loaded, then asked by several threads at once (a server routing
concurrent requests through an ant-colony router): each gets the fine-tuned model's answer. Was: the
loaded state was applied by whichever thread came first while the others ran on, and they raced
to make the top layers' copies: a thread's prediction failed ('NoneType' object is not callable,
no head yet) or used the pretrained top layer, the fine-tuned one lost for good."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from agentroute.intent import SmolLMIntentModel, intent_from_state
from tests.test_intent import LABELS, QUERIES

THREADS = 6
LOADS = 5  # fresh loads: the race is at a loaded model's first predictions


@pytest.mark.slow
def test_a_loaded_smollm_intent_model_predicts_alike_from_threads_at_once() -> None:
    model = SmolLMIntentModel(train_layers=1, max_length=12, epochs=1, batch_size=12, lr=1e-3).fit(QUERIES, LABELS)
    asked = QUERIES[::6]
    expected = model.predict_proba(asked)
    state, arrays = {"kind": "smollm", **model.get_state()}, model.get_arrays()
    for _ in range(LOADS):
        loaded = intent_from_state(state, arrays)
        start = threading.Barrier(THREADS)

        def predict(loaded: SmolLMIntentModel = loaded, start: threading.Barrier = start) -> np.ndarray:
            start.wait(timeout=30)
            return loaded.predict_proba(asked)

        with ThreadPoolExecutor(THREADS) as pool:
            answers = [f.result(timeout=120) for f in [pool.submit(predict) for _ in range(THREADS)]]
        for answer in answers:
            np.testing.assert_allclose(answer, expected, atol=1e-5)

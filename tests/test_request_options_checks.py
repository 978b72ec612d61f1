"""``RequestOptions`` built in your own code is checked as ``agentroute serve`` checks a request
body: a seed past the signed 64-bit range, ``top_logprobs`` without ``logprobs`` or a non-bool
``logprobs`` reached the provider (a 400 there, after the budget reserved the call)."""

from __future__ import annotations

import numpy as np
import pytest

from agentroute.dispatch.options import SEED_MAX, RequestOptions
from agentroute.errors import ConfigurationError


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"seed": SEED_MAX + 1}, "seed"),
        ({"seed": -SEED_MAX - 2}, "seed"),
        ({"seed": True}, "seed"),
        ({"seed": "7"}, "seed"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logprobs": "yes"}, "logprobs"),
        ({"response_format": "json"}, "response_format"),
        ({"reasoning_effort": ""}, "reasoning_effort"),
    ],
)
def test_nonsense_is_refused_naming_the_field(fields, named):
    with pytest.raises(ConfigurationError, match=f"RequestOptions: '{named}' must be"):
        RequestOptions(**fields)


def test_what_openai_takes_is_taken():
    given = RequestOptions(seed=-SEED_MAX - 1, logprobs=True, top_logprobs=np.int64(5), response_format={"type": "json_object"},
                           reasoning_effort="low").given()  # fmt: skip
    assert given["seed"] == -SEED_MAX - 1 and given["top_logprobs"] == 5
    assert RequestOptions(logprobs=False, top_logprobs=0).given() == {"logprobs": False, "top_logprobs": 0}

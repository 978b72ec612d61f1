"""`run web --router` with a mistyped web preset: the error suggests and lists the web presets
(`always-skill` …), not only the registered routers (was: `unknown router 'always-skil' (did you
mean 'always-small'?)`, with `always-skill` missing from the list)."""

from __future__ import annotations

import pytest

from agentroute.errors import UnknownNameError
from agentroute.web import PRESETS, web_policy, web_pool


def test_a_mistyped_preset_suggests_it_and_every_preset_is_listed():
    with pytest.raises(UnknownNameError) as caught:
        web_policy("always-skil", web_pool())
    message = str(caught.value)
    assert message.startswith("unknown router 'always-skil' (did you mean 'always-skill'?); known: "), message
    assert set(PRESETS) <= set(caught.value.known) and "knn" in caught.value.known

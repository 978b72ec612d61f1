import pytest

from agentroute.testing import missing_from_kit, router_checks


@pytest.mark.parametrize(("name", "check"), list(router_checks()), ids=lambda x: getattr(x, "__name__", x))
def test_router_conformance(name, check):
    check(name)


def test_every_registered_router_is_in_the_kit():
    assert missing_from_kit() == []

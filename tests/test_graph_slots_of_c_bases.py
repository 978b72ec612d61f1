"""The fast dict channels are made on every Python agentroute supports.

From Python 3.12 ``typing.Generic`` is written in C: it declares no ``__slots__`` and gives its
subclasses' instances no ``__dict__``. ``_slots_of`` read a missing ``__slots__`` as "instances have
a ``__dict__``", so on 3.12 LangGraph's ``BinaryOperatorAggregate`` was judged unknown and every
state channel stayed the slow class (test_graph_hot_path failed there). The rule is now read from
the class itself; a C base stands in for 3.12's ``Generic`` on this interpreter.
"""

from __future__ import annotations

from agentroute.graph import _fresh_dict_aggregate, _slots_of


class _OverCBase(list):  # list: a C type declaring no __slots__, whose subclasses hold no __dict__
    __slots__ = ("a", "b")


class _WithDict:
    pass


class _SlotsOverDict(_WithDict):
    __slots__ = ("a",)


def test_a_c_base_without_slots_adds_none() -> None:
    assert _slots_of(_OverCBase) == {"a", "b"}


def test_a_base_with_a_dict_is_not_read_as_slots() -> None:
    assert _slots_of(_WithDict) is None
    assert _slots_of(_SlotsOverDict) is None


def test_langgraphs_aggregate_gets_its_fast_class() -> None:
    assert _fresh_dict_aggregate() is not None

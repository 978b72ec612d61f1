"""The action grammar of the web agent: what a model may answer, and how it is checked.

One action per step, written on one line::

    click(ID)            click element ID
    type(ID, "text")     click element ID, then type the text (backslash escapes \\" and \\\\)
    key(KEY)             press a key: Enter, Tab, Backspace, ArrowDown … (see ``KEYS``)
    done()               declare the task finished (nothing is sent to the browser)

The parser is strict: the first non-empty line after the last ``Answer:``/``Action:`` marker (``Answer is:`` too) (or of
the whole text when there is none) must be exactly one action; surrounding backticks and a final
full stop are tolerated, nothing else. A legal action also names an element that is on the page
(and, for ``type``, one that takes text). Anything else raises :class:`ActionError`, which the web
agent turns into a failed, audited step.

>>> parse_action('Answer: click(12)')
Action(kind='click', ref=12, text='', key='')
>>> str(parse_action('type(4, "Kasie \\\\"K\\\\"")'))
'type(4, "Kasie \\\\"K\\\\"")'
>>> parse_action("I would click the OK button")
Traceback (most recent call last):
...
agentroute.web.actions.ActionError: unparsable action: 'I would click the OK button'
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from agentroute.errors import AgentrouteError

ActionKind = Literal["click", "type", "key", "done"]

#: Keys ``key(...)`` accepts, by MiniWoB's names (a subset of its allowed keys).
KEYS: tuple[str, ...] = (
    "Enter",
    "Tab",
    "Backspace",
    "Delete",
    "Space",
    "PageUp",
    "PageDown",
    "ArrowUp",
    "ArrowDown",
    "ArrowLeft",
    "ArrowRight",
)
_KEY_LOOKUP = {k.lower(): k for k in KEYS}

_MARKER = re.compile(r"(?:answer|action)(?:\s+is)?\s*[:：]", re.IGNORECASE)
_ACTION = re.compile(
    r"""(?ix)
    (?: click \( \s* (?P<click>-?\d+) \s* \)
      | type  \( \s* (?P<tref>-?\d+) \s* , \s* "(?P<text>(?:[^"\\]|\\.)*)" \s* \)
      | key   \( \s* <? (?P<key>[A-Za-z]+) >? \s* \)
      | (?P<done> done \( \s* \) )
    )""",
)


class ActionError(AgentrouteError):
    """A model's answer is not one legal action. ``kind`` is ``unparsable`` or ``illegal``."""

    def __init__(self, kind: Literal["unparsable", "illegal"], detail: str):
        self.kind, self.detail = kind, detail
        super().__init__(f"{kind} action: {detail}")


@dataclass(frozen=True, slots=True)
class Action:
    """One browser action (``ref`` is MiniWoB's element ref; 0 when unused)."""

    kind: ActionKind
    ref: int = 0
    text: str = ""
    key: str = ""

    def __str__(self) -> str:
        if self.kind == "click":
            return f"click({self.ref})"
        if self.kind == "type":
            escaped = self.text.replace("\\", "\\\\").replace('"', '\\"')
            return f'type({self.ref}, "{escaped}")'
        if self.kind == "key":
            return f"key({self.key})"
        return "done()"


def _candidate(text: str) -> str:
    """The line that must hold the action: after the last marker, first non-empty line."""
    found = list(_MARKER.finditer(text))
    tail = text[found[-1].end() :] if found else text
    for line in tail.splitlines():
        line = line.strip()
        line = (line[:-1] if line.endswith(".") else line).strip().strip("`").strip()
        if line:
            return line
    return ""


def parse_action(text: str) -> Action:
    """The one action in a model's answer; :class:`ActionError` (``unparsable``) otherwise.

    >>> parse_action("Thinking... the button says Ok.\\nAnswer: `click(6)`.")
    Action(kind='click', ref=6, text='', key='')
    >>> parse_action("key(<Enter>)").key
    'Enter'
    """
    line = _candidate(text)
    match = _ACTION.fullmatch(line)
    if match is None:
        shown = line if line else text.strip()
        raise ActionError("unparsable", repr(shown[:120]))
    if match["click"] is not None:
        return Action("click", ref=int(match["click"]))
    if match["tref"] is not None:
        body = re.sub(r"\\(.)", r"\1", match["text"])
        return Action("type", ref=int(match["tref"]), text=body)
    if match["key"] is not None:
        key = _KEY_LOOKUP.get(match["key"].lower())
        if key is None:
            raise ActionError("illegal", f"unknown key {match['key']!r}; keys: {', '.join(KEYS)}")
        return Action("key", key=key)
    return Action("done")


def check_action(action: Action, refs: Collection[int], typeable: Collection[int] = ()) -> Action:
    """``action`` when it is legal on a page with element ``refs``; :class:`ActionError` otherwise.

    >>> check_action(Action("click", ref=9), refs={1, 2})
    Traceback (most recent call last):
    ...
    agentroute.web.actions.ActionError: illegal action: element 9 is not on the page
    """
    if action.kind in ("click", "type") and action.ref not in refs:
        raise ActionError("illegal", f"element {action.ref} is not on the page")
    if action.kind == "type" and action.ref not in typeable:
        raise ActionError("illegal", f"element {action.ref} does not take text")
    if action.kind == "type" and not action.text:
        raise ActionError("illegal", "type() needs a non-empty text")
    return action

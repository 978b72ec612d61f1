"""A MiniWoB page as a compact text a model can read, and as elements a policy can use.

MiniWoB observes the page as a flat list of DOM elements (``observation["dom_elements"]``): each
with a ``ref`` (positive for elements, negative for text pseudo-elements of tag ``t``), its
``parent`` ref, tag (``input_text`` for an ``<input type=text>``), text, value, HTML id, classes and
flags (focused, tampered, targeted, is_leaf). :func:`page_from_observation` keeps the elements an
agent can act on or read; :func:`render` writes one line per element::

    [7] input_text "Username"
    [11] button "Login"

(an input shows its label as its text, and its value once it has one). Element ids, classes and
flags stay in :class:`Element` for the DOM skill; the model's line is kept short because every
prompt token of a CPU model is paid for in prefill time.

The rendering is deterministic, so its digest (:attr:`Page.digest`) names an observation in the
memory and lets the free DOM skill find the structured page again from the step's input alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Tags whose elements take typed text.
TYPEABLE = frozenset(
    {
        "input_text",
        "input_password",
        "input_email",
        "input_number",
        "input_search",
        "input_tel",
        "input_url",
        "textarea",
    }
)
#: Tags kept on the page even without text: the things one clicks.
INTERACTIVE = frozenset({"button", "a", "select", "option", "textarea", "label", "li", "span", "h3"})

MAX_TEXT = 60


@dataclass(frozen=True, slots=True)
class Element:
    """One element of the page, reduced to what acting on it needs."""

    ref: int
    parent: int
    tag: str
    text: str = ""
    value: str = ""
    html_id: str = ""
    classes: str = ""
    label: str = ""
    focused: bool = False
    tampered: bool = False

    @property
    def typeable(self) -> bool:
        return self.tag in TYPEABLE

    @property
    def clickable(self) -> bool:
        return True  # MiniWoB clicks any element by ref

    def line(self) -> str:
        """``[ref] tag "text"``: an input shows its label as its text, then its value when it has one."""
        parts = [f"[{self.ref}] {self.tag}"]
        shown = self.text or self.label
        if shown:
            parts.append(_quote(shown))
        if self.typeable and self.value:
            parts.append(f"value={_quote(self.value)}")
        return " ".join(parts)


@dataclass(frozen=True)
class Page:
    """The task's utterance, MiniWoB's fields parsed from it, and the page's elements."""

    utterance: str
    elements: tuple[Element, ...]
    fields: tuple[tuple[str, str], ...] = ()
    history: tuple[str, ...] = field(default=())

    @property
    def refs(self) -> frozenset[int]:
        return frozenset(e.ref for e in self.elements)

    @property
    def typeable_refs(self) -> frozenset[int]:
        return frozenset(e.ref for e in self.elements if e.typeable)

    def element(self, ref: int) -> Element | None:
        return next((e for e in self.elements if e.ref == ref), None)

    def with_history(self, history: Iterable[str]) -> Page:
        return Page(self.utterance, self.elements, self.fields, tuple(history))

    @property
    def digest(self) -> str:
        """12 hex digits of SHA-1 over the rendering (without the digest line)."""
        return hashlib.sha1(_body(self).encode()).hexdigest()[:12]


def _quote(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > MAX_TEXT:
        text = text[: MAX_TEXT - 1] + "…"
    return '"' + text.replace('"', "'") + '"'


def _scalar(value: Any) -> Any:
    """MiniWoB gives numbers as one-element arrays."""
    try:
        return value.item() if hasattr(value, "item") else value[0] if isinstance(value, Sequence) else value
    except (IndexError, TypeError, ValueError):
        return value


def page_from_observation(obs: Mapping[str, Any], *, max_elements: int = 80) -> Page:
    """The :class:`Page` of a MiniWoB observation (``utterance``, ``dom_elements``, ``fields``)."""
    raw = list(obs.get("dom_elements") or ())
    texts: dict[int, list[str]] = {}  # element ref → texts of its text pseudo-children
    for e in raw:
        if int(e["ref"]) < 0 and str(e.get("text") or "").strip():
            texts.setdefault(int(e["parent"]), []).append(str(e["text"]).strip())
    by_ref = {int(e["ref"]): e for e in raw if int(e["ref"]) > 0}
    children: dict[int, list[int]] = {}
    for ref, e in by_ref.items():
        children.setdefault(int(e["parent"]), []).append(ref)
    elements = []
    for ref, e in by_ref.items():
        tag = str(e["tag"]).lower()
        text = str(e.get("text") or "").strip() or " ".join(texts.get(ref, []))
        flags = [int(_scalar(f)) for f in e.get("flags", (0, 0, 0, 0))]
        label = ""
        parent = int(e["parent"])
        if tag.startswith("input") or tag == "textarea":
            label = " ".join(texts.get(parent, []))
            if not label:  # a <label> sibling just before the input
                siblings = children.get(parent, [])
                before = [r for r in siblings if r < ref and str(by_ref[r]["tag"]).lower() == "label"]
                if before:
                    label = str(by_ref[before[-1]].get("text") or "").strip()
        keep = bool(text) or tag in INTERACTIVE or tag.startswith("input")
        if tag in ("label", "span", "li", "h3") and not text:
            keep = False
        if tag == "label" and any(
            str(by_ref[c]["tag"]).lower().startswith("input") for c in children.get(ref, [])
        ):
            keep = False  # its text is the input's label
        if not keep:
            continue
        elements.append(
            Element(
                ref=ref,
                parent=parent,
                tag=tag,
                text=text if not tag.startswith("input") else "",
                value=str(e.get("value") or "") if tag in TYPEABLE else "",
                html_id=str(e.get("id") or ""),
                classes=str(e.get("classes") or ""),
                label=label,
                focused=bool(flags[0]) if flags else False,
                tampered=bool(flags[1]) if len(flags) > 1 else False,
            )
        )
    fields = tuple((str(k), str(v)) for k, v in (obs.get("fields") or ()))
    return Page(str(obs.get("utterance") or ""), tuple(elements[:max_elements]), fields)


def _body(page: Page) -> str:
    lines = [f"Task: {page.utterance}"]
    lines += [e.line() for e in page.elements] or ["(no elements)"]
    lines.append("Done: " + ("; ".join(page.history) if page.history else "none"))
    return "\n".join(lines)


def render(page: Page) -> str:
    """The step input a model reads: the digest, the task, one line per element, the actions done.

    The digest comes first: last, right before the answer, a small model copies it as an id.

    >>> p = Page("Click the button.", (Element(4, 3, "button", "Click Me!", html_id="subbtn"),))
    >>> print(render(p))  # doctest: +ELLIPSIS
    Observation: ...
    Task: Click the button.
    [4] button "Click Me!"
    Done: none
    """
    return f"Observation: {page.digest}\n{_body(page)}"


def digest_of(rendered: str) -> str | None:
    """The digest on the first line of a :func:`render` output (a prompt may precede it), or None."""
    for line in rendered.strip().splitlines()[:3]:
        if line.startswith("Observation: "):
            return line.removeprefix("Observation: ").strip()
    return None

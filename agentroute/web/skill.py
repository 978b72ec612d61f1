"""The DOM skill: a deterministic, free web policy, registered as a skill and served as a $0 agent.

The policy reads the task's utterance (and MiniWoB's fields parsed from it), then acts like a
careful script would: type each quoted or named value into the matching text field, click the
element whose text (or label, or widget type) matches the target words, one at a time, and
finally press the submit-like button the utterance names. It never repeats an action it already
took in the episode. When it finds nothing sensible to do it says so (its postcondition fails),
so a cascade can hand the step to a model.

Why a backend: the dispatcher routes among *agents* (role, model card, strategy) and calls them
through :class:`~agentroute.pool.backends.base.Backend`. Serving the skill through a tiny
in-process backend with a $0 card makes it one more routable agent: the router sees it next to
SmolLM2 with its true (zero) cost, the ledger counts its calls, the memory records its steps and
a fallback escalates from it like from any model. The backend finds the structured page of a
step by the observation digest on the first line of the step's input (see
:func:`agentroute.web.dom.render`), then runs the skill through the :class:`SkillRegistry`, which
checks its preconditions (a page with a task) and postconditions (an action was found and is
legal on the page).
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from typing import Any

from agentroute.dispatch.skills import Condition, Context, SkillBlocked, SkillRegistry
from agentroute.errors import BackendError
from agentroute.pool.backends.base import Backend
from agentroute.pool.card import ModelCard
from agentroute.types import Completion, CompletionRequest
from agentroute.web.actions import Action, ActionError, check_action
from agentroute.web.dom import Element, Page, digest_of

SKILL_ID = "web.dom"
SKILL_MODEL = "dom-skill"
SKILL_BACKEND = "skill"
STAGE = "act"

_QUOTED = re.compile(r'"([^"]+)"')
_SUBMIT_WORDS = ("submit", "login", "log in", "ok", "search", "next", "done", "send")
_WIDGET_TAGS = {
    "radio": ("input_radio",),
    "checkbox": ("input_checkbox",),
    "text": ("input_text",),
    "textarea": ("textarea",),
    "button": ("button",),
    "link": ("a", "span"),
}
_SYNONYMS = {"x": ("close", "×", "x"), "close": ("close", "×", "x")}


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def _typed(history: tuple[str, ...], ref: int) -> bool:
    return any(h.startswith(f"type({ref},") for h in history)


def _clicked(history: tuple[str, ...], ref: int) -> bool:
    return f"click({ref})" in history


def _values_to_type(page: Page) -> list[tuple[str, str]]:
    """(key, value) pairs to type, from MiniWoB's fields or the quoted strings."""
    utterance = page.utterance.casefold()
    if not re.search(r"\b(enter|type|fill|write|input)\b", utterance):
        return []
    fields = dict(page.fields)
    case = fields.pop("case", None)
    pairs = [(k, v) for k, v in page.fields if k not in ("case", "button") and not k.startswith("target ")]
    if not pairs:
        pairs = [("text", q) for q in _QUOTED.findall(page.utterance)]
    if case == "upper":
        pairs = [(k, v.upper()) for k, v in pairs]
    elif case == "lower":
        pairs = [(k, v.lower()) for k, v in pairs]
    return pairs


def _assign(inputs: list[Element], pairs: list[tuple[str, str]]) -> list[tuple[Element, str]]:
    """Which value goes in which field: by key in the field's id or label, else in order."""
    if len(pairs) == 1:
        return [(e, pairs[0][1]) for e in inputs]
    out, free = [], list(pairs)
    for e in inputs:
        name = _norm(f"{e.html_id} {e.label}")
        match = next((p for p in free if _norm(p[0]) in name), None)
        if match is None and free:
            match = free[0]
        if match is not None:
            free.remove(match)
            out.append((e, match[1]))
    return out


def _targets(page: Page) -> list[str]:
    """What the utterance asks to click, in order."""
    targets = [v for k, v in page.fields if k == "target" or k.startswith("target ")]
    if not targets:
        targets = _QUOTED.findall(page.utterance)
    if not targets:
        targets = re.findall(r"\b(?:button|tab|link)\s+#?([A-Za-z0-9]+)", page.utterance)
    return targets


def _find(page: Page, target: str) -> list[Element]:
    """Elements matching ``target``: exact text/label first, then widget type, then word match."""
    want = _norm(target)
    names = _SYNONYMS.get(want, (want,))
    exact = [e for e in page.elements if _norm(e.text) in names or (e.label and _norm(e.label) in names)]
    if exact:
        return exact
    if want in _WIDGET_TAGS:
        return [e for e in page.elements if e.tag in _WIDGET_TAGS[want]]
    word = re.compile(rf"(^|[\s#]){re.escape(want)}($|[\s.,!?])")
    return [e for e in page.elements if word.search(_norm(e.text)) and len(e.text) <= 40]


def _submit(page: Page) -> Element | None:
    """The submit-like button the utterance names (or the only button), if not yet clicked."""
    utterance = _norm(page.utterance)
    buttons = [e for e in page.elements if e.tag in ("button", "input_submit", "input_button")]
    named = [b for b in buttons if _norm(b.text) and _norm(b.text) in utterance]
    pool = named or [b for b in buttons if _norm(b.text) in _SUBMIT_WORDS]
    for b in pool:
        if not _clicked(page.history, b.ref):
            return b
    return None


def dom_policy(page: Page) -> Action | None:
    """The next action for ``page`` (with its episode history), or None when at a loss.

    >>> from agentroute.web.dom import Element, Page
    >>> p = Page('Enter "Myron" into the text field and press Submit.',
    ...          (Element(5, 4, "input_text"), Element(6, 4, "button", "Submit")))
    >>> str(dom_policy(p))
    'type(5, "Myron")'
    >>> str(dom_policy(p.with_history(['type(5, "Myron")'])))
    'click(6)'
    """
    history = page.history
    utterance = _norm(page.utterance)
    # 1. type the values the task names into their fields
    pairs = _values_to_type(page)
    inputs = [e for e in page.elements if e.typeable]
    if pairs and inputs:
        for element, value in _assign(inputs, pairs):
            if element.value != value and not _typed(history, element.ref):
                return Action("type", ref=element.ref, text=value)
        button = _submit(page)
        return Action("click", ref=button.ref) if button else None
    # 2. focus tasks
    if re.search(r"\bfocus\b", utterance) and inputs:
        for e in inputs:
            if not _clicked(history, e.ref):
                return Action("click", ref=e.ref)
        return None
    # 3. click each target once, in order
    for target in _targets(page):
        found = _find(page, target)
        if not found:
            continue
        if any(_clicked(history, e.ref) for e in found):
            continue
        return Action("click", ref=found[0].ref)
    # 4. expand sections ("Expand the section below …")
    if "expand" in utterance:
        for e in page.elements:
            if "header" in e.classes and not _clicked(history, e.ref):
                return Action("click", ref=e.ref)
    # 5. the submit-like button, or the only button for "click the button"
    button = _submit(page)
    if button is not None and (re.search(r"\b(submit|press|login|click)\b", utterance)):
        return Action("click", ref=button.ref)
    buttons = [e for e in page.elements if e.tag == "button"]
    if len(buttons) == 1 and "button" in utterance and not _clicked(history, buttons[0].ref):
        return Action("click", ref=buttons[0].ref)
    return None


def _act(context: Context) -> Action | None:
    action = dom_policy(context["page"])
    context["action"] = action
    return action


def _legal(context: Context) -> bool:
    action, page = context.get("action"), context["page"]
    if action is None:
        return False
    try:
        check_action(action, page.refs, page.typeable_refs)
    except ActionError:
        return False
    return True


def register_dom_skill(registry: SkillRegistry) -> None:
    """Register the DOM policy as skill ``web.dom`` (stage ``act``) with its pre/postconditions."""
    registry.register(
        SKILL_ID,
        _act,
        stages=[STAGE],
        preconditions=[
            Condition("page has a task", lambda ctx: bool(ctx["page"].utterance)),
            Condition("page has elements", lambda ctx: bool(ctx["page"].elements)),
        ],
        postconditions=[
            Condition("an action was found", lambda ctx: ctx.get("action") is not None),
            Condition("the action is legal on the page", _legal),
        ],
        description="deterministic MiniWoB policy: type the named values, click the named targets, submit",
    )


def skill_card() -> ModelCard:
    """The $0 card of the DOM skill (backend ``skill``, served by :class:`DomSkillBackend`, which the
    web agent registers in its pool with ``ModelPool(cards, backends={"skill": ...})``)."""
    return ModelCard(
        id=SKILL_MODEL,
        backend=SKILL_BACKEND,
        model=SKILL_MODEL,
        input_price=0.0,
        output_price=0.0,
        context_window=1_000_000,
        tier="small",
        latency_ms=1.0,
        strategies=["direct"],
        max_tokens=64,
        timeout_s=10.0,
        description="deterministic DOM skill: free, exact on simple forms and clicks, at a loss elsewhere",
    )


class DomSkillBackend(Backend):
    """Serves the DOM skill as a $0 agent: the page comes from the digest in the step's input."""

    name = SKILL_BACKEND
    blocks = False

    def __init__(self, registry: SkillRegistry | None = None, *, max_pages: int = 4096):
        if registry is None:
            registry = SkillRegistry()
        if SKILL_ID not in registry.skills:
            register_dom_skill(registry)
        self.registry = registry
        self.max_pages = max_pages
        self._pages: OrderedDict[str, Page] = OrderedDict()

    def remember(self, page: Page) -> str:
        """Keep ``page`` for the step whose input carries its digest; returns the digest."""
        digest = page.digest
        self._pages[digest] = page
        self._pages.move_to_end(digest)
        while len(self._pages) > self.max_pages:
            self._pages.popitem(last=False)
        return digest

    def count_tokens(self, text: str, card: ModelCard) -> int:
        return 0 if card.backend == SKILL_BACKEND else super().count_tokens(text, card)

    def worst_case_usd(
        self, request: CompletionRequest, card: ModelCard, prompt_tokens: int | None = None
    ) -> float:
        return 0.0

    async def complete(self, request: CompletionRequest, card: ModelCard) -> Completion:
        started = time.perf_counter()
        content = request.messages[-1].get("content", "") if request.messages else ""
        digest = digest_of(content)
        page = self._pages.get(digest or "")
        if page is None:
            raise BackendError(card.id, f"no page known for observation {digest!r}", retryable=False)
        context: dict[str, Any] = {"page": page}
        try:
            action = await self.registry.invoke(SKILL_ID, context, stage=STAGE)
        except SkillBlocked as exc:
            raise BackendError(card.id, str(exc), retryable=False) from exc
        return Completion(
            model=card.id,
            text=str(action),
            tokens_in=0,
            tokens_out=0,
            cost_usd=0.0,
            latency_ms=(time.perf_counter() - started) * 1000,
            raw={"confidence": 1.0},
        )

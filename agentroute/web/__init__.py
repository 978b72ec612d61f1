"""The web-agent pipeline on MiniWoB++: every browser action routed between a free DOM skill and models.

Importing this package is light; the browser (``miniwob``, ``selenium``: the ``web`` extra, plus
Debian's ``chromium`` and ``chromium-driver``) loads when an episode starts.
"""

from agentroute.web.actions import KEYS, Action, ActionError, check_action, parse_action
from agentroute.web.agent import (
    PROMPT,
    EpisodeResult,
    ExecuteAction,
    WebAgent,
    build_web_graph,
    reward_score,
    web_pool,
)
from agentroute.web.dom import Element, Page, page_from_observation, render
from agentroute.web.env import (
    BrowserCrashedError,
    BrowserNotFoundError,
    MiniWoBSession,
    UnknownTaskError,
    available_tasks,
    check_tasks,
    find_chromium,
)
from agentroute.web.routers import PRESETS, WebPolicy, web_policy
from agentroute.web.skill import SKILL_MODEL, DomSkillBackend, dom_policy, register_dom_skill, skill_card

__all__ = [
    "KEYS",
    "PRESETS",
    "PROMPT",
    "SKILL_MODEL",
    "Action",
    "ActionError",
    "BrowserCrashedError",
    "BrowserNotFoundError",
    "DomSkillBackend",
    "Element",
    "EpisodeResult",
    "ExecuteAction",
    "MiniWoBSession",
    "Page",
    "UnknownTaskError",
    "WebAgent",
    "WebPolicy",
    "available_tasks",
    "build_web_graph",
    "check_action",
    "check_tasks",
    "dom_policy",
    "find_chromium",
    "page_from_observation",
    "parse_action",
    "register_dom_skill",
    "render",
    "reward_score",
    "skill_card",
    "web_policy",
    "web_pool",
]

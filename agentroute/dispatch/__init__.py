"""State-constrained dispatch: the stage machine, skills and the dispatcher."""

from agentroute.dispatch.dispatcher import Dispatcher, TaskRun
from agentroute.dispatch.options import RequestOptions
from agentroute.dispatch.skills import Condition, Skill, SkillBlocked, SkillRegistry, condition, has_key
from agentroute.dispatch.stages import StageMachine

__all__ = [
    "Condition",
    "Dispatcher",
    "RequestOptions",
    "Skill",
    "SkillBlocked",
    "SkillRegistry",
    "StageMachine",
    "TaskRun",
    "condition",
    "has_key",
]

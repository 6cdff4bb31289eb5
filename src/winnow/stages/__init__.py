"""Stages: the kinds, the registry, and the built-in stages (importing them registers them)."""

from winnow.stages.balance import Balance
from winnow.stages.base import (
    Combined,
    Filter,
    GlobalStage,
    Mapper,
    Outcome,
    Rescan,
    RowStage,
    Stage,
    Verdict,
    from_config,
    register,
    registry,
    stage_class,
)
from winnow.stages.decontaminate import Decontaminate
from winnow.stages.dedup import ExactDedup, MinHashDedup
from winnow.stages.filters import ExpressionFilter, LengthFilter, RegexFilter
from winnow.stages.language import LanguageFilter
from winnow.stages.pii import PiiFilter
from winnow.stages.quality import QualityFilter
from winnow.stages.refusal import RefusalFilter
from winnow.stages.tasks import TaskTypeTagger
from winnow.stages.template import ChatTemplateRenderer, InstructionRephraser

__all__ = [
    "Balance",
    "ChatTemplateRenderer",
    "Combined",
    "Decontaminate",
    "ExactDedup",
    "ExpressionFilter",
    "Filter",
    "GlobalStage",
    "InstructionRephraser",
    "LanguageFilter",
    "LengthFilter",
    "Mapper",
    "MinHashDedup",
    "Outcome",
    "PiiFilter",
    "QualityFilter",
    "RefusalFilter",
    "RegexFilter",
    "Rescan",
    "RowStage",
    "Stage",
    "TaskTypeTagger",
    "Verdict",
    "from_config",
    "register",
    "registry",
    "stage_class",
]

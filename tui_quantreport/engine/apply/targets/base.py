"""A deployment target as the apply layer uses it: its facts (``core/targets.py``: which library,
on what, which schemes on which modules, the activation recipe) plus how it exports and applies
a plan.

A :class:`Target` adds to its :class:`~tui_quantreport.engine.core.targets.TargetFacts` its
exporter and its applier (``export(subject)`` -> the files, ``applier(export, subject,
probe_count)`` -> ``(apply(model), library, inspect)`` for ``verify``), named as
"module:function" and imported when asked: the registry stays torch-free, so the command
line's parser and the app's dialogs read it before torch is loaded.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tui_quantreport.engine.core.targets import (
    CONV1D,
    CONV2D,
    CONV3D,
    EMBEDDING,
    HF_CONV1D,
    LINEAR,
    MHA_OUT_PROJ,
    TargetFacts,
    module_class,
)


@dataclass(frozen=True)
class Target(TargetFacts):
    """One deployment target: its facts, its exporter and its applier (see the module docstring)."""

    #: "module:function" of ``export(target, subject) -> Export``.
    exporter: str = ""
    #: "module:function" of ``applier(target, export, subject, probe_count)``.
    applier_path: str = ""

    @classmethod
    def of(cls, facts: TargetFacts, exporter: str, applier_path: str) -> Target:
        """The target with ``facts`` that exports and applies through these functions."""
        known = {f.name: getattr(facts, f.name) for f in dataclasses.fields(TargetFacts)}
        return cls(**known, exporter=exporter, applier_path=applier_path)

    def export(self, subject: Any) -> Any:
        """The target's files for the subject's plan (nothing written)."""
        return _resolve(self.exporter)(self, subject)

    def applier(self, export: Any, subject: Any, probe_count: int) -> tuple[Callable[[Any], Any], str, Any]:
        """``(apply(model), library label, inspect or None)`` for ``verify``."""
        return _resolve(self.applier_path)(self, export, subject, probe_count)


def _resolve(path: str) -> Callable[..., Any]:
    module, _, function = path.partition(":")
    return getattr(importlib.import_module(module), function)


__all__ = [
    "CONV1D",
    "CONV2D",
    "CONV3D",
    "EMBEDDING",
    "HF_CONV1D",
    "LINEAR",
    "MHA_OUT_PROJ",
    "Target",
    "module_class",
]

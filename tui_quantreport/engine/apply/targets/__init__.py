"""The deployment targets: :data:`TARGETS` by name, each its facts (``core/targets.py``, torch-free)
plus the exporter and applier of its library.

The command line's ``--target`` choices, the app's export dialog and ``verify`` read this
registry; old names (``torchao``, ``pt2e``, ``qconfig_mapping``) are aliases (:func:`resolve`).
Adding a target is its facts in ``core/targets.py`` and one line in :data:`EXPORTERS` here.
"""

from __future__ import annotations

from typing import Any

from tui_quantreport.engine.apply.targets.base import Target, module_class
from tui_quantreport.engine.core.targets import (
    ALIASES,
    NAMES,
    PT2E_ALIAS,
    TARGET_FACTS,
    TargetError,
    default_target_name,
    model_device,
    target_name,
)

_APPLY = "tui_quantreport.engine.apply"
_TORCHAO = (f"{_APPLY}.torchao_target:export_for_target", f"{_APPLY}.torchao_target:applier")
_PT2E = (f"{_APPLY}.pt2e_target:export_for_target", f"{_APPLY}.pt2e_target:applier")
_QCONFIG = (f"{_APPLY}.qconfig_target:export_for_target", f"{_APPLY}.qconfig_target:applier")

#: Each target's exporter and applier ("module:function", imported when an export or a
#: verification asks for it).
EXPORTERS: dict[str, tuple[str, str]] = {
    "torchao-cpu": _TORCHAO,
    "torchao-cuda": _TORCHAO,
    "pt2e-x86-static": _PT2E,
    "pt2e-x86-dynamic": _PT2E,
    "qconfig-x86": _QCONFIG,
    "qconfig-qnnpack": _QCONFIG,
}

TARGETS: dict[str, Target] = {name: Target.of(facts, *EXPORTERS[name]) for name, facts in TARGET_FACTS.items()}


def resolve(name: str, plan: Any = None) -> Target:
    """The target ``name`` (or an old alias) selects. ``pt2e`` is the static PT2E target when the
    plan (a ``Plan``) has more static modules than dynamic ones, else the dynamic one."""
    return TARGETS[target_name(name, plan.quantized.values() if plan is not None else None)]


def default_target(device: str = "cpu") -> Target:
    """torchao on the model's device."""
    return TARGETS[default_target_name(device)]


__all__ = [
    "ALIASES",
    "EXPORTERS",
    "NAMES",
    "PT2E_ALIAS",
    "TARGETS",
    "Target",
    "TargetError",
    "default_target",
    "module_class",
    "model_device",
    "resolve",
]

"""The deployment targets, one file each: :data:`TARGETS` by name.

The command line's ``--target`` choices, the app's export dialog and ``verify`` read this
registry; old names (``torchao``, ``pt2e``, ``qconfig_mapping``) are aliases (:func:`resolve`).
Adding a target is one file here and one line in :data:`TARGETS`.
"""

from __future__ import annotations

from typing import Any

from tui_quantreport.engine.apply.targets import (
    pt2e_x86_dynamic,
    pt2e_x86_static,
    qconfig_qnnpack,
    qconfig_x86,
    torchao_cpu,
    torchao_cuda,
)
from tui_quantreport.engine.apply.targets.base import Target, module_class
from tui_quantreport.engine.errors import UserError
from tui_quantreport.engine.plan import register_targets

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        torchao_cpu.TARGET,
        torchao_cuda.TARGET,
        pt2e_x86_static.TARGET,
        pt2e_x86_dynamic.TARGET,
        qconfig_x86.TARGET,
        qconfig_qnnpack.TARGET,
    )
}

#: ``pt2e`` picks the static or the dynamic PT2E target from the plan (see :func:`resolve`).
PT2E_ALIAS = "pt2e"

ALIASES: dict[str, str] = {alias: t.name for t in TARGETS.values() for alias in t.aliases}

#: Every name ``--target`` accepts: the targets, then the old names.
NAMES: tuple[str, ...] = (*TARGETS, *ALIASES, PT2E_ALIAS)
register_targets(NAMES)  # the names a plan may record


class TargetError(UserError):
    """An unknown target name (one line)."""


def resolve(name: str, plan: Any = None) -> Target:
    """The target ``name`` (or an old alias) selects. ``pt2e`` is the static PT2E target when the
    plan (a ``Plan``) has at least as many static modules as dynamic ones, else the dynamic one."""
    if name in TARGETS:
        return TARGETS[name]
    if name in ALIASES:
        return TARGETS[ALIASES[name]]
    if name == PT2E_ALIAS:
        if plan is not None:
            from tui_quantreport.engine.apply.pt2e_target import choose_mode

            return TARGETS["pt2e-x86-dynamic" if choose_mode(plan) == "dynamic" else "pt2e-x86-static"]
        return TARGETS["pt2e-x86-static"]
    raise TargetError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}")


def default_target(device: str = "cpu") -> Target:
    """torchao on the model's device."""
    return TARGETS["torchao-cuda" if device.startswith("cuda") else "torchao-cpu"]


def model_device(model: Any) -> str:
    """The device type of the model's first parameter ("cpu" without parameters)."""
    for parameter in model.parameters():
        return str(parameter.device.type)
    return "cpu"


__all__ = ["ALIASES", "NAMES", "TARGETS", "Target", "TargetError", "default_target", "module_class", "resolve"]

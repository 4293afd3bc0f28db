"""The ``qconfig_mapping`` target: a torch.ao ``QConfigMapping`` as code, for users
still on torch.ao's FX (or eager) workflow: per-tensor or per-channel weight
observers for the static schemes (activations observed with ``MinMaxObserver``
on the plan's range), ``per_channel_dynamic_qconfig`` for dynamic, ``None`` for
modules kept float. torch.ao has no int8 weight-only Linear/Conv, so a
weight-only module becomes dynamic (int8 per-channel weights), and it has no
dynamic convolution, so a dynamic Conv becomes static; both are named.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from tui_quantreport.engine.apply.common import (
    Change,
    Export,
    calibrated_main_code,
    header,
    quietly,
)
from tui_quantreport.engine.apply.facts import module_facts
from tui_quantreport.engine.apply.plan import int8_per_tensor_or_channel
from tui_quantreport.engine.core.recipes import call, fx_qconfig_mapping, fx_quantize, source
from tui_quantreport.engine.defaults import BACKENDS, DEFAULT_BACKEND
from tui_quantreport.engine.plan import FLOAT, Plan
from tui_quantreport.engine.quantsim.qparams import activation_range

BACKEND_ENGINE = {backend: backend for backend in BACKENDS}  # each backend is the torch engine of its name


def export_for_target(target: Any, subject: Any) -> Export:
    """The QConfigMapping file for ``target`` (qconfig-x86 or qconfig-qnnpack: its engine and grid)."""
    export = export_qconfig_mapping(
        subject.model, subject.plan, subject.spec, None, subject.calibration, backend=target.recipe.backend
    )
    export.target = target.name
    return export


def export_qconfig_mapping(
    model: nn.Module,
    plan: Plan,
    spec: str,
    first_batch: Any | None,
    calibration: str | None = None,
    *,
    backend: str | None = None,
) -> Export:
    """The file; ``backend`` (the engine, and its activation grid) from the target, else the plan's."""
    facts = module_facts(model, plan.quantized, None)
    changes: list[Change] = []
    assigned: dict[str, str] = {}
    for fqn, scheme in plan.quantized.items():
        kind = facts[fqn].kind
        if not int8_per_tensor_or_channel(scheme):
            changes.append(Change(fqn, scheme, FLOAT, f"torch.ao's int8 QConfigMapping cannot express {scheme}"))
            continue
        if kind not in ("Linear", "Conv1d", "Conv2d", "Conv3d"):
            changes.append(Change(fqn, scheme, FLOAT, f"torch.ao's QConfigMapping quantizes Linear/Conv, not {kind}"))
            continue
        if facts[fqn].parent_class == "MultiheadAttention":
            changes.append(
                Change(fqn, scheme, FLOAT, "torch.ao does not quantize nn.MultiheadAttention's out_proj on its own")
            )
            continue
        exported = scheme
        if scheme == "weight_only":
            exported = "dynamic" if kind == "Linear" else "static_per_channel"
            changes.append(Change(fqn, scheme, exported, "torch.ao has no int8 weight-only Linear/Conv"))
        elif scheme == "dynamic" and kind != "Linear":
            exported = "static_per_channel"
            changes.append(Change(fqn, scheme, exported, "torch.ao has no dynamic quantized convolution"))
        assigned[fqn] = exported
    keep_float = [*plan.kept_float, *(c.fqn for c in changes if c.exported == FLOAT)]
    if backend is None:
        act = next(iter(plan.static_activation.values()), None)
        qmin, qmax = (act.quant_min, act.quant_max) if act else (0, 127)
        backend = plan.backend
    else:
        qmin, qmax = activation_range(backend)
    engine = BACKEND_ENGINE.get(backend, DEFAULT_BACKEND)
    recipe = {
        "engine": engine,
        "assigned": {str(fqn): str(scheme) for fqn, scheme in assigned.items()},
        "keep_float": [str(name) for name in keep_float],
        "quant_min": int(qmin),
        "quant_max": int(qmax),
    }
    text = (
        header(
            "torch.ao QConfigMapping (FX graph mode) for the plan (run: python THIS_FILE)",
            spec,
            plan,
            changes,
            [f"Activations: quint8 [{qmin}, {qmax}] from MinMaxObserver, backend {backend}; weights qint8 symmetric."],
        )
        + '"""The plan as a torch.ao QConfigMapping; quantize(model, batches) runs prepare_fx, calibration, convert_fx."""\n\n'
        "import torch\n\n"
        f"ENGINE = {recipe['engine']!r}\n"
        "#: Module name -> scheme (static_per_tensor, static_per_channel or dynamic).\n"
        f"ASSIGNED = {recipe['assigned']!r}\n"
        f"KEEP_FLOAT = {recipe['keep_float']!r}\n"
        f"QUANT_MIN, QUANT_MAX = {recipe['quant_min']!r}, {recipe['quant_max']!r}\n\n\n"
        + source(call, fx_qconfig_mapping, fx_quantize)
        + "\n\n"
        "def qconfig_mapping():\n"
        '    """The plan as a QConfigMapping (global None: modules not named stay float)."""\n'
        "    return fx_qconfig_mapping(ASSIGNED, KEEP_FLOAT, QUANT_MIN, QUANT_MAX)\n\n\n"
        "def quantize(model, batches):\n"
        '    """prepare_fx with the mapping, calibrate on every batch, convert_fx (the model must be FX-traceable)."""\n'
        "    return fx_quantize(model, batches, ENGINE, ASSIGNED, KEEP_FLOAT, QUANT_MIN, QUANT_MAX)\n\n\n"
        + calibrated_main_code(spec, calibration, "quantize(model, batches)", "    print(converted)\n")
    )
    exported_plan = plan.with_schemes({c.fqn: c.exported for c in changes})
    return Export("qconfig_mapping", text, {}, changes, exported_plan, recipe=recipe)


def applier(target: Any, export: Export, subject: Any, probe_count: int):
    """``apply(model)``: the FX recipe with the export's data on all calibration batches, through
    the library API (the generated text is not run in this process)."""
    import torch

    batches = subject.batches(None)
    recipe = dict(export.recipe)

    def apply(model: Any) -> Any:
        return quietly(
            "the qconfig_mapping export failed to apply (prepare_fx/convert_fx)",
            lambda: fx_quantize(model, batches, **recipe),
        )

    return apply, f"torch.ao FX (torch {torch.__version__})", None

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
    call_code,
    header,
)
from tui_quantreport.engine.apply.facts import module_facts
from tui_quantreport.engine.apply.plan import FLOAT, PlanFile, int8_per_tensor_or_channel

BACKEND_ENGINE = {"x86": "x86", "fbgemm": "fbgemm", "qnnpack": "qnnpack", "onednn": "onednn"}


def export_qconfig_mapping(
    model: nn.Module, plan: PlanFile, spec: str, first_batch: Any | None, calibration: str | None = None
) -> Export:
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
    act = next((e.activation for e in plan.modules.values() if e.activation), None)
    qmin, qmax = (act.quant_min, act.quant_max) if act else (0, 127)
    backend = plan.backend
    lines = ["    mapping = QConfigMapping().set_global(None)"]
    lines += [f"    mapping.set_module_name({fqn!r}, {scheme.upper()})" for fqn, scheme in assigned.items()]
    lines += [f"    mapping.set_module_name({fqn!r}, None)  # kept float" for fqn in keep_float]
    text = (
        header(
            "torch.ao QConfigMapping (FX graph mode) for the plan (run: python THIS_FILE)",
            spec,
            plan,
            changes,
            [f"Activations: quint8 [{qmin}, {qmax}] from MinMaxObserver, backend {backend}; weights qint8 symmetric."],
        )
        + '"""The plan as a torch.ao QConfigMapping; quantize(model, batches) runs prepare_fx, calibration, convert_fx."""\n\n'
        "import torch\n"
        "from torch.ao.quantization import (\n"
        "    MinMaxObserver,\n    PerChannelMinMaxObserver,\n    QConfig,\n    QConfigMapping,\n    per_channel_dynamic_qconfig,\n)\n"
        "from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx\n\n"
        f"ACTIVATION = MinMaxObserver.with_args(dtype=torch.quint8, quant_min={qmin}, quant_max={qmax})\n"
        "STATIC_PER_TENSOR = QConfig(\n"
        "    activation=ACTIVATION,\n"
        "    weight=MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric),\n)\n"
        "STATIC_PER_CHANNEL = QConfig(\n"
        "    activation=ACTIVATION,\n"
        "    weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric),\n)\n"
        "DYNAMIC = per_channel_dynamic_qconfig\n\n\n"
        "def qconfig_mapping() -> QConfigMapping:\n" + "\n".join(lines) + "\n"
        "    return mapping\n\n\n" + call_code() + "\n\n"
        "def quantize(model, batches):\n"
        '    """prepare_fx with the mapping, calibrate on every batch, convert_fx (the model must be FX-traceable)."""\n'
        f"    if {BACKEND_ENGINE.get(backend, 'x86')!r} in torch.backends.quantized.supported_engines:\n"
        f"        torch.backends.quantized.engine = {BACKEND_ENGINE.get(backend, 'x86')!r}\n"
        "    batches = list(batches)\n"
        "    first = batches[0]\n"
        "    example = tuple(first) if isinstance(first, (tuple, list)) else (first,)\n"
        "    prepared = prepare_fx(model.eval(), qconfig_mapping(), example)\n"
        "    with torch.no_grad():\n"
        "        for batch in batches:\n"
        "            _call(prepared, batch)\n"
        "    return convert_fx(prepared)\n\n\n" + calibrated_main_code(spec, calibration, "    print(converted)\n")
    )
    exported_plan = plan.with_schemes({c.fqn: c.exported for c in changes})
    return Export("qconfig_mapping", text, {}, changes, exported_plan)


def applier(export: Export, subject: Any, probe_count: int):
    import torch

    from tui_quantreport.engine.apply.torchao_target import snippet_quantize

    apply = snippet_quantize(export, subject, "the qconfig_mapping export failed to apply (prepare_fx/convert_fx)")
    return apply, f"torch.ao FX (torch {torch.__version__})", None

"""The ``pt2e`` target: a runnable snippet for ``torch.export`` → ``prepare_pt2e``
with ``X86InductorQuantizer`` → calibrate → ``convert_pt2e`` (torchao 0.18's PT2E).

The quantizer takes one global config from the plan: static when the plan has
at least as many static modules as dynamic ones, else dynamic; an
``X86InductorQuantizer`` cannot mix static and dynamic, so the file names the
modules it had to change (and so does ``verify``). Modules kept float get
``set_module_name_qconfig(fqn, None)``; static modules planned with per-tensor
weights get a per-tensor weight spec. Activations are observed with a
``MinMaxObserver`` (the plan's calibration) and the plan's ``reduce_range``.
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
from tui_quantreport.engine.core.library import require_torchao, torchao_version
from tui_quantreport.engine.core.recipes import call, pt2e_quantize, pt2e_quantizer, source
from tui_quantreport.engine.core.targets import pt2e_mode
from tui_quantreport.engine.plan import FLOAT, Plan


def choose_mode(plan: Plan) -> str:
    """The one mode of X86InductorQuantizer this plan is exported with: "static" or "dynamic"."""
    return pt2e_mode(plan.quantized.values())


def export_for_target(target: Any, subject: Any) -> Export:
    """The PT2E snippet for ``target`` (pt2e-x86-static or pt2e-x86-dynamic)."""
    mode = "dynamic" if "dynamic" in target.supported else "static"
    export = export_pt2e(
        subject.model,
        subject.plan,
        subject.spec,
        None,
        subject.calibration,
        mode=mode,
        reduce_range=target.recipe.activation_bits == 7,
    )
    export.target = target.name
    return export


def export_pt2e(
    model: nn.Module,
    plan: Plan,
    spec: str,
    first_batch: Any | None,
    calibration: str | None = None,
    *,
    mode: str | None = None,
    reduce_range: bool | None = None,
) -> Export:
    """The snippet; ``mode`` (static or dynamic) from the target, else the plan's majority;
    ``reduce_range`` from the target, else the plan's static qparams (7 bits without any)."""
    require_torchao("the pt2e export")
    mode = mode or choose_mode(plan)
    changes, per_tensor = _changes(plan, module_facts(model, plan.quantized, None), mode)
    keep_float = [*plan.kept_float, *(c.fqn for c in changes if c.exported == FLOAT)]
    if reduce_range is None:
        reduce_range = next((qp.reduce_range for qp in plan.static_activation.values()), True)
    mixed = [c for c in changes if "mix static and dynamic" in c.reason]
    extra = [
        f"Mode: {mode} (global config), reduce_range={reduce_range}; activations observed with MinMaxObserver.",
        f"Needs torchao>=0.18,<0.19 (written with {torchao_version()}) and a model torch.export can trace.",
    ]
    if mixed:
        extra.insert(
            0,
            f"NOTE: the plan mixes static and dynamic; PT2E cannot, so {len(mixed)} module(s) use {mode} instead (listed above).",
        )
    recipe = {
        "mode": mode,
        "reduce_range": bool(reduce_range),
        "keep_float": [str(name) for name in keep_float],
        "per_tensor_weights": [str(name) for name in per_tensor],
    }
    text = _snippet(spec, plan, changes, extra, recipe, calibration)
    exported_plan = plan.with_schemes({c.fqn: c.exported for c in changes})
    return Export("pt2e", text, {}, changes, exported_plan, [extra[0]] if mixed else [], recipe)


def _changes(plan: Plan, facts: dict[str, Any], mode: str) -> tuple[list[Change], list[str]]:
    """What the export changes from the plan (each with why), and the modules whose weights stay
    per tensor; ``facts`` are the planned modules' (kind, parent class)."""
    changes: list[Change] = []
    per_tensor: list[str] = []
    for fqn, scheme in plan.quantized.items():
        kind = facts[fqn].kind
        if not int8_per_tensor_or_channel(scheme):
            changes.append(Change(fqn, scheme, FLOAT, f"X86InductorQuantizer's int8 configs cannot express {scheme}"))
        elif kind not in ("Linear", "Conv1d", "Conv2d") or (mode == "dynamic" and kind != "Linear"):
            changes.append(Change(fqn, scheme, FLOAT, f"X86InductorQuantizer does not quantize {kind} in {mode} mode"))
        elif facts[fqn].parent_class == "MultiheadAttention":
            changes.append(
                Change(fqn, scheme, FLOAT, "nn.MultiheadAttention's out_proj is not a linear node after torch.export")
            )
        elif scheme == "weight_only":
            exported = "static_per_channel" if mode == "static" else "dynamic"
            changes.append(Change(fqn, scheme, exported, "X86InductorQuantizer has no weight-only int8 config"))
        elif (scheme == "dynamic") != (mode == "dynamic"):
            exported = "static_per_channel" if mode == "static" else "dynamic"
            changes.append(
                Change(
                    fqn,
                    scheme,
                    exported,
                    f"one X86InductorQuantizer cannot mix static and dynamic: the plan is mostly {mode}",
                )
            )
        elif scheme == "static_per_tensor":
            per_tensor.append(fqn)
    return changes, per_tensor


def _snippet(
    spec: str, plan: Plan, changes: list[Change], extra: list[str], recipe: dict[str, Any], calibration: str | None
) -> str:
    """The snippet's text: the header, the recipe as constants, and the functions that apply it."""
    return (
        header(
            "PT2E (torch.export + X86InductorQuantizer) quantization snippet (run: python THIS_FILE)",
            spec,
            plan,
            changes,
            extra,
        )
        + '"""Apply the plan with PT2E: quantize(model, batches) exports, prepares, calibrates and converts."""\n\n'
        "import torch\n\n"
        f"MODE = {recipe['mode']!r}\n"
        f"REDUCE_RANGE = {recipe['reduce_range']!r}\n"
        f"KEEP_FLOAT = {recipe['keep_float']!r}\n"
        f"PER_TENSOR_WEIGHTS = {recipe['per_tensor_weights']!r}\n\n\n"
        + source(call, pt2e_quantizer, pt2e_quantize)
        + "\n\n"
        "def quantizer():\n"
        '    """The X86InductorQuantizer for the plan."""\n'
        "    return pt2e_quantizer(MODE, REDUCE_RANGE, KEEP_FLOAT, PER_TENSOR_WEIGHTS)\n\n\n"
        "def quantize(model, batches):\n"
        '    """torch.export on the first batch, prepare_pt2e, calibrate on every batch, convert_pt2e."""\n'
        "    return pt2e_quantize(model, batches, MODE, REDUCE_RANGE, KEEP_FLOAT, PER_TENSOR_WEIGHTS)\n\n\n"
        + calibrated_main_code(
            spec,
            calibration,
            "quantize(model, batches)",
            "    quantize_ops = sum(1 for n in converted.graph.nodes if 'quantize_per' in str(n.target))\n"
            "    print(f'converted with {quantize_ops} quantize/dequantize nodes')\n",
        )
    )


def applier(target: Any, export: Export, subject: Any, probe_count: int):
    """``apply(model)``: the PT2E recipe with the export's data on all calibration batches, through
    the library API (the generated text is not run in this process)."""
    batches = subject.batches(None)
    recipe = dict(export.recipe)

    def apply(model: Any) -> Any:
        return quietly("the pt2e export failed to apply", lambda: pt2e_quantize(model, batches, **recipe))

    return apply, f"torchao {torchao_version()} PT2E", graph_weight_states


def graph_weight_states(converted: Any, fqns: list[str]) -> dict[str, tuple[bool, str]]:
    """Per module: whether its linear/conv node's weight comes through a dequantize node."""
    states: dict[str, tuple[bool, str]] = {}
    for node in converted.graph.nodes:
        if node.op != "call_function" or not str(node.target).startswith(("aten.linear", "aten.conv")):
            continue
        stack = node.meta.get("nn_module_stack") or {}
        if not stack:
            continue
        path = list(stack.values())[-1][0]
        fqn = _normalize(path)
        weight = node.args[1] if len(node.args) > 1 else None
        target = str(getattr(weight, "target", ""))
        if "dequantize" in target:
            states[fqn] = (True, target.split(".")[-2] if target.count(".") >= 2 else target)
        else:
            states.setdefault(fqn, (False, "float constant"))
    return {fqn: states[fqn] for fqn in fqns if fqn in states}


def _normalize(path: str) -> str:
    import re

    path = re.sub(r"^L\['self'\]\.?", "", path)
    path = re.sub(r"\._modules\['([^']+)'\]", r".\1", path)
    path = re.sub(r"\[(\d+)\]", r".\1", path)
    return path.strip(".")

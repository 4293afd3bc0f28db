"""The ``torchao`` target: a runnable Python file building an ``FqnToConfig`` from
the plan and calling ``quantize_(model, config, filter_fn=None)``; the same
config as JSON through torchao's ``config_to_dict``; and the calibrated static
activation scales and zero points in a side-car ``.safetensors`` file.

Mapping (torchao 0.18): each scheme describes its own config as data (``Scheme.torchao_config_spec``,
in ``quantsim/schemes/``) and names what it imports; the int8 four:

- ``dynamic``: ``Int8DynamicActivationInt8WeightConfig``, asymmetric int8
  activations per tensor (per token for 3-D and wider inputs), per-channel
  symmetric int8 weights (``PerRow``);
- ``weight_only``: ``Int8WeightOnlyConfig`` (per-channel int8 weights);
- ``static_per_tensor`` / ``static_per_channel``: ``Int8StaticActivationInt8WeightConfig``
  with the plan's calibrated activation scale and zero point (moved from
  torch.ao's uint8 grid to the same grid on int8), per-tensor or per-channel weights;
- modules kept float are absent.

A module a scheme's config cannot take (its kind, e.g. Conv modules for the Linear-only
workflows and the ``out_proj`` that ``nn.MultiheadAttention`` reads directly, or its shape:
``Scheme.eligible``) is kept float and listed as a change (named in the file's header and by
``verify``). Schemes whose kernels need CUDA are written as they are, with a header note.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn

from tui_quantreport.engine.apply.common import (
    Change,
    Export,
    header,
    model_loader_code,
)
from tui_quantreport.engine.apply.facts import ModuleFacts, module_facts
from tui_quantreport.engine.core.library import require_torchao, torchao_version
from tui_quantreport.engine.core.recipes import (
    call,
    source,
    torchao_config,
    torchao_config_from_spec,
    torchao_quantize,
)
from tui_quantreport.engine.errors import UserError
from tui_quantreport.engine.plan import FLOAT, Plan
from tui_quantreport.engine.quantsim.kinds import kind_of
from tui_quantreport.engine.quantsim.schemes import SCHEMES, ExportContext, Scheme

JSON_FORMAT = "tui-quantreport.torchao-config/1"


def _context(facts: ModuleFacts, plan: Plan, model: nn.Module) -> ExportContext:
    weight = getattr(model.get_submodule(facts.fqn), "weight", None)
    shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else None
    return ExportContext(
        facts.fqn, facts.kind, facts.parent_class, facts.input_ndim, plan.activation_of(facts.fqn), shape
    )


#: The schemes :func:`recipes.torchao_config` builds from the row itself (the others carry their config as data).
INT8_RECIPES = ("weight_only", "dynamic", "static_per_tensor", "static_per_channel")

#: One row of :func:`recipes.torchao_config`'s entries: (module name, scheme, input rank, int8
#: activation scale, int8 activation zero point, the scheme's config as data or None for the int8 four).
Entry = tuple[str, str, "int | None", "float | None", "int | None", "dict[str, Any] | None"]


def _entry(fqn: str, name: str, scheme: Scheme, ctx: ExportContext) -> Entry:
    """One module's row, as validated plain data (``repr`` of it is what the file holds)."""
    if name not in INT8_RECIPES:
        return (str(fqn), str(name), ctx.input_ndim, None, None, scheme.torchao_config_spec(ctx))
    if not scheme.facts.needs_range:
        return (str(fqn), str(name), ctx.input_ndim, None, None, None)
    qparams = ctx.activation
    assert qparams is not None and ctx.input_ndim is not None
    scale, zero_point = qparams.int8()
    return (str(fqn), str(name), int(ctx.input_ndim), float(scale), int(zero_point), None)


def _unsupported(scheme: Scheme, ctx: ExportContext, model: nn.Module) -> str | None:
    """Why torchao cannot apply ``scheme`` to this module (its kind, or its shape), or None."""
    reason = scheme.torchao_unsupported(ctx)
    if reason is not None or ctx.weight_shape is None:
        return reason
    kind = kind_of(model.get_submodule(ctx.fqn))
    return scheme.eligible(kind, ctx.weight_shape) if kind is not None else None


def export_torchao(
    model: nn.Module, plan: Plan, spec: str, first_batch: Any | None, calibration: str | None = None
) -> Export:
    require_torchao("the torchao export")
    facts = module_facts(model, plan.quantized, first_batch)
    changes: list[Change] = []
    entries: list[Entry] = []
    notes: list[str] = []
    for fqn, name in plan.quantized.items():
        if fqn == "_default" or fqn.startswith("re:"):
            pattern = "torchao's FqnToConfig reads this name as a pattern or its fallback, not as a module name"
            changes.append(Change(fqn, name, FLOAT, pattern))
            continue
        scheme = SCHEMES[name]
        ctx = _context(facts[fqn], plan, model)
        reason = _unsupported(scheme, ctx, model)
        if reason:
            changes.append(Change(fqn, name, FLOAT, reason))
            continue
        entries.append(_entry(fqn, name, scheme, ctx))
        if scheme.facts.cuda_only and scheme.facts.runs_note not in notes:
            notes.append(f"{name}: {scheme.facts.runs_note} (this file is valid; quantize_ refuses it on a CPU)")
    exported_plan = plan.with_schemes({c.fqn: c.exported for c in changes})
    version = torchao_version()
    top = header(
        "torchao quantization configuration (run: python THIS_FILE, or import it and call quantize(model))",
        spec,
        plan,
        changes,
        [
            f"Needs torchao>=0.18,<0.19 (written with {version}); config JSON and scales: the .json and .safetensors beside this file.",
            *notes,
        ],
    )
    rows = "".join(f"    {entry!r},\n" for entry in entries)
    text = (
        top + '"""Apply the plan with torchao: quantize(model) quantizes, in place, exactly the planned modules."""\n\n'
        "import torch\n\n"
        "#: One row per quantized module (modules kept float are absent):\n"
        "#: (module name, scheme, input rank, int8 activation scale, int8 activation zero point,\n"
        "#: the config as data for the formats beyond int8).\n"
        "ENTRIES = [\n"
        + rows
        + "]\n\n\n"
        + source(torchao_config, torchao_config_from_spec, torchao_quantize, call)
        + "\n\n"
        "def quantization_config(set_inductor_config=True):\n"
        '    """torchao\'s FqnToConfig: one entry per quantized module."""\n'
        "    return torchao_config(ENTRIES, set_inductor_config)\n\n\n"
        "def quantize(model, set_inductor_config=True):\n"
        '    """Quantize ``model`` in place with torchao\'s quantize_; returns it."""\n'
        "    return torchao_quantize(model, ENTRIES, set_inductor_config)\n\n\n"
        + model_loader_code(spec, calibration)
        + "\n\n"
        'if __name__ == "__main__":\n'
        "    model = quantize(build_model().eval())\n"
        "    quantized = [name for name, module in model.named_modules()\n"
        "                 if type(getattr(module, 'weight', None)).__module__.startswith('torchao')]\n"
        "    print(f'{len(quantized)} modules quantized by torchao: {ascii(quantized)}')\n"
    )
    config = torchao_config(entries)  # the library API, directly: the generated text is never run here
    json_bytes, tensors_bytes = _json_and_tensors(config, plan, spec, version)
    return Export(
        "torchao",
        text,
        {".json": json_bytes, ".safetensors": tensors_bytes},
        changes,
        exported_plan,
        recipe={"entries": entries},
    )


def export_for_target(target: Any, subject: Any) -> Export:
    """The torchao files for ``target`` (torchao-cpu or torchao-cuda): the same configs."""
    first = subject.batches(1)[0] if subject.loaded.batches_factory is not None else None
    export = export_torchao(subject.model, subject.plan, subject.spec, first, subject.calibration)
    export.target = target.name
    return export


def applier(target: Any, export: Export, subject: Any, probe_count: int):
    """``apply(model)``: torchao's ``quantize_`` with the export's config, through the library API
    (torchao-cuda: on a CUDA device only)."""
    if target.device == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"{target.name} applies the plan on a CUDA device, and torch sees none here; verify torchao-cpu"
        )

    entries = list(export.recipe["entries"])

    def apply(model: Any) -> Any:
        return torchao_quantize(model, entries, False)

    return apply, f"torchao {torchao_version()}", None


def _json_and_tensors(config: Any, plan: Plan, spec: str, version: str | None) -> tuple[bytes, bytes]:
    import dataclasses

    from safetensors.torch import save
    from torchao.core.config import config_to_dict

    tensors: dict[str, Any] = {}
    keys: dict[str, dict[str, str]] = {}
    entries = {}
    for index, (fqn, cfg) in enumerate(config.fqn_to_config.items()):
        fields = [f for f in ("act_quant_scale", "act_quant_zero_point") if getattr(cfg, f, None) is not None]
        if fields:
            # Tensor names are the module's position, not its name: a name is any string (a lone
            # surrogate, 10k characters), the JSON maps it to these plain keys.
            keys[fqn] = {f: f"module{index}.{f}" for f in fields}
            for f in fields:
                tensors[keys[fqn][f]] = getattr(cfg, f).detach().contiguous()
            cfg = dataclasses.replace(cfg, **dict.fromkeys(fields))
        entries[fqn] = cfg
    stripped = type(config)(entries)
    data = {
        "format": JSON_FORMAT,
        "torchao": version,
        "model": {"spec": spec, "class": plan.model_class, "fingerprint": plan.fingerprint},
        "predicted_sqnr_db": plan.predicted_sqnr_db,
        "config": config_to_dict(stripped),
        "tensors": keys,
    }
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    return text.encode("utf-8"), save(tensors, metadata={"format": JSON_FORMAT}) if tensors else save(
        {}, metadata={"format": JSON_FORMAT}
    )


def load_config_json(json_path: str) -> Any:
    """The FqnToConfig from an exported .json and its .safetensors side-car (no pickle)."""
    import dataclasses
    from pathlib import Path

    require_torchao("loading a torchao config")
    from safetensors.torch import load_file
    from torchao.core.config import config_from_dict

    path = Path(json_path)
    data = json.loads(path.read_text(encoding="utf-8"))
    config = config_from_dict(data["config"])
    tensors = load_file(str(path.with_suffix(".safetensors"))) if data["tensors"] else {}
    entries = {}
    for fqn, cfg in config.fqn_to_config.items():
        if fqn in data["tensors"]:
            names = data["tensors"][fqn]
            cfg = dataclasses.replace(cfg, **{field: tensors[key] for field, key in names.items()})
        entries[fqn] = cfg
    return type(config)(entries)

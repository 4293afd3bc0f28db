"""The ``torchao`` target: a runnable Python file building an ``FqnToConfig`` from
the plan and calling ``quantize_(model, config, filter_fn=None)``; the same
config as JSON through torchao's ``config_to_dict``; and the calibrated static
activation scales and zero points in a side-car ``.safetensors`` file.

Mapping (torchao 0.18): each scheme writes its own config (``Scheme.torchao_config_code``,
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
from tui_quantreport.engine.apply.library import require_torchao, torchao_version
from tui_quantreport.engine.apply.plan import FLOAT, PlanFile
from tui_quantreport.engine.quantsim.kinds import kind_of
from tui_quantreport.engine.quantsim.schemes import SCHEMES, ExportContext, Scheme

JSON_FORMAT = "tui-quantreport.torchao-config/1"
#: What every exported file imports; each planned scheme adds its config's names.
BASE_IMPORTS = (("torchao.quantization", "FqnToConfig"), ("torchao.quantization", "quantize_"))


def _import_lines(imports: dict[tuple[str, str], None]) -> str:
    """``from module import (...)`` per module, names sorted, torchao.quantization first."""
    by_module: dict[str, list[str]] = {}
    for module, name in imports:
        by_module.setdefault(module, []).append(name)
    lines = []
    for module in sorted(by_module, key=lambda m: (m != "torchao.quantization", m)):
        names = sorted(set(by_module[module]), key=lambda n: (n[0].islower(), n))
        lines.append(f"from {module} import (\n" + "".join(f"    {n},\n" for n in names) + ")\n")
    return "".join(lines)


def _context(facts: ModuleFacts, plan: PlanFile, model: nn.Module) -> ExportContext:
    weight = getattr(model.get_submodule(facts.fqn), "weight", None)
    shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else None
    return ExportContext(
        facts.fqn, facts.kind, facts.parent_class, facts.input_ndim, plan.modules[facts.fqn].activation, shape
    )


def _unsupported(scheme: Scheme, ctx: ExportContext, model: nn.Module) -> str | None:
    """Why torchao cannot apply ``scheme`` to this module (its kind, or its shape), or None."""
    reason = scheme.torchao_unsupported(ctx)
    if reason is not None or ctx.weight_shape is None:
        return reason
    kind = kind_of(model.get_submodule(ctx.fqn))
    return scheme.eligible(kind, ctx.weight_shape) if kind is not None else None


def export_torchao(
    model: nn.Module, plan: PlanFile, spec: str, first_batch: Any | None, calibration: str | None = None
) -> Export:
    require_torchao("the torchao export")
    facts = module_facts(model, plan.quantized, first_batch)
    changes: list[Change] = []
    entries: list[tuple[str, str]] = []
    imports: dict[tuple[str, str], None] = dict.fromkeys(BASE_IMPORTS)
    notes: list[str] = []
    for fqn, name in plan.quantized.items():
        scheme = SCHEMES[name]
        ctx = _context(facts[fqn], plan, model)
        reason = _unsupported(scheme, ctx, model)
        if reason:
            changes.append(Change(fqn, name, FLOAT, reason))
            continue
        entries.append((fqn, scheme.torchao_config_code(ctx)))
        imports.update(dict.fromkeys(scheme.torchao_imports))
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
    body = "\n".join(f"        {fqn!r}: {code}," for fqn, code in entries)
    text = (
        top + '"""Apply the plan with torchao: quantize(model) quantizes, in place, exactly the planned modules."""\n\n'
        "import torch\n" + _import_lines(imports) + "\n\n"
        "def quantization_config(set_inductor_config: bool = True) -> FqnToConfig:\n"
        '    """One entry per quantized module; modules kept float are absent."""\n'
        "    return FqnToConfig({\n" + (body + "\n" if body else "") + "    })\n\n\n"
        "def quantize(model: torch.nn.Module, set_inductor_config: bool = True) -> torch.nn.Module:\n"
        "    quantize_(model, quantization_config(set_inductor_config), filter_fn=None)\n"
        "    return model\n\n\n" + model_loader_code(spec, calibration) + "\n\n"
        'if __name__ == "__main__":\n'
        "    model = quantize(build_model().eval())\n"
        "    quantized = [name for name, module in model.named_modules()\n"
        "                 if type(getattr(module, 'weight', None)).__module__.startswith('torchao')]\n"
        "    print(f'{len(quantized)} modules quantized by torchao: {\", \".join(quantized)}')\n"
    )
    namespace = run_source(text, "<torchao export>")
    config = namespace["quantization_config"]()
    json_bytes, tensors_bytes = _json_and_tensors(config, plan, spec, version)
    return Export("torchao", text, {".json": json_bytes, ".safetensors": tensors_bytes}, changes, exported_plan)


def run_source(text: str, name: str) -> dict[str, Any]:
    """Execute an exported file's source (not its __main__ block) and return its namespace."""
    namespace: dict[str, Any] = {"__name__": "_tui_quantreport_export"}
    exec(compile(text, name, "exec"), namespace)  # noqa: S102 - our own generated export, run to verify it
    return namespace


def snippet_quantize(export: Any, subject: Any, failure: str) -> Any:
    """``apply(model)`` running an exported snippet's ``quantize(model, batches)`` on every
    calibration batch, quietly (its prints and warnings are the snippet's, not ours); a failure
    is one line: ``failure`` (what failed, e.g. "the pt2e export failed to apply"), the cause."""
    namespace = run_source(export.text, f"<{export.target} export>")
    batches = subject.batches(None)

    def apply(model: Any) -> Any:
        import contextlib
        import io
        import warnings

        from tui_quantreport.engine.errors import UserError

        try:
            with (
                warnings.catch_warnings(),
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                warnings.simplefilter("ignore")
                return namespace["quantize"](model, batches)
        except Exception as exc:  # noqa: BLE001 - export/trace/convert failures are reported in one line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise UserError(f"{failure}: {type(exc).__name__}: {first}") from None

    return apply


def _json_and_tensors(config: Any, plan: PlanFile, spec: str, version: str | None) -> tuple[bytes, bytes]:
    import dataclasses

    from safetensors.torch import save
    from torchao.core.config import config_to_dict

    tensors: dict[str, Any] = {}
    keys: dict[str, dict[str, str]] = {}
    entries = {}
    for fqn, cfg in config.fqn_to_config.items():
        fields = [f for f in ("act_quant_scale", "act_quant_zero_point") if getattr(cfg, f, None) is not None]
        if fields:
            keys[fqn] = {f: f"{fqn}.{f}" for f in fields}
            for f in fields:
                tensors[f"{fqn}.{f}"] = getattr(cfg, f).detach().contiguous()
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

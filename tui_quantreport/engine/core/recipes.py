"""The code every exported file runs, as real functions: the engine calls them
directly (``verify`` applies a plan through the library API, never by running
generated text), and the exporters copy their source into the file they write
(:func:`source`), with the plan's data beside them as Python literals.

So an exported file holds only this fixed code and ``repr()`` literals of
validated data: nothing from a model or a plan file is ever pasted into code.

Each function here is self-contained (its imports are inside it, no
annotations, no globals but other functions listed with it), because its
source is copied into a file that does not import tui-quantreport.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable


def call(model, batch):
    """One batch through ``model``: a tensor as is, a tuple or list spread, a dict as keywords."""
    if isinstance(batch, dict):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


def torchao_config(entries, set_inductor_config=True):
    """torchao's FqnToConfig for ``entries``: (module name, scheme, input rank, int8 activation
    scale, int8 activation zero point[, config spec]); scale and zero point are None for dynamic
    and weight-only; a config spec (see :func:`torchao_config_from_spec`) describes the formats
    beyond int8."""
    import torch
    from torchao.quantization import (
        FqnToConfig,
        Int8DynamicActivationInt8WeightConfig,
        Int8StaticActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
        MappingType,
        PerRow,
        PerTensor,
    )

    configs = {}
    for name, scheme, input_ndim, scale, zero_point, *rest in entries:
        spec = rest[0] if rest else None
        if spec is not None:  # a format beyond int8: its config, described as data
            config = torchao_config_from_spec(spec, set_inductor_config)
        elif scheme == "weight_only":
            config = Int8WeightOnlyConfig(granularity=PerRow(), set_inductor_config=set_inductor_config)
        elif scheme == "dynamic":
            act = PerRow() if (input_ndim or 2) >= 3 else PerTensor()
            config = Int8DynamicActivationInt8WeightConfig(
                granularity=[act, PerRow()],
                act_mapping_type=MappingType.ASYMMETRIC,
                set_inductor_config=set_inductor_config,
            )
        elif scheme in ("static_per_tensor", "static_per_channel"):
            shape = (1,) * int(input_ndim)
            config = Int8StaticActivationInt8WeightConfig(
                act_quant_scale=torch.full(shape, float(scale)),
                act_quant_zero_point=torch.full(shape, int(zero_point), dtype=torch.int8),
                granularity=[PerTensor(), PerTensor() if scheme == "static_per_tensor" else PerRow()],
                act_mapping_type=MappingType.ASYMMETRIC,
                set_inductor_config=set_inductor_config,
            )
        else:
            raise ValueError("unknown scheme " + ascii(scheme))
        configs[name] = config
    return FqnToConfig(configs)


def torchao_config_from_spec(spec, set_inductor_config=True):
    """A torchao config from plain data: ``{"config": "torchao.<...>.<Config class>", "kwargs":
    {name: value}, "inductor": bool}``, where a value is a literal, a list of values, ``{"$attr":
    "torch.int4"}`` (an attribute of torch or torchao) or ``{"$call": "torchao.quantization.PerGroup",
    "args": [...], "kwargs": {...}}``. Only names under ``torch`` and ``torchao`` are resolved."""
    import importlib

    def resolve(dotted):
        parts = str(dotted).split(".")
        if parts[0] not in ("torch", "torchao") or not all(p.isidentifier() for p in parts):
            raise ValueError("not a torch or torchao name: " + ascii(dotted))
        for cut in range(len(parts), 0, -1):
            try:
                found = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            for attribute in parts[cut:]:
                found = getattr(found, attribute)
            return found
        raise ValueError("cannot import " + ascii(dotted))

    def value(item):
        if isinstance(item, dict) and "$attr" in item:
            return resolve(item["$attr"])
        if isinstance(item, dict) and "$call" in item:
            args = [value(a) for a in item.get("args", ())]
            return resolve(item["$call"])(*args, **{str(k): value(v) for k, v in item.get("kwargs", {}).items()})
        if isinstance(item, (list, tuple)):
            return [value(v) for v in item]
        return item

    kwargs = {str(k): value(v) for k, v in spec.get("kwargs", {}).items()}
    if spec.get("inductor"):
        kwargs["set_inductor_config"] = set_inductor_config
    return resolve(spec["config"])(**kwargs)


def torchao_quantize(model, entries, set_inductor_config=True):
    """Quantize ``model`` in place with torchao's ``quantize_`` and :func:`torchao_config`."""
    from torchao.quantization import quantize_

    quantize_(model, torchao_config(entries, set_inductor_config), filter_fn=None)
    return model


def pt2e_quantizer(mode, reduce_range, keep_float, per_tensor_weights):
    """An X86InductorQuantizer: one global ``mode`` ("static" or "dynamic") config, ``keep_float``
    modules left float, ``per_tensor_weights`` modules with a per-tensor weight spec."""
    import dataclasses

    import torch
    from torchao.quantization.pt2e import MinMaxObserver
    from torchao.quantization.pt2e.quantizer import QuantizationSpec
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    def config(per_tensor):
        base = get_default_x86_inductor_quantization_config(is_dynamic=mode == "dynamic", reduce_range=reduce_range)
        if mode == "static":
            act = dataclasses.replace(
                base.input_activation, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12)
            )
            base = dataclasses.replace(base, input_activation=act, output_activation=act)
        if per_tensor:
            weight = QuantizationSpec(
                dtype=torch.int8,
                quant_min=-128,
                quant_max=127,
                qscheme=torch.per_tensor_symmetric,
                is_dynamic=False,
                observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12),
            )
            base = dataclasses.replace(base, weight=weight)
        return base

    quantizer = X86InductorQuantizer()
    quantizer.set_global(config(False))
    for name in keep_float:
        quantizer.set_module_name_qconfig(name, None)
    for name in per_tensor_weights:
        quantizer.set_module_name_qconfig(name, config(True))
    return quantizer


def pt2e_quantize(model, batches, mode, reduce_range, keep_float, per_tensor_weights):
    """torch.export on the first batch, prepare_pt2e, calibrate on every batch, convert_pt2e."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    batches = list(batches)
    first = batches[0]
    args = tuple(first) if isinstance(first, (tuple, list)) else (() if isinstance(first, dict) else (first,))
    kwargs = first if isinstance(first, dict) else None
    exported = torch.export.export(model.eval(), args, kwargs).module()
    prepared = prepare_pt2e(exported, pt2e_quantizer(mode, reduce_range, keep_float, per_tensor_weights))
    with torch.no_grad():
        for batch in batches:
            call(prepared, batch)
    return convert_pt2e(prepared)


def fx_qconfig_mapping(assigned, keep_float, quant_min, quant_max):
    """torch.ao's QConfigMapping: ``assigned`` maps a module name to "static_per_tensor",
    "static_per_channel" or "dynamic"; ``keep_float`` modules get None; the rest is float."""
    import torch
    from torch.ao.quantization import (
        MinMaxObserver,
        PerChannelMinMaxObserver,
        QConfig,
        QConfigMapping,
        per_channel_dynamic_qconfig,
    )

    activation = MinMaxObserver.with_args(dtype=torch.quint8, quant_min=quant_min, quant_max=quant_max)
    qconfigs = {
        "static_per_tensor": QConfig(
            activation=activation,
            weight=MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric),
        ),
        "static_per_channel": QConfig(
            activation=activation,
            weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric),
        ),
        "dynamic": per_channel_dynamic_qconfig,
    }
    mapping = QConfigMapping().set_global(None)
    for name, scheme in assigned.items():
        mapping.set_module_name(name, qconfigs[scheme])
    for name in keep_float:
        mapping.set_module_name(name, None)
    return mapping


def fx_quantize(model, batches, engine, assigned, keep_float, quant_min, quant_max):
    """prepare_fx with :func:`fx_qconfig_mapping`, calibrate on every batch, convert_fx."""
    import torch
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    if engine in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = engine
    batches = list(batches)
    first = batches[0]
    example = tuple(first) if isinstance(first, (tuple, list)) else (first,)
    prepared = prepare_fx(model.eval(), fx_qconfig_mapping(assigned, keep_float, quant_min, quant_max), example)
    with torch.no_grad():
        for batch in batches:
            call(prepared, batch)
    return convert_fx(prepared)


def import_model_code(kind, target, name, here=None):
    """The callable ``name`` of the model's source: a file (run as a module) or an importable module
    (``target`` is then ``(root to add to sys.path or None, module name)``). Portable to another
    machine: a module is imported as installed before its recorded root is tried, and a file not
    at its recorded path is looked for by name beside the generated file (``here``) and in the
    working directory."""
    import importlib
    import importlib.util
    import os
    import sys

    if kind == "file":
        candidates = [target]
        candidates += [os.path.join(where, os.path.basename(target)) for where in (here, os.getcwd()) if where]
        found = next((path for path in candidates if os.path.isfile(path)), None)
        if found is None:
            raise FileNotFoundError("the model file " + ascii(target) + " (not found there, beside this file or here)")
        sys.path.insert(0, os.path.dirname(found))
        spec = importlib.util.spec_from_file_location("_model_source_" + str(abs(hash(found))), found)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        root, module_name = target
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            if not root or root in sys.path:
                raise
            sys.path.insert(0, root)
            module = importlib.import_module(module_name)
    return getattr(module, name)


def source(*functions: Callable) -> str:
    """The source of ``functions`` (from this module), as they are, two blank lines apart."""
    return "\n\n".join(inspect.getsource(fn) for fn in functions)

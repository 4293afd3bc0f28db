"""Plan evaluation: each quantized module's forward swapped for its simulated form for one pass
over the probes, the model's output compared with the float reference."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from torch import nn

from tui_quantreport.engine.quantsim.analysis_base import (
    _MISSING,
    SimulationError,
    _check_cancel,
)
from tui_quantreport.engine.quantsim.forward import (
    PT2E_INT8_POOLING_TYPES,
    SHARED_QPARAMS_TYPES,
    _shared_qparams_forward,
    _simulated_forward,
)
from tui_quantreport.engine.quantsim.merged_probes import simulate_merged
from tui_quantreport.engine.quantsim.outputs import OutputsSqnr, output_tensors
from tui_quantreport.engine.quantsim.schemes import (
    SCHEMES,
    InputContext,
    StaticInput,
)
from tui_quantreport.engine.quantsim.sqnr import Sqnr

if TYPE_CHECKING:
    from tui_quantreport.engine.quantsim.error_analysis import ErrorAnalysis


def output_quantized(analysis: ErrorAnalysis, fqn: str, quantized: Mapping[str, str]) -> StaticInput | None:
    """The qparams a static module's output edge is quantized with under ``quantized``, if any.

    As in a converted int8 model, a static module emits int8: its output is
    quantized once. Where every reader of that output is a module this plan
    quantizes statically, the reader's input quantization is that step (not
    repeated here); otherwise (a float module, another op, the model's output)
    the output is quantized with its own calibrated range (after a ReLU-like
    successor, whose range is the one a fused module would use). None for every
    module when ``static_outputs="float"``.
    """
    target = analysis.targets[fqn]
    if target.out_static is None or analysis.static_outputs == "float":
        return None
    readers = target.consumers
    if readers and all(r and r in quantized and SCHEMES[quantized[r]].int8_static_input for r in readers):
        return None
    if analysis.static_outputs == "shared":
        # PT2E: an output is quantized only where an op sharing its grid runs on int8
        if target.cat_static is not None and all(
            k in quantized and SCHEMES[quantized[k]].int8_static_input for k in target.cat_inputs
        ):
            return target.cat_static  # torch.cat of quantized ops' outputs: one grid for all its inputs
        if any(pt2e_int8(analysis, r, quantized) for r in target.shared_readers):
            return target.out_static
        # X86InductorQuantizer's global config fuses Conv/Linear + nn.ReLU: the ReLU's output is
        # quantized (on its own range) where an int8 op reads it. A per-module config (per-tensor
        # weights) does not match the pattern (the ReLU is another module): float.
        if (
            quantized.get(fqn) == "static_per_channel"
            and target.fused_static is not None
            and any(pt2e_int8(analysis, r, quantized) for r in target.fused_shared_readers)
        ):
            return target.fused_static
        return None
    return target.out_static


def pt2e_int8(analysis: ErrorAnalysis, reader: str, quantized: Mapping[str, str]) -> bool:
    """Whether PT2E's X86InductorQuantizer runs ``reader`` (an op sharing its input's grid, reading
    a statically quantized module's output) on int8, which quantizes that output. Its recipe
    (``_annotate_propagation_quantizable_pattern``): a 2-D pooling whose input comes from a
    quantized op always, whatever reads the pooling's output (a module kept float included);
    a flatten only where a quantizable op (Linear, Conv: quantized or not) reads it; any other
    such op where it carries the output to a module ``quantized`` quantizes statically."""
    module = analysis.submodule(reader)
    if isinstance(module, PT2E_INT8_POOLING_TYPES):
        return True
    flow = analysis.dataflow
    found = flow.quantizer_of.get(reader) if flow is not None else None
    if isinstance(module, nn.Flatten):
        return found is not None
    return found is not None and found in quantized and SCHEMES[quantized[found]].needs_range


def simulate(
    analysis: ErrorAnalysis,
    quantized: Mapping[str, str],
    should_cancel: Callable[[], bool] | None,
    merge: bool = False,
) -> Sqnr:
    """The end-to-end SQNR under ``quantized`` (every output combined, or ``output_key``'s);
    the SQNR of each output on its own is left in ``_last_outputs``."""
    analysis._last_outputs = {}
    unknown = [fqn for fqn in quantized if fqn not in analysis.targets]
    if unknown:
        why = analysis.unsupported.get(unknown[0], "not a quantizable module of this model")
        return Sqnr.undefined(f"'{unknown[0]}' cannot be simulated: {why}")
    for fqn, scheme in quantized.items():
        target = analysis.targets[fqn]
        refused = analysis._ineligible(target, SCHEMES[scheme])
        if refused is not None:
            return Sqnr.undefined(f"'{fqn}' cannot use {scheme}: {refused}")
        if SCHEMES[scheme].needs_range and target.static is None and target.calls:
            return Sqnr.undefined(f"'{fqn}' has no finite calibrated input range, so {scheme} has no qparams")
    if not analysis._ranges_done and any(SCHEMES[s].needs_range for s in quantized.values()):
        analysis._range_pass(lambda done, total: None, should_cancel)
    reference = analysis.reference_outputs()
    if not analysis.probes:
        return Sqnr.undefined("there are no probe batches")
    if not any(reference):
        return Sqnr.undefined("the model's output holds no floating-point tensor")
    prepared = analysis._prepared_reference(reference)
    merged = analysis._merged_probes() if merge else None
    if merged is not None:
        with analysis._float_mode(), swapped(analysis, quantized):
            together = simulate_merged(analysis, merged, prepared, should_cancel)
        if together is not None:
            analysis._last_outputs = together.results()
            return together.result()
    acc = OutputsSqnr()
    memo = analysis._memo
    try:
        with analysis._float_mode(), swapped(analysis, quantized):
            for i, batch in enumerate(analysis.probes):
                _check_cancel(should_cancel)
                analysis._grid.tensors.clear()
                memo.clear()
                try:
                    out = output_tensors(analysis._run(batch, i))
                except SimulationError as exc:  # this plan's simulation, not the model: the report stands
                    return Sqnr.undefined(str(exc))
                acc.add(prepared[i], out)
    finally:
        memo.clear()
        analysis._grid.tensors.clear()
    analysis._last_outputs = acc.results()
    return acc.result()


@contextmanager
def swapped(analysis: ErrorAnalysis, quantized: Mapping[str, str]) -> Iterator[None]:
    """Replace each quantized module's forward (an instance attribute) for the duration."""
    saved: list[tuple[nn.Module, Any]] = []
    try:
        plan_key = tuple(quantized.items())
        swaps = analysis._swaps.get(plan_key)
        if swaps is None:
            swaps = plan_forwards(analysis, quantized)
            if len(analysis._swaps) >= 8:
                analysis._swaps.pop(next(iter(analysis._swaps)))
            analysis._swaps[plan_key] = swaps
        for module, forward in swaps:
            saved.append((module, module.__dict__.get("forward", _MISSING)))
            module.__dict__["forward"] = forward
        if analysis.shared_qparams_ops:
            for fqn, info in analysis.catalog.modules.items():
                if not info.is_leaf or fqn in analysis.targets:
                    continue
                module = analysis.submodule(fqn)
                if isinstance(module, SHARED_QPARAMS_TYPES) and "forward" not in module.__dict__:
                    saved.append((module, _MISSING))
                    module.__dict__["forward"] = _shared_qparams_forward(module.forward, analysis._grid)
        yield
    finally:
        for module, previous in reversed(saved):
            if previous is _MISSING:
                module.__dict__.pop("forward", None)
            else:
                module.__dict__["forward"] = previous


def plan_forwards(analysis: ErrorAnalysis, quantized: Mapping[str, str]) -> list[tuple[nn.Module, Callable[..., Any]]]:
    """(module, simulated forward) for every module ``quantized`` simulates."""
    swaps = []
    grid = analysis._grid if analysis.shared_qparams_ops else None
    for fqn, scheme_name in quantized.items():
        target = analysis.targets[fqn]
        scheme = SCHEMES[scheme_name]
        if scheme.needs_range and target.static is None:
            continue  # never called on the probes: nothing to simulate
        out = output_quantized(analysis, fqn, quantized) if scheme.int8_static_input else None
        key = (fqn, scheme_name, out, grid is not None)
        forward = analysis._forwards.get(key)
        if forward is None:
            ctx = InputContext(target.static, analysis.quant_min, analysis.quant_max, analysis.per_token_min_ndim)
            wq = analysis.quantized_weight(fqn, scheme)
            forward = analysis._forwards[key] = _simulated_forward(
                target.module, target.kind, scheme, ctx, wq, out, grid, analysis._memo, analysis._segments
            )
        swaps.append((target.module, forward))
    return swaps

"""The local pass: one float pass in which every target's forward also simulates each scheme
(and the advice variants) on the input it was given, and the per-module results."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tui_quantreport.engine.quantsim.analysis_base import (
    _MISSING,
    CLIPPED,
    EQUALIZED,
    WEIGHT_STACK_ELEMENTS,
    LocalMeasurement,
    ProgressCallback,
    _check_cancel,
    _one_line,
    _restore_forwards,
    _Target,
)
from tui_quantreport.engine.quantsim.deferred import Deferred
from tui_quantreport.engine.quantsim.kinds import ModuleKind
from tui_quantreport.engine.quantsim.measurer import LastInput, _grouped, _measurer, _measuring_forward, _Variant
from tui_quantreport.engine.quantsim.qparams import (
    F32_MAX,
    fake_quantize_weight,
)
from tui_quantreport.engine.quantsim.schemes import (
    SCHEMES,
    BatchInput,
    InputContext,
    StaticInput,
)
from tui_quantreport.engine.quantsim.sqnr import Scratch, SharedReference, Sqnr

if TYPE_CHECKING:
    from tui_quantreport.engine.quantsim.error_analysis import ErrorAnalysis


def measure_pass(
    analysis: ErrorAnalysis, progress: ProgressCallback, should_cancel: Callable[[], bool] | None, advice: bool
) -> dict[str, LocalMeasurement]:
    """One float pass; each target's forward, swapped for the pass, runs the module as it is
    and then simulates every scheme on the input it was given."""
    accs: dict[str, SharedReference] = {}
    scratch = Scratch()  # one module runs at a time: its temporaries are the next one's
    last = LastInput()  # the previous module's input, quantized: the next reader of it takes them
    deferred = Deferred()  # small Linear modules' calls, measured together at the end of each probe
    saved: list[tuple[nn.Module, Any]] = []
    outputs: list[dict[str, torch.Tensor]] = []
    refused = refusals(analysis)
    stack_weights(analysis, refused)
    try:
        for fqn, target in analysis.targets.items():
            variants = _grouped(variants_of(analysis, target, advice, refused[fqn]))
            accs[fqn] = SharedReference([v.name for v in variants])
            module = target.module
            saved.append((module, module.__dict__.get("forward", _MISSING)))
            noter = failure_noter(analysis, fqn)
            module.__dict__["forward"] = _measuring_forward(
                module.forward, _measurer(target, variants, accs[fqn], scratch, last, deferred, noter), noter
            )
        started = time.perf_counter()
        with analysis._float_mode():
            for i, batch in enumerate(analysis.probes):
                _check_cancel(should_cancel)
                outputs.append(analysis._outputs(analysis._run(batch, i)))
                deferred.flush()
                progress(i + 1, len(analysis.probes))
        analysis._note_pass(time.perf_counter() - started)
    finally:
        last.clear()
        _restore_forwards(saved)
    if analysis._reference is None:
        analysis._reference = outputs
    SharedReference.finish_all(accs.values())
    result: dict[str, LocalMeasurement] = {}
    for fqn, target in analysis.targets.items():
        why = analysis.measure_failures.get(fqn)
        if why is not None:
            undefined = Sqnr.undefined(why)
            result[fqn] = LocalMeasurement(
                fqn,
                target.kind.name,
                {s: undefined for s in SCHEMES},
                undefined if advice and target.kind.quantizes_input else None,
                undefined if advice and target.kind.quantizes_input else None,
                target.range_source,
                target.calls,
                target.rows,
            )
            continue
        result[fqn] = local_result(analysis, target, accs[fqn], advice, refused[fqn])
    for fqn, why in analysis.unsupported.items():
        undefined = Sqnr.undefined(why)
        result[fqn] = LocalMeasurement(fqn, "unsupported", {s: undefined for s in analysis.schemes})
    return result


def failure_noter(analysis: ErrorAnalysis, fqn: str) -> Callable[[Exception], None]:
    def failed(exc: Exception) -> None:
        analysis.measure_failures[fqn] = f"measuring '{fqn}' failed: {_one_line(exc)}"

    return failed


def refusals(analysis: ErrorAnalysis) -> dict[str, dict[str, str | None]]:
    """{target: {scheme: why it cannot take the target, or None}} for every target and measured scheme.

    ``ErrorAnalysis._ineligible`` is a function of the target's kind, weight shape and dtype: asked
    once per distinct triple, not once per module and scheme (a big model repeats a few shapes)."""
    memo: dict[tuple, dict[str, str | None]] = {}
    result: dict[str, dict[str, str | None]] = {}
    for fqn, target in analysis.targets.items():
        w = target.module.weight
        key = (target.kind, tuple(w.shape), w.dtype)
        reasons = memo.get(key)
        if reasons is None:
            reasons = memo[key] = {name: analysis._ineligible(target, SCHEMES[name]) for name in analysis.schemes}
        result[fqn] = reasons
    return result


def variants_of(
    analysis: ErrorAnalysis, target: _Target, advice: bool, refused: dict[str, str | None]
) -> list[_Variant]:
    """What the measure pass simulates for ``target``: every scheme it can run, then (with
    ``advice``) the clipped input range and input-weight equalization. ``refused``: the target's
    row of :func:`refusals`."""
    kind = target.kind
    ctx = InputContext(target.static, analysis.quant_min, analysis.quant_max, analysis.per_token_min_ndim)
    variants: list[_Variant] = []
    for name in analysis.schemes:
        scheme = SCHEMES[name]
        if refused[name] is not None or (scheme.needs_range and target.static is None):
            continue
        try:
            wq = analysis.quantized_weight(target.fqn, scheme)
        except Exception as exc:  # noqa: BLE001 - a library recipe's refusal becomes the pair's reason
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            analysis._failed[(target.fqn, name)] = f"{name}'s weight recipe failed: {type(exc).__name__}: {detail}"
            continue
        variants.append(
            _Variant(
                name, scheme.input_key, scheme.input_function(ctx), wq, (scheme.input_key, ctx), scheme.batch_input(ctx)
            )
        )
    if not advice or not kind.quantizes_input:
        return variants
    wq = analysis.quantized_weight(target.fqn, True)
    if target.clip_range is not None:
        lo, hi = target.clip_range
        clip = StaticInput.from_range(lo, hi, analysis.quant_min, analysis.quant_max)
        variants.append(_Variant(CLIPPED, CLIPPED, clip.apply, wq, form=BatchInput("static", clip)))
    equalize = equalizer(analysis, target)
    if equalize is not None:
        variants.append(equalize)
    return variants


def equalizer(analysis: ErrorAnalysis, target: _Target) -> _Variant | None:
    """Input-weight equalization simulated with its scales s_c = sqrt(r_w,c / r_x,c).

    The input channel c is multiplied by s_c and the weight's input channel c
    divided by it (``torch.ao``'s ``_equalize``); the scaled input is then
    quantized with the range its channels' scaled extremes give, and the
    scaled weight per channel.
    """
    if target.channel_range is None:
        return None
    kind, module = target.kind, target.module
    weight = module.weight.detach().to(torch.float32)
    groups = int(getattr(module, "groups", 1))
    c_lo, c_hi = (t.to(torch.float32) for t in target.channel_range)
    w_range = _weight_input_ranges(weight, kind, groups)
    if w_range is None or w_range.numel() != c_lo.numel():
        return None
    x_range = c_hi - c_lo
    scale = torch.sqrt(w_range / x_range)
    scale = torch.where(torch.isfinite(scale) & (scale > 0), scale, torch.ones_like(scale))
    eq_weight = _scale_weight_inputs(weight, 1 / scale, kind, groups)
    wq = fake_quantize_weight(eq_weight, True, kind.weight_out_axis).to(module.weight.dtype)
    lo = float(torch.minimum(c_lo * scale, c_hi * scale).min())
    hi = float(torch.maximum(c_lo * scale, c_hi * scale).max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    static = StaticInput.from_range(lo, hi, analysis.quant_min, analysis.quant_max)

    def quantize(x: torch.Tensor) -> torch.Tensor:
        axis = kind.input_axis(x.dim())
        shape = [1] * x.dim()
        shape[axis] = -1
        scaled = (x.to(torch.float32) * scale.view(shape)).to(x.dtype)
        return static.apply(scaled)

    # On the last axis (a Linear's input): the same product as data, for the deferred measurements.
    form = BatchInput("static", static, multiplier=scale) if kind.input_last_axis else None
    return _Variant(EQUALIZED, EQUALIZED, quantize, wq, form=form)


def local_result(
    analysis: ErrorAnalysis,
    target: _Target,
    accs: SharedReference,
    advice: bool,
    refused: dict[str, str | None],
) -> LocalMeasurement:
    calls = accs.calls
    sqnr: dict[str, Sqnr] = {}
    beyond = None
    if target.range is not None and all(math.isfinite(v) for v in target.range):
        widest = max(-target.range[0], target.range[1])
        beyond = widest if widest > F32_MAX else None
    for name in analysis.schemes:
        scheme = SCHEMES[name]
        why = refused[name] or analysis._failed.get((target.fqn, name))
        if why is not None:
            sqnr[name] = Sqnr.undefined(why)
        elif beyond is not None and not scheme.facts.weight_only:
            sqnr[name] = Sqnr.undefined(
                f"the input of '{target.fqn}' reaches {beyond:.3g}, beyond float32's range, in which "
                "torch computes int8 qparams"
            )
        elif name in accs.names:
            sqnr[name] = accs.result(name)
        elif analysis._never_called(target):
            sqnr[name] = Sqnr.undefined(analysis._never_called_words(target))
        elif target.range is not None:
            sqnr[name] = Sqnr.undefined(
                f"the input range of '{target.fqn}' is not finite (NaN or infinite values were seen)"
            )
        else:
            sqnr[name] = Sqnr.undefined(f"no calibrated input range for '{target.fqn}'")
    clipped = equalized = None
    if advice and target.kind.quantizes_input:
        clipped = accs.result(CLIPPED) if CLIPPED in accs.names else Sqnr.undefined("no clip range was measured")
        equalized = (
            accs.result(EQUALIZED)
            if EQUALIZED in accs.names
            else Sqnr.undefined("no per-channel input ranges (or channels the weight does not match)")
        )
    return LocalMeasurement(
        target.fqn, target.kind.name, sqnr, clipped, equalized, target.range_source, calls, target.rows
    )


def _weight_input_ranges(weight: torch.Tensor, kind: ModuleKind, groups: int) -> torch.Tensor | None:
    """Range (max - min) of the weight per input channel of the module (all groups laid end to end)."""
    if weight.dim() < 2:
        return None
    if kind.weight_in_axis == 0:
        w = weight.reshape(weight.shape[0], -1)
        return w.amax(dim=1) - w.amin(dim=1)
    out = weight.shape[0]
    if out % groups:
        return None
    w = weight.reshape(groups, out // groups, weight.shape[1], -1)
    return (w.amax(dim=(1, 3)) - w.amin(dim=(1, 3))).reshape(-1)


def _scale_weight_inputs(weight: torch.Tensor, factor: torch.Tensor, kind: ModuleKind, groups: int) -> torch.Tensor:
    """The weight with its input channel c multiplied by ``factor[c]``."""
    if kind.weight_in_axis == 0:
        return weight * factor.view(-1, *([1] * (weight.dim() - 1)))
    out, cin = weight.shape[0], weight.shape[1]
    w = weight.reshape(groups, out // groups, cin, *weight.shape[2:])
    f = factor.reshape(groups, 1, cin, *([1] * (weight.dim() - 2)))
    return (w * f).reshape(weight.shape)


def stack_weights(analysis: ErrorAnalysis, refused: dict[str, dict[str, str | None]] | None = None) -> None:
    """Every scheme's weight recipe run on same-shaped weights together: the targets grouped by weight
    shape, dtype, device and kind once, each group's weights stacked once (in stacks of at most
    :data:`WEIGHT_STACK_ELEMENTS`) and that stack handed to every scheme with a stacked form
    (:meth:`Scheme.weights`; the stack's weights that a scheme refuses or already has, left out).
    A scheme without a stacked form, or that refuses the stack, quantizes each weight when its
    variant is built (a failure is then that weight's reason)."""
    refused = refusals(analysis) if refused is None else refused
    first: dict[
        Any, str
    ] = {}  # the first measured scheme of each weight recipe (schemes sharing one share its weights)
    for name in analysis.schemes:
        first.setdefault(SCHEMES[name].weight_key, name)
    schemes = [(name, SCHEMES[name]) for name in first.values()]
    groups: dict[tuple, list[str]] = {}
    for fqn, target in analysis.targets.items():
        w = target.module.weight
        groups.setdefault((tuple(w.shape), w.dtype, w.device, target.kind), []).append(fqn)
    cached = analysis._weights
    for (shape, _dtype, _device, kind), fqns in groups.items():
        per_stack = max(1, WEIGHT_STACK_ELEMENTS // max(1, math.prod(shape)))
        for start in range(0, len(fqns), per_stack):
            chunk = fqns[start : start + per_stack]
            if len(chunk) < 2:
                continue
            stack: torch.Tensor | None = None
            for name, scheme in schemes:
                key = scheme.weight_key
                todo = [i for i, f in enumerate(chunk) if refused[f][name] is None and (f, key) not in cached]
                if len(todo) < 2:
                    continue
                if stack is None:
                    stack = torch.stack([analysis.targets[f].module.weight.detach() for f in chunk])
                part = stack if len(todo) == len(chunk) else stack[todo]
                try:
                    with torch.no_grad():
                        quantized = scheme.weights(part, kind)
                except Exception:  # noqa: BLE001 - one at a time instead: a refusal is then that weight's reason
                    quantized = None
                if quantized is None:
                    continue
                for i, q in zip(todo, quantized.unbind(0)):
                    cached[(chunk[i], key)] = q


def prepare_weights(analysis: ErrorAnalysis) -> None:
    """Every weight the local pass runs, fake-quantized and kept (what the pass does before its float
    pass; the benchmark times it apart: it is paid once per model, whatever the number of probes)."""
    refused = refusals(analysis)
    stack_weights(analysis, refused)
    for fqn, target in analysis.targets.items():
        variants_of(analysis, target, False, refused[fqn])

"""The local pass's per-module measurement: every scheme variant's output from the float input,
normed against the float output as the float pass runs."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from tui_quantreport.engine.errors import UserError
from tui_quantreport.engine.quantsim import deferred as deferred_module
from tui_quantreport.engine.quantsim.analysis_base import (
    MeasurementCancelled,
    _Target,
    first_tensor,
)
from tui_quantreport.engine.quantsim.deferred import Deferred, DeferredModule, deferrable
from tui_quantreport.engine.quantsim.hostsync import host_reads
from tui_quantreport.engine.quantsim.kinds import _conv as _conv_call
from tui_quantreport.engine.quantsim.kinds import _linear as _linear_call
from tui_quantreport.engine.quantsim.schemes.base import BatchInput
from tui_quantreport.engine.quantsim.sqnr import Scratch, SharedReference


class _Variant(NamedTuple):
    """One simulated form of a module in the measure pass: how its input is quantized
    (``input_key`` names the quantized input, shared by variants that quantize it alike)
    and the fake-quantized weight it runs with. (A named tuple: a big model makes thousands.)"""

    name: str
    input_key: str
    #: None: the float input as it is.
    quantize: Callable[[torch.Tensor], torch.Tensor] | None
    weight: torch.Tensor
    #: Equal for variants of any module whose ``quantize`` is the same function of the input
    #: (a scheme's input key with the module's input context); None: this module's own (advice).
    share: Hashable | None = None
    #: ``quantize`` as data (many modules' inputs quantized in one go: :mod:`.deferred`); None: none.
    form: BatchInput | None = None


class LastInput:
    """The input the previous module measured and its quantized forms by :attr:`_Variant.share`:
    the next module that reads the very same tensor (the same object at the same version: not
    modified in place since) takes them instead of quantizing it again (a block's branches that
    read one normalized tensor). The same function of the same values: the same tensors."""

    __slots__ = ("results", "source", "version")

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.source: torch.Tensor | None = None
        self.version = -1
        self.results: dict[Hashable, torch.Tensor] = {}

    def inputs(
        self,
        x: torch.Tensor,
        steps: Sequence[tuple[str, Hashable | None, Callable[[torch.Tensor], torch.Tensor] | None]],
    ) -> dict[str, torch.Tensor]:
        """{input key: ``x`` quantized} for one module's ``steps`` (key, share, quantize), taking
        what the previous reader of ``x`` quantized alike."""
        if self.source is not x or self.version != x._version:
            self.source, self.version, self.results = x, x._version, {}
        kept = self.results
        out: dict[str, torch.Tensor] = {}
        for key, share, quantize in steps:
            if quantize is None:
                out[key] = x
            elif share is None:
                out[key] = quantize(x)
            else:
                got = kept.get(share)
                if got is None:
                    got = kept[share] = quantize(x)
                out[key] = got
        return out


def _grouped(variants: Sequence[_Variant]) -> list[_Variant]:
    """``variants`` reordered so that those sharing a weight tensor are adjacent (first-seen order)."""
    groups: dict[int, list[_Variant]] = {}
    for v in variants:
        groups.setdefault(id(v.weight), []).append(v)
    return [v for group in groups.values() for v in group]


def _measurer(
    target: _Target,
    variants: Sequence[_Variant],
    acc: SharedReference,
    scratch: Scratch | None = None,
    last: LastInput | None = None,
    deferred: Deferred | None = None,
    failed: Callable[[Exception], None] | None = None,
) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """``measure(x, y)``: every variant's output from the float input ``x``, compared with the float
    output ``y``: :func:`_measure_now`, or, given ``deferred``, for a small float32 ``nn.Linear`` whose
    variants all have an input form, its calls kept to be measured with other modules' alike
    (:mod:`.deferred`; the same values; ``failed`` hears a failure found then)."""
    module = target.module
    if (
        deferred is None
        or not deferred_module.ENABLED
        or not _float32_linear(target, variants)
        or not deferrable(variants, module)
    ):
        return _measure_now(target, variants, acc, scratch, last)
    bias = module.bias.detach() if module.bias is not None else None
    now: list[Callable[[torch.Tensor, torch.Tensor], None]] = []

    def one(x: torch.Tensor, y: torch.Tensor) -> None:
        if not now:  # built on first use: most such modules never measure a call alone
            now.append(_measure_now(target, variants, acc, scratch, last))
        now[0](x, y)

    part = DeferredModule(variants, _weight_groups(variants), acc, bias, one, failed)

    def measure_later(x: torch.Tensor, y: torch.Tensor) -> None:
        if part.broken:
            return
        if deferred.keep(part, x, y):
            return
        deferred.settle(part)  # its kept calls first: its calls reach the accumulator in order
        one(x, y)

    return measure_later


def _float32_linear(target: _Target, variants: Sequence[_Variant]) -> bool:
    """A float32 ``nn.Linear`` whose variants' weights are float32 (one matmul per weight serves them)."""
    module = target.module
    return (
        target.kind.call is _linear_call
        and isinstance(module, nn.Linear)
        and module.weight.dtype == torch.float32
        and all(v.weight.dtype == torch.float32 for v in variants)
    )


def _measure_now(
    target: _Target,
    variants: Sequence[_Variant],
    acc: SharedReference,
    scratch: Scratch | None = None,
    last: LastInput | None = None,
) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """``measure(x, y)`` measuring each call as it comes.

    ``variants`` must be :func:`_grouped` (``acc`` names them in that order). A float32
    ``nn.Linear`` runs the variants that share a weight as one matmul over their
    quantized inputs laid end to end (static per-channel, dynamic, weight-only and the
    clipped range all use the per-channel weight: two or three matmuls in all, not
    four to six); other modules run each variant in turn. The differences from ``y``
    are taken in place and normed per variant in one op per group; nothing is read
    back to the host. ``scratch`` keeps the large temporaries (the stacks of inputs and
    outputs, the float64 copies the norms are taken of) from one call to the next.
    """
    kind, module = target.kind, target.module
    scratch = scratch if scratch is not None else Scratch()
    run = kind.bind(module)
    names = tuple(v.name for v in variants)
    linear = _float32_linear(target, variants)
    groups = _weight_groups(variants)
    bias = module.bias.detach() if linear and module.bias is not None else None
    # Small Linear modules (most of a big model's): every variant in one batched matmul.
    batched = (
        tuple(v.weight for v in variants)
        if linear and len(groups) > 1 and len(variants) * module.weight.numel() <= BATCHED_WEIGHT_ELEMENTS
        else None
    )
    # The transposed weights of one matmul per weight (made on first use where the batched form runs).
    groups_t = [(weight.t(), keys) for weight, keys in groups] if linear and batched is None else []
    conv = (
        kind.call is _conv_call and isinstance(module, nn.modules.conv._ConvNd) and module.weight.dtype == torch.float32
    )

    inputs = _inputs(variants, last)

    def measure(x: torch.Tensor, y: torch.Tensor) -> None:
        if not names:
            acc.add_norms(y.detach(), None, None, scratch)
            return
        y = y.detach()
        if y.dtype != torch.float32:
            y = acc.add_reference(y)
            quantized = inputs(x)
            for v in variants:
                acc.add(v.name, y, run(quantized[v.input_key], v.weight))
            return
        quantized = inputs(x)
        if linear and x.dtype == torch.float32 and x.dim() >= 1:
            if batched is not None and _batched_variants(
                quantized, x, y, variants, batched, groups, bias, acc, scratch
            ):
                return
            if not groups_t:
                groups_t.extend((weight.t(), keys) for weight, keys in groups)
            _linear_variants(quantized, x, y, len(names), groups_t, bias, acc, scratch)
            return
        if conv and x.dim() == module.weight.dim() and x.dtype == torch.float32:
            _conv_variants(quantized, y, groups, run, acc, scratch)
            return
        out = torch.stack([run(quantized[v.input_key], v.weight) for v in variants])
        out.sub_(y)
        acc.add_norms(y, out.reshape(len(names), -1), None, scratch)

    return measure


def _weight_groups(variants: Sequence[_Variant]) -> list[tuple[torch.Tensor, list[str]]]:
    """The variants' weights in order (those sharing one adjacent, :func:`_grouped`), each with the input
    keys it runs on."""
    groups: list[tuple[torch.Tensor, list[str]]] = []
    for v in variants:
        if groups and groups[-1][0] is v.weight:
            groups[-1][1].append(v.input_key)
        else:
            groups.append((v.weight, [v.input_key]))
    return groups


def _inputs(variants: Sequence[_Variant], last: LastInput | None) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
    """``inputs(x)``: {input key: ``x`` quantized} for the variants' input keys (through ``last``, when
    given, which shares them with the previous reader of the same tensor)."""
    quantizers: dict[str, Callable[[torch.Tensor], torch.Tensor] | None] = {}
    shares: dict[str, Hashable | None] = {}
    for v in variants:
        quantizers.setdefault(v.input_key, v.quantize)
        shares.setdefault(v.input_key, v.share)
    steps = tuple(quantizers.items())
    shared_steps = tuple((key, shares[key], quantize) for key, quantize in steps)

    def inputs(x: torch.Tensor) -> dict[str, torch.Tensor]:
        if not x.is_floating_point():
            return dict.fromkeys(quantizers, x)
        if last is None:
            return {key: x if quantize is None else quantize(x) for key, quantize in steps}
        return last.inputs(x, shared_steps)

    return inputs


def _linear_variants(
    quantized: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    count: int,
    groups_t: list[tuple[torch.Tensor, list[str]]],
    bias: torch.Tensor | None,
    acc: SharedReference,
    scratch: Scratch,
) -> None:
    """A float32 Linear's ``count`` variants: those sharing a weight as one matmul over their quantized
    inputs laid end to end (``groups_t``: the transposed weights with their input keys), into one stack
    whose differences from ``y`` are normed per variant."""
    k, n_out = x.shape[-1], y.shape[-1]
    m = y.numel() // n_out if n_out else 0
    # Small stacks (most modules of a big model) skip the kept buffers' bookkeeping.
    kept = scratch if count * m * max(n_out, k) >= Scratch.MIN_ELEMENTS else None
    out = (
        kept.buffer("out", (count, m, n_out), torch.float32, y.device)
        if kept is not None
        else torch.empty((count, m, n_out), dtype=torch.float32, device=y.device)
    )
    row = 0
    for weight_t, keys in groups_t:
        g = len(keys)
        parts = [quantized[key].reshape(-1, k) for key in keys]
        if g == 1:
            rows = parts[0]
        elif kept is not None:
            rows = torch.cat(parts, out=kept.buffer("rows", (g * m, k), torch.float32, y.device))
        else:
            rows = torch.cat(parts)
        # F.linear's own kernel (addmm with the transposed weight), written into the stack.
        if bias is not None:
            torch.addmm(bias, rows, weight_t, out=out[row : row + g].view(-1, n_out))
        else:
            torch.mm(rows, weight_t, out=out[row : row + g].view(-1, n_out))
        row += g
    out.sub_(y.reshape(1, m, n_out))
    acc.add_norms(y, out.view(count, -1), None, kept)


#: A float32 Linear's variants run as one batched matmul (:func:`_batched_variants`) while their weights,
#: laid end to end, hold at most this many elements (where Python's cost per matmul call is what counts).
BATCHED_WEIGHT_ELEMENTS = 1 << 18

#: {(rows, in, out, variants, bias, threads, device): whether ``torch.baddbmm`` gave, element for element,
#: the bits ``torch.addmm`` gives for each variant}: checked on the first call of each key, process-wide.
_BATCHED_EXACT: dict[tuple, bool] = {}


def _batched_variants(
    quantized: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    variants: Sequence[_Variant],
    weights: tuple[torch.Tensor, ...],
    groups: list[tuple[torch.Tensor, list[str]]],
    bias: torch.Tensor | None,
    acc: SharedReference,
    scratch: Scratch,
) -> bool:
    """A float32 Linear's variants as one ``torch.baddbmm`` over their quantized inputs and weights stacked
    (variant i: input ``quantized[input_key]``, weight ``weights[i]``): the output of each variant in one
    call, not one ``addmm`` per weight. Taken only where the batched kernel gives every element the bits
    :func:`_linear_variants` gives (checked once per shape and thread count: on the first call both run and
    the results are compared bit for bit); False (nothing added) where it does not."""
    if not host_reads(y):  # the first call's check reads the result back: host tensors only
        return False
    count, k, n_out = len(variants), x.shape[-1], y.shape[-1]
    m = y.numel() // n_out if n_out else 0
    key = (m, k, n_out, count, bias is not None, torch.get_num_threads(), y.device)
    exact = _BATCHED_EXACT.get(key)
    if exact is False or m == 0:
        return False
    # Stacked as they are (a reshape per input costs more than the copy), then seen as (count, m, k).
    rows = torch.stack(
        [quantized[v.input_key] for v in variants],
        out=scratch.buffer("batched_rows", (count, *x.shape), torch.float32, y.device),
    ).view(count, m, k)
    stacked = torch.stack(weights, out=scratch.buffer("batched_weights", (count, n_out, k), torch.float32, y.device))
    out = scratch.buffer("out", (count, m, n_out), torch.float32, y.device)
    if bias is not None:
        torch.baddbmm(bias, rows, stacked.transpose(1, 2), out=out)
    else:
        torch.bmm(rows, stacked.transpose(1, 2), out=out)
    if exact is None:
        check = torch.empty_like(out)
        row = 0
        for weight, keys in groups:
            g, weight_t = len(keys), weight.t()
            parts = torch.cat([quantized[key].reshape(-1, k) for key in keys]) if g > 1 else quantized[keys[0]]
            target = check[row : row + g].view(-1, n_out)
            if bias is not None:
                torch.addmm(bias, parts.reshape(-1, k), weight_t, out=target)
            else:
                torch.mm(parts.reshape(-1, k), weight_t, out=target)
            row += g
        exact = _BATCHED_EXACT[key] = torch.equal(out.view(torch.int32), check.view(torch.int32))
        if not exact:
            return False
    out.sub_(y.reshape(1, m, n_out))
    acc.add_norms(y, out.view(count, -1), None, scratch)
    return True


def _conv_variants(
    quantized: dict[str, torch.Tensor],
    y: torch.Tensor,
    groups: list[tuple[torch.Tensor, list[str]]],
    run: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    acc: SharedReference,
    scratch: Scratch,
) -> None:
    """A float32 convolution's variants, those sharing a weight as one call (``groups``: weights with input keys)."""
    # Samples are independent in a convolution: the variants sharing a weight run as one
    # call over their quantized inputs laid end to end on the batch axis.
    norms = []
    for weight, keys in groups:
        parts = [quantized[key] for key in keys]
        if len(parts) == 1:
            batch = parts[0]
        elif all(p.is_contiguous() for p in parts):  # laid end to end in a kept buffer
            shape = (sum(p.shape[0] for p in parts), *parts[0].shape[1:])
            batch = torch.cat(parts, out=scratch.buffer("rows", shape, torch.float32, y.device))
        else:
            batch = torch.cat(parts)
        # reshape, not view: a channels_last input gives a channels_last output (strided).
        out = run(batch, weight).reshape(len(keys), *y.shape)
        out.sub_(y)
        norms.append(scratch.vector_norm64(out.reshape(len(keys), -1), 1))
    acc.add_norms(y, None, torch.cat(norms) if len(norms) > 1 else norms[0], scratch)


def _measuring_forward(
    forward: Callable[..., Any],
    measure: Callable[[torch.Tensor, torch.Tensor], None],
    failed: Callable[[Exception], None] | None = None,
):
    """``forward`` as it is, then ``measure(input, output)`` on its first tensor input and tensor output.

    A measurement that raises is handed to ``failed`` (when given) and not tried again on later
    calls: the module's own output is returned all the same, so the float pass (and every other
    module's measurement) goes on.
    """
    broken = [False]

    def measuring(*args, **kwargs):
        y = forward(*args, **kwargs)
        if broken[0]:
            return y
        x = first_tensor(args) if args else first_tensor(kwargs)
        if x is not None and isinstance(y, torch.Tensor):
            if failed is None:
                measure(x, y)
                return y
            try:
                measure(x, y)
            except (MeasurementCancelled, UserError):
                raise
            except Exception as exc:  # one module's simulation: the rest of the report stands
                broken[0] = True
                failed(exc)
        return y

    return measuring

"""The local pass's small float32 Linear modules, measured many calls at a time.

A big model of small Linear modules (large_generated: 1,806 of them on (8, 32) inputs) spends its
local pass on the cost of a dozen tiny ops per module call, not on the elements. Here each such
call's input and output are copied aside (the model may change them in place afterwards) and the
calls of modules alike (the same input and output shapes, the same input forms for the variants,
:class:`~.schemes.base.BatchInput`, the same weight layout, a bias or none) are measured together
when the probe ends, or when a group holds :data:`GROUP_MAX_BYTES`: the inputs quantized each with
its own qparams in one chain of ops, one batched matmul per weight the variants share, the
differences normed in one reduction. The same values as measuring each call as it comes
(:func:`.measurer._measurer`):

- the inputs: :func:`.qparams.fake_quantize_static_segments` and
  :func:`.qparams.fake_quantize_dynamic_segments` (per tensor), the per-token path on the stack
  (each row is quantized alone there too), an equalization multiplier as the same product;
- the matmul: ``torch.baddbmm`` is taken for a shape only where it gives every element the bits
  ``torch.addmm`` (the per-call path's kernel) gives, checked on its first use (else addmm per call);
- the norms: the same float64 reductions of the same rows (below :data:`MAX_OUTPUT_ELEMENTS`, where
  a reduction is not split between threads);
- each module's calls reach its accumulator in call order (its pending calls are measured before a
  call of it that cannot wait, or that belongs to another group).

Only on the host (the first use's check reads values back), for float32 modules, inputs of at most
:data:`MAX_INPUT_ELEMENTS` and weights of at most :data:`MAX_WEIGHT_ELEMENTS` elements: beyond, the
elements cost more than the calls and each call is measured as it comes. A group that cannot be
measured together (a non-finite dynamic range, an error) is measured call by call, each failure the
module's own. Held equal to the per-call path by ``tests/test_deferred_measure.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from tui_quantreport.engine.quantsim.hostsync import host_reads
from tui_quantreport.engine.quantsim.qparams import (
    fake_quantize_dynamic,
    fake_quantize_dynamic_segments,
    fake_quantize_static_segments,
)
from tui_quantreport.engine.quantsim.schemes.base import BatchInput
from tui_quantreport.engine.quantsim.sqnr import norm64_rows

if TYPE_CHECKING:
    from tui_quantreport.engine.quantsim.measurer import _Variant
    from tui_quantreport.engine.quantsim.sqnr import SharedReference

#: Whether the local pass keeps small modules' calls to measure them together (tests switch it off
#: to hold the two paths equal).
ENABLED = True

#: A call is kept for later while its input has at most this many elements.
MAX_INPUT_ELEMENTS = 1 << 13
#: ... and its output times the number of variants fewer than this many (the per-call path's norms
#: are torch's plain float64 reductions there, not split between threads).
MAX_OUTPUT_ELEMENTS = 1 << 15
#: A module's calls are kept only while its weight has at most this many elements.
MAX_WEIGHT_ELEMENTS = 1 << 16
#: A group is measured once its kept inputs and outputs reach this many bytes.
GROUP_MAX_BYTES = 32 << 20

#: {(calls, rows, in, out, bias, threads): whether ``torch.baddbmm`` gave every element the bits
#: ``torch.addmm`` gives call by call}: checked on the first use of each key, process-wide.
_BATCHED_EXACT: dict[tuple, bool] = {}


class DeferredModule:
    """One module's share: its accumulator, its variants' input forms by input key, the weights they
    run with (those sharing one adjacent, as :func:`.measurer._weight_groups` lays them out) and the
    per-call path for a call that cannot wait (``one``)."""

    __slots__ = ("acc", "bias", "broken", "failed", "forms", "group", "keys", "layout", "one", "width", "weights")

    def __init__(
        self,
        variants: Sequence[_Variant],
        groups: Sequence[tuple[torch.Tensor, list[str]]],
        acc: SharedReference,
        bias: torch.Tensor | None,
        one: Callable[[torch.Tensor, torch.Tensor], None],
        failed: Callable[[Exception], None] | None,
    ) -> None:
        forms: dict[str, BatchInput] = {}
        for v in variants:
            assert v.form is not None
            forms.setdefault(v.input_key, v.form)
        self.forms = forms
        self.weights = tuple(weight for weight, _keys in groups)
        self.bias = bias
        self.acc, self.one, self.failed = acc, one, failed
        self.width = len(variants)
        self.broken = False
        self.group: _Group | None = None
        self.keys = tuple(tuple(keys) for _weight, keys in groups)
        layout = (tuple((key, _form_layout(form)) for key, form in forms.items()), self.keys, bias is not None)
        #: The layout as a small number (a group's key is made on every call).
        self.layout = _LAYOUTS.setdefault(layout, len(_LAYOUTS))

    def measure_one(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """The per-call path for one kept call; a failure is this module's (and ends its measuring)."""
        if self.broken:
            return
        try:
            self.one(x, y)
        except Exception as exc:  # noqa: BLE001 - one module's simulation: the rest of the report stands
            self.broken = True
            if self.failed is None:
                raise
            self.failed(exc)


#: Each layout of :class:`DeferredModule` met in this process, numbered.
_LAYOUTS: dict[tuple, int] = {}


def deferrable(variants: Sequence[_Variant], module: torch.nn.Module) -> bool:
    """Whether a float32 ``nn.Linear``'s calls may be kept for later: every variant has an input form
    (with finite static qparams) and the weight is small and on the host."""
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    if not variants or weight.numel() > MAX_WEIGHT_ELEMENTS or not host_reads(weight):
        return False
    for v in variants:
        form = v.form
        if form is None or (form.kind == "static" and not _finite(form)):
            return False
    return True


def _finite(form: BatchInput) -> bool:
    static = form.static
    return static is not None and 0 < static.scale < float("inf") and static.inv_scale < float("inf")


def _form_layout(form: BatchInput) -> tuple:
    """What must be alike in two modules' forms for one op chain to quantize both inputs."""
    if form.kind == "static":
        assert form.static is not None
        return ("static", form.static.quant_min, form.static.quant_max, form.multiplier is not None)
    ctx = form.ctx
    return (form.kind,) if ctx is None else (form.kind, ctx.quant_min, ctx.quant_max, ctx.per_token_min_ndim)


class _Group:
    __slots__ = ("bytes", "key", "parts", "xs", "ys")

    def __init__(self, key: tuple) -> None:
        self.key = key
        self.parts: list[DeferredModule] = []
        self.xs: list[torch.Tensor] = []
        self.ys: list[torch.Tensor] = []
        self.bytes = 0


class Deferred:
    """The kept calls of one local pass, by group."""

    def __init__(self) -> None:
        self._groups: dict[tuple, _Group] = {}
        #: Per group key: the modules of its last measurement (ids, in order) and their weights and
        #: biases stacked, reused while a group holds the same modules in the same order (every probe).
        self._stacks: dict[tuple, tuple[tuple[int, ...], Stacks]] = {}
        self._stacked_bytes = 0

    def keep(self, part: DeferredModule, x: torch.Tensor, y: torch.Tensor) -> bool:
        """Keep one call of ``part``'s module (copies of its input and output) in its group; False
        (nothing kept) for a call that cannot wait: the caller measures it now, after :meth:`settle`."""
        nx, ny = x.numel(), y.numel()
        if (
            x.dtype is not torch.float32
            or y.dtype is not torch.float32
            or not 0 < nx <= MAX_INPUT_ELEMENTS
            or not 0 < ny * part.width < MAX_OUTPUT_ELEMENTS
            or x.dim() == 0
            or not host_reads(y)
        ):
            return False
        key = (part.layout, x.shape, y.shape)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(key)
        if part.group is not group:
            if part.group is not None:
                self._flush(part.group)  # the module's earlier calls first: its calls stay in order
            part.group = group
        group.parts.append(part)
        # Copies: the model may change them in place before they are measured (under no_grad: the pass's).
        group.xs.append(x.clone())
        group.ys.append(y.clone())
        group.bytes += (nx + ny) * 4
        if group.bytes >= GROUP_MAX_BYTES:
            self._flush(group)
        return True

    def settle(self, part: DeferredModule) -> None:
        """Measure ``part``'s kept calls now (before a call of it that cannot wait)."""
        if part.group is not None:
            self._flush(part.group)

    def flush(self) -> None:
        """Measure every kept call (at the end of each probe)."""
        for group in list(self._groups.values()):
            self._flush(group)
        self._groups.clear()

    def _stacked(self, key: tuple, parts: Sequence[DeferredModule]) -> Stacks:
        """:func:`stack_parts` of ``parts``, kept for the group's next measurement of the same modules."""
        ids = tuple(map(id, parts))
        kept = self._stacks.get(key)
        if kept is not None and kept[0] == ids:
            return kept[1]
        stacks = stack_parts(parts)
        size = sum(t.numel() * t.element_size() for t in stacks[0])
        if kept is None and self._stacked_bytes + size <= STACKS_MAX_BYTES:
            self._stacks[key] = (ids, stacks)
            self._stacked_bytes += size
        return stacks

    def _flush(self, group: _Group) -> None:
        parts, xs, ys = group.parts, group.xs, group.ys
        if not parts:
            return
        group.parts, group.xs, group.ys, group.bytes = [], [], [], 0
        for part in parts:
            part.group = None
        if len(parts) == 1:  # nothing to batch: the per-call path's ops, once
            parts[0].measure_one(xs[0], ys[0])
            return
        try:
            norms = measure_together(parts, xs, ys, self._stacked(group.key, parts))
        except Exception:  # noqa: BLE001 - call by call instead: a failure is then the module's own
            norms = None
        if norms is None:
            for part, x, y in zip(parts, xs, ys):
                part.measure_one(x, y)
            return
        signal, noise = norms
        for part, s, n in zip(parts, signal.unbind(0), noise.unbind(0)):
            if not part.broken:
                part.acc.add_taken(s, n)


#: The weights a group's variants run with, each stacked over its calls (one per weight the variants
#: share), and the biases stacked (calls, 1, out), or None.
Stacks = tuple[tuple[torch.Tensor, ...], torch.Tensor | None]

#: A :class:`Deferred` keeps its groups' stacked weights while they total at most this many bytes.
STACKS_MAX_BYTES = 64 << 20


def stack_parts(parts: Sequence[DeferredModule]) -> Stacks:
    """The weights (and biases) of ``parts``' calls, stacked for :func:`measure_together`."""
    weights = tuple(torch.stack([part.weights[j] for part in parts]) for j in range(len(parts[0].weights)))
    biases = [part.bias for part in parts if part.bias is not None]
    return weights, torch.stack(biases).unsqueeze(1) if biases else None


def measure_together(
    parts: Sequence[DeferredModule],
    xs: list[torch.Tensor],
    ys: list[torch.Tensor],
    stacks: Stacks | None = None,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(float64 ``||y||`` per call, float64 ``||y_hat - y||`` per call and variant) for calls of one
    group, as the per-call path takes them; None where the inputs cannot be quantized together.
    ``stacks``: :func:`stack_parts` of ``parts``, where kept."""
    first, count = parts[0], len(parts)
    k, n = xs[0].shape[-1], ys[0].shape[-1]
    if k == 0 or n == 0:
        return None
    m = xs[0].numel() // k
    x = torch.stack(xs).view(count, m, k)
    y = torch.stack(ys).view(count, m * n)
    quantized: dict[str, torch.Tensor] = {}
    for key in first.forms:
        q = quantize_together(x, [part.forms[key] for part in parts], xs[0].dim())
        if q is None:
            return None
        quantized[key] = q
    weights, bias = stacks if stacks is not None else stack_parts(parts)
    columns = []
    for weight, keys in zip(weights, first.keys):
        rows = quantized[keys[0]] if len(keys) == 1 else torch.cat([quantized[key] for key in keys], dim=1)
        out = matmul_together(rows, weight, bias).view(count, len(keys), m * n)
        out.sub_(y.view(count, 1, m * n))
        norms = norm64_rows(out.view(count * len(keys), m * n))
        columns.append(norms.view(count, len(keys)))
    signal = norm64_rows(y)
    return signal, columns[0] if len(columns) == 1 else torch.cat(columns, dim=1)


def quantize_together(x: torch.Tensor, forms: Sequence[BatchInput], ndim: int) -> torch.Tensor | None:
    """``x`` (calls on dim 0) with call i's input quantized by ``forms[i]`` (forms of one layout);
    ``ndim``: the rank of each call's own input. None where it cannot be done in one go."""
    form = forms[0]
    if form.kind == "float":
        return x
    if form.kind == "static":
        statics = [f.static for f in forms if f.static is not None]
        multipliers = [f.multiplier for f in forms if f.multiplier is not None]
        if len(statics) != len(forms) or len(multipliers) not in (0, len(forms)):
            return None
        if multipliers:
            x = x * torch.stack(multipliers).unsqueeze(1)
        scales = [s.scale for s in statics]
        zero_points = [s.zero_point for s in statics]
        inverses = [s.inv_scale for s in statics]
        return fake_quantize_static_segments(
            x, scales, zero_points, inverses, statics[0].quant_min, statics[0].quant_max
        )
    ctx = form.ctx
    if form.kind == "dynamic" and ctx is not None:
        if ctx.per_token_rank(ndim):
            # One scale per row of the last axis: each row is quantized alone, stacked or not.
            return fake_quantize_dynamic(x, ctx.quant_min, ctx.quant_max, per_token=True)
        count, m, k = x.shape
        out = fake_quantize_dynamic_segments(x.view(count * m, k), (m,) * count, ctx.quant_min, ctx.quant_max)
        return out.view(count, m, k) if out is not None else None
    return None


def matmul_together(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``rows[i] @ weight[i].T + bias[i]`` for every call i, with the bits ``torch.addmm`` gives each
    call alone: one ``torch.baddbmm`` where it was found to give them for this shape, else addmm
    call by call."""
    count, r, k = rows.shape
    n = weight.shape[1]
    key = (count, r, k, n, bias is not None, torch.get_num_threads())
    exact = _BATCHED_EXACT.get(key)
    if exact is False:
        return _one_by_one(rows, weight, bias)
    out = _batched(rows, weight, bias)
    if exact is None:
        check = _one_by_one(rows, weight, bias)
        exact = _BATCHED_EXACT[key] = torch.equal(out.view(torch.int32), check.view(torch.int32))
        if not exact:
            return check
    return out


def _batched(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Every call's matmul in one batched kernel."""
    if bias is not None:
        return torch.baddbmm(bias, rows, weight.transpose(1, 2))
    return torch.bmm(rows, weight.transpose(1, 2))


def _one_by_one(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The per-call path's matmul for each call: ``torch.addmm(bias, rows, weight.t())``."""
    out = torch.empty((rows.shape[0], rows.shape[1], weight.shape[1]), dtype=rows.dtype, device=rows.device)
    for i in range(rows.shape[0]):
        if bias is not None:
            torch.addmm(bias[i, 0], rows[i], weight[i].t(), out=out[i])
        else:
            torch.mm(rows[i], weight[i].t(), out=out[i])
    return out

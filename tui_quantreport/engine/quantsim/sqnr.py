"""Signal-to-quantization-noise ratio, the one number every measurement reports.

    SQNR = 20 log10(||y|| / ||y - y_hat||)   (dB; torchao's ``compute_error``)

with ``y`` the float result and ``y_hat`` the quantized one, both taken over
all probe batches together (norms of the concatenation). Where it has no
finite value, :class:`Sqnr` carries ``db=None`` and a reason that starts with
"SQNR undefined: ".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from tui_quantreport.engine.quantsim import fused
from tui_quantreport.engine.quantsim.hostsync import host_reads

UNDEFINED = "SQNR undefined: "


@dataclass(frozen=True)
class Sqnr:
    """A measured SQNR in dB, or ``db=None`` with the reason it is undefined.

    ``infinite`` is true when the quantized result equals the float one exactly
    (no error at all): ``db`` is then None too (JSON has no infinity), and
    sorting treats it as the best possible value.
    """

    db: float | None
    reason: str = ""
    infinite: bool = False

    @property
    def defined(self) -> bool:
        return self.db is not None

    @property
    def value(self) -> float:
        """``db``, or +inf for an exact result, or -inf when undefined (for sorting)."""
        if self.db is not None:
            return self.db
        return math.inf if self.infinite else -math.inf

    def __str__(self) -> str:
        return f"{self.db:.1f} dB" if self.db is not None else self.reason

    @classmethod
    def undefined(cls, why: str) -> Sqnr:
        return cls(None, UNDEFINED + why)


def gain(better: Sqnr, base: Sqnr) -> float | None:
    """``better - base`` in dB; None when either is undefined (an exact result counts as no gain left)."""
    if better.db is None or base.db is None:
        return None
    return better.db - base.db


#: Whether the fused norm is tried (numba installed and not disabled: decided once per process).
_FUSED = fused.ENABLED

LOG10_E = 10.0 / math.log(10.0)  # dB per natural-log unit of a power ratio


def log_norm(t: torch.Tensor) -> torch.Tensor:
    """``ln ||t||`` as a 0-d float64 tensor on ``t``'s device, without overflow for finite data.

    -inf for an all-zero tensor; NaN or +inf when ``t`` holds NaN or infinite values.
    Lower-precision floats are accumulated in float64 (squares of float32 values fit);
    a float64 tensor whose norm overflows is scaled by its max abs first (this is the
    only case that reads a value back to the host).
    """
    if t.dtype == torch.float64:
        n = torch.linalg.vector_norm(t)
        if not host_reads(t):
            # Both ways, chosen on the device (no read back): the same value as the branch below.
            m = t.abs().amax() if t.numel() else t.new_zeros(())
            ok = torch.isfinite(m) & (m > 0)
            safe = torch.where(ok, m, torch.ones_like(m))
            scaled = torch.log(safe) + torch.log(torch.linalg.vector_norm(t / safe))
            return torch.where(torch.isfinite(n) | ~ok, torch.log(n), scaled)
        if not bool(torch.isfinite(n)):
            m = t.abs().amax()
            if bool(torch.isfinite(m)) and bool(m > 0):
                return torch.log(m) + torch.log(torch.linalg.vector_norm(t / m))
        return torch.log(n)
    return torch.log(torch.linalg.vector_norm(t, dtype=torch.float64))


def _log_sum_squares(log_norms: list[torch.Tensor]) -> float:
    """``ln(sum_i ||t_i||^2)`` from the ``ln ||t_i||`` (finite whenever the norms are)."""
    return float(torch.logsumexp(2.0 * torch.stack(log_norms), dim=0))


class SqnrAccumulator:
    """Running ``||y||^2`` and ``||y - y_hat||^2`` over batches, kept on the device.

    Each call is scaled by the larger max abs of ``y`` and ``y_hat`` before the
    difference and the norms are taken (in float64), and the sums are taken of
    logarithms: finite data gives a finite SQNR whatever its magnitude (float64
    values near 1e300 included). Nothing is read back to the host until :meth:`result`.
    """

    __slots__ = ("calls", "noise", "signal")

    def __init__(self) -> None:
        self.signal: list[torch.Tensor] = []
        self.noise: list[torch.Tensor] = []
        self.calls = 0

    def add(self, reference: torch.Tensor, approx: torch.Tensor) -> None:
        self.append(*self.terms(reference, approx))

    def append(self, signal: torch.Tensor, noise: torch.Tensor) -> None:
        """One call's ``ln ||y||`` and ``ln ||y - y_hat||`` (:meth:`terms`: two accumulators of the same
        reference and approximation share them)."""
        self.signal.append(signal)
        self.noise.append(noise)
        self.calls += 1

    @staticmethod
    def terms(reference: torch.Tensor, approx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What :meth:`add` folds in: ``ln ||y||`` and ``ln ||y - y_hat||`` (0-d float64)."""
        y = reference.detach().to(torch.float64)
        yhat = approx.detach().to(torch.float64)
        m = torch.maximum(y.abs().amax(), yhat.abs().amax()) if y.numel() else y.new_zeros(())
        # m finite and > 0: divide by it; otherwise (zeros, NaN, inf) keep the data as it is.
        ok = torch.isfinite(m) & (m > 0)
        m = torch.where(ok, m, torch.ones_like(m))
        log_m = torch.log(m)
        return log_m + log_norm(y / m), log_m + log_norm(y / m - yhat / m)

    @staticmethod
    def prepared_terms(reference: PreparedReference, approx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`terms` for a reference folded in before (the float output of a probe batch,
        compared with many plans): the same operations on the same values, so the same terms,
        without redoing the reference's share of them on every call.

        On the CPU only (it reads the two extremes back to the host to pick the scale);
        elsewhere, or for empty tensors, it is :meth:`terms`.
        """
        y = reference.reference
        if not host_reads(y) or not host_reads(approx) or not y.numel() or y.shape != approx.shape:
            return SqnrAccumulator.terms(y, approx)
        yhat = approx.detach().to(torch.float64)
        fresh = yhat is not approx and yhat.data_ptr() != approx.data_ptr()
        m = torch.maximum(reference.abs_max, yhat.abs().amax())
        scaled = reference.scaled(m)
        log_m = scaled.log_m
        yhat = yhat.div_(scaled.m) if fresh else yhat / scaled.m
        return scaled.signal, log_m + log_norm(torch.sub(scaled.y, yhat, out=yhat) if fresh else scaled.y - yhat)

    def result(self, what: str = "output") -> Sqnr:
        if self.calls == 0:
            return Sqnr.undefined("never called on the probe batches")
        return _from_logs(_log_sum_squares(self.signal), _log_sum_squares(self.noise), what)


@dataclass(frozen=True)
class _Scaled:
    """The reference divided by one scale ``m``, and what :meth:`SqnrAccumulator.add` derives from it."""

    m: torch.Tensor
    log_m: torch.Tensor
    y: torch.Tensor
    signal: torch.Tensor


class PreparedReference:
    """One float output, kept for :meth:`SqnrAccumulator.prepared_terms`: in float64, its max abs,
    and (for the last scale used, which is its own max abs whenever the quantized output does
    not exceed it) its scaled copy and ``ln ||y||`` term."""

    __slots__ = ("_last", "abs_max", "reference")

    def __init__(self, reference: torch.Tensor) -> None:
        self.reference = reference.detach().to(torch.float64)
        self.abs_max = self.reference.abs().amax() if self.reference.numel() else self.reference.new_zeros(())
        self._last: tuple[float, _Scaled] | None = None

    def scaled(self, m: torch.Tensor) -> _Scaled:
        """The reference's share of :meth:`SqnrAccumulator.add` for the larger max abs ``m``
        (one host read of ``m``, to find it in the cache)."""
        # m finite and > 0: divide by it; otherwise (zeros, NaN, inf) keep the data as it is.
        value = float(m)
        key = value if math.isfinite(value) and value > 0 else 1.0
        last = self._last
        if last is not None and last[0] == key:
            return last[1]
        ok = torch.isfinite(m) & (m > 0)
        m = torch.where(ok, m, torch.ones_like(m))
        log_m = torch.log(m)
        y = self.reference / m
        scaled = _Scaled(m, log_m, y, log_m + log_norm(y))
        self._last = (key, scaled)
        return scaled


class Scratch:
    """Buffers kept from one call to the next, by slot, dtype and device (grown when too small).

    A measurement pass takes the same large temporaries on every module call (the float64
    copy a norm is taken of, a stack of outputs); allocated afresh, each costs the operating
    system's page faults on memory just released (about 1 ms for 3 MB here, more than the
    work on it). Callers use a slot only until they take the next one of that slot.
    """

    #: Below this many elements a fresh tensor is cheaper than the bookkeeping (the allocator
    #: reuses small blocks without page faults).
    MIN_ELEMENTS = 1 << 15

    def __init__(self) -> None:
        self._buffers: dict[tuple, torch.Tensor] = {}

    def buffer(self, slot: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A contiguous tensor of ``shape`` (uninitialised) backed by the slot's buffer (a fresh
        one below :attr:`MIN_ELEMENTS`)."""
        n = math.prod(shape)
        if n < self.MIN_ELEMENTS:
            return torch.empty(shape, dtype=dtype, device=device)
        key = (slot, dtype, device)
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < n:
            buf = self._buffers[key] = torch.empty(n, dtype=dtype, device=device)
        return buf[:n].view(shape)

    def vector_norm64(self, t: torch.Tensor, dim: int | None = None) -> torch.Tensor:
        """``torch.linalg.vector_norm(t, dim=dim, dtype=torch.float64)``, the same value: a
        contiguous float32/16 ``t`` is cast into a kept float64 buffer (what the dtype argument
        does into a new tensor), then normed by the same kernel."""
        if (
            t.numel() < self.MIN_ELEMENTS
            or t.dtype == torch.float64
            or not t.is_contiguous()
            or not t.is_floating_point()
        ):
            return torch.linalg.vector_norm(t, dim=dim, dtype=torch.float64)
        if _FUSED:
            fused_norm = fused.norm64(t, dim)  # the same value, read where it lies (no float64 copy)
            if fused_norm is not None:
                return fused_norm
        buf = self.buffer("norm64", tuple(t.shape), torch.float64, t.device)
        buf.copy_(t)
        return torch.linalg.vector_norm(buf, dim=dim)


def norm64_rows(t: torch.Tensor) -> torch.Tensor:
    """``torch.linalg.vector_norm(t, dim=1, dtype=torch.float64)`` of a 2-D float32 ``t``: the same
    values, through the fused kernel where it runs (no float64 copy)."""
    if _FUSED and t.is_contiguous():
        out = fused.norm64(t, 1)
        if out is not None:
            return out
    return torch.linalg.vector_norm(t, dim=1, dtype=torch.float64)


class SharedReference:
    """One reference, several approximations of it, over calls.

    Fast path (:meth:`add_norms`): a float32 reference and the stacked differences
    ``y - y_hat`` of every name; their norms are taken in float64 (squares of float32
    values cannot overflow there) and kept as 0-d / 1-d tensors on the device.
    General path (:meth:`add_reference`, then :meth:`add` per name): ``ln ||.||`` per
    call (:func:`log_norm`, safe for float64 data near its largest value).
    :meth:`result` sums the squares in log space; a NaN or infinity anywhere makes the
    sum non-finite, which is reported. Nothing is read back until then.
    """

    def __init__(self, names) -> None:
        self.names = tuple(names)
        self.signal: list[torch.Tensor] = []
        self.noise: dict[str, list[torch.Tensor]] = {name: [] for name in self.names}
        self._raw_signal: list[torch.Tensor] = []
        self._raw_noise: list[torch.Tensor] = []
        self._sums: dict[str, float] | None = None

    @property
    def calls(self) -> int:
        return len(self.signal) + len(self._raw_signal)

    def add_norms(
        self,
        reference: torch.Tensor,
        differences: torch.Tensor | None,
        norms: torch.Tensor | None = None,
        scratch: Scratch | None = None,
    ) -> None:
        """One call: ``reference`` (float32) and either ``differences`` of shape (len(names), n),
        row i being ``y - y_hat`` for ``names[i]``, or their float64 ``norms`` already taken
        (neither when there are no names). ``scratch``: buffers for the float64 copies."""
        if scratch is None:
            self._raw_signal.append(torch.linalg.vector_norm(reference, dtype=torch.float64))
        else:
            self._raw_signal.append(scratch.vector_norm64(reference))
        if differences is not None:
            self._raw_noise.append(
                torch.linalg.vector_norm(differences, dim=1, dtype=torch.float64)
                if scratch is None
                else scratch.vector_norm64(differences, 1)
            )
        elif norms is not None:
            self._raw_noise.append(norms)
        self._sums = None

    def add_taken(self, signal: torch.Tensor, noise: torch.Tensor) -> None:
        """One call's float64 norms, taken elsewhere as :meth:`add_norms` takes them: ``||y||`` (0-d)
        and ``||y - y_hat||`` per name (1-d, in :attr:`names` order)."""
        self._raw_signal.append(signal)
        self._raw_noise.append(noise)
        self._sums = None

    def add_reference(self, reference: torch.Tensor) -> torch.Tensor:
        """Fold in one call's reference; returns it as float32 (float64 kept) for :meth:`add`."""
        y = reference.detach()
        if y.dtype not in (torch.float32, torch.float64):
            y = y.float()
        self.signal.append(log_norm(y))
        self._sums = None
        return y

    def add(self, name: str, y: torch.Tensor, approx: torch.Tensor) -> None:
        self.noise[name].append(log_norm(y - approx.detach()))

    def _finish(self) -> dict[str, float]:
        if self._sums is None:
            if not self.calls:
                self._sums = {}
                return self._sums
            keys = ["", *self.names]
            parts = []
            if self._raw_signal:
                signal = torch.stack(self._raw_signal).unsqueeze(1)
                if self.names and len(self._raw_noise) == len(self._raw_signal):
                    signal = torch.cat([signal, torch.stack(self._raw_noise)], dim=1)
                elif self.names:
                    signal = torch.cat(
                        [
                            signal,
                            torch.full(
                                (len(signal), len(self.names)), math.nan, dtype=signal.dtype, device=signal.device
                            ),
                        ],
                        dim=1,
                    )
                parts.append(torch.log(signal))
            if self.signal:
                nan = torch.full_like(self.signal[0], math.nan)
                columns = [self.signal] + [
                    self.noise[n] if len(self.noise[n]) == len(self.signal) else [nan] * len(self.signal)
                    for n in self.names
                ]
                parts.append(
                    torch.stack([torch.stack(c) for c in columns], dim=1).to(parts[0].device if parts else nan.device)
                )
            logs = torch.cat(parts) if len(parts) > 1 else parts[0]
            sums = torch.logsumexp(2.0 * logs, dim=0).tolist()
            self._sums = dict(zip(keys, sums))
        return self._sums

    @staticmethod
    def finish_all(refs: Iterable[SharedReference]) -> None:
        """:meth:`_finish` for many references at once (a model's modules after a local pass): those
        on the fast path alone (:meth:`add_norms` with names) with the same number of calls and names
        are taken together, their per-call norms stacked into one ``(refs, calls, 1 + names)`` tensor,
        its logs summed over the calls in one ``logsumexp`` and read back in one transfer (not seven
        small ops and a read per module). Each column is the same elements through the same
        element-wise ops as :meth:`_finish` takes them: the same doubles
        (``tests/test_quantsim_finish_all.py``). The others are left to :meth:`_finish`."""
        groups: dict[tuple, list[SharedReference]] = {}
        for ref in refs:
            calls = len(ref._raw_signal)
            if ref._sums is not None or ref.signal or not ref.names or not calls or len(ref._raw_noise) != calls:
                continue
            groups.setdefault((calls, len(ref.names), ref._raw_signal[0].device), []).append(ref)
        for (calls, n, _device), group in groups.items():
            if len(group) < 2:
                continue
            signal = torch.stack([t for ref in group for t in ref._raw_signal]).view(len(group), calls, 1)
            noise = torch.stack([t for ref in group for t in ref._raw_noise]).view(len(group), calls, n)
            logs = torch.log(torch.cat([signal, noise], dim=2))
            rows = torch.logsumexp(2.0 * logs, dim=1).tolist()
            for ref, row in zip(group, rows):
                ref._sums = dict(zip(["", *ref.names], row))

    def result(self, name: str, what: str = "output") -> Sqnr:
        sums = self._finish()
        if not sums or name not in self.names:
            return Sqnr.undefined("never called on the probe batches")
        return _from_logs(sums[""], sums[name], what)


def _from_logs(signal: float, noise: float, what: str) -> Sqnr:
    """The SQNR from ``ln ||y||^2`` and ``ln ||y - y_hat||^2`` (sums over calls)."""
    if math.isnan(signal) or signal == math.inf:
        return Sqnr.undefined(f"the float {what} holds NaN or infinite values")
    if math.isnan(noise) or noise == math.inf:
        return Sqnr.undefined(f"the quantized {what} holds NaN or infinite values")
    if signal == -math.inf:
        return Sqnr.undefined(f"the float {what} is all zeros")
    if noise == -math.inf:
        return Sqnr(None, UNDEFINED + f"the quantized {what} equals the float {what} exactly (no error)", True)
    return Sqnr(LOG10_E * (signal - noise))


def sqnr_db(reference: torch.Tensor, approx: torch.Tensor) -> Sqnr:
    """SQNR of ``approx`` against ``reference``: 20 log10(||y|| / ||y - y_hat||), in float64 (finite for finite data)."""
    acc = SqnrAccumulator()
    acc.add(reference, approx)
    return acc.result()

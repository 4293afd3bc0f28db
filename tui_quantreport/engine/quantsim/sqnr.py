"""Signal-to-quantization-noise ratio, the one number every measurement reports.

    SQNR = 20 log10(||y|| / ||y - y_hat||)   (dB; torchao's ``compute_error``)

with ``y`` the float result and ``y_hat`` the quantized one, both taken over
all probe batches together (norms of the concatenation). Where it has no
finite value, :class:`Sqnr` carries ``db=None`` and a reason that starts with
"SQNR undefined: ".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

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


class SqnrAccumulator:
    """Running sums of ``||y||^2`` and ``||y - y_hat||^2`` over batches, kept on the device.

    Nothing is read back to the host until :meth:`result`.
    """

    __slots__ = ("_device", "approx_finite", "calls", "noise", "ref_finite", "signal")

    def __init__(self) -> None:
        self.signal: torch.Tensor | None = None
        self.noise: torch.Tensor | None = None
        self.ref_finite: torch.Tensor | None = None
        self.approx_finite: torch.Tensor | None = None
        self.calls = 0

    def add(self, reference: torch.Tensor, approx: torch.Tensor) -> None:
        y = reference.detach().to(torch.float64)
        d = y - approx.detach().to(torch.float64)
        signal = torch.linalg.vector_norm(y) ** 2
        noise = torch.linalg.vector_norm(d) ** 2
        ref_ok = torch.isfinite(signal)
        approx_ok = torch.isfinite(noise)
        if self.signal is None:
            self.signal, self.noise, self.ref_finite, self.approx_finite = signal, noise, ref_ok, approx_ok
        else:
            self.signal = self.signal + signal
            self.noise = self.noise + noise
            self.ref_finite = self.ref_finite & ref_ok
            self.approx_finite = self.approx_finite & approx_ok
        self.calls += 1

    def result(self, what: str = "output") -> Sqnr:
        if self.calls == 0 or self.signal is None:
            return Sqnr.undefined("never called on the probe batches")
        if not bool(self.ref_finite):
            return Sqnr.undefined(f"the float {what} holds NaN or infinite values")
        if not bool(self.approx_finite):
            return Sqnr.undefined(f"the quantized {what} holds NaN or infinite values")
        signal, noise = float(self.signal), float(self.noise)
        if signal == 0.0:
            return Sqnr.undefined(f"the float {what} is all zeros")
        if noise == 0.0:
            return Sqnr(None, UNDEFINED + f"the quantized {what} equals the float {what} exactly (no error)", True)
        return Sqnr(10.0 * math.log10(signal / noise))


class SharedReference:
    """One reference, several approximations of it: ``||y||`` taken once per call,
    ``||y - y_hat||`` once per name and call, each a 0-d float32 tensor kept on the
    device (nothing read back per call). :meth:`result` squares and sums them in
    float64; a NaN or infinity anywhere makes the sum non-finite, which is reported.
    """

    def __init__(self, names) -> None:
        self.names = tuple(names)
        self.signal: list[torch.Tensor] = []
        self.noise: dict[str, list[torch.Tensor]] = {name: [] for name in self.names}
        self._sums: dict[str, float] | None = None

    @property
    def calls(self) -> int:
        return len(self.signal)

    def add_reference(self, reference: torch.Tensor) -> torch.Tensor:
        """Fold in one call's reference; returns it as float32 for :meth:`add`."""
        y = reference.detach()
        if y.dtype != torch.float32:
            y = y.float()
        self.signal.append(torch.linalg.vector_norm(y))
        self._sums = None
        return y

    def add(self, name: str, y: torch.Tensor, approx: torch.Tensor) -> None:
        self.noise[name].append(torch.linalg.vector_norm(y - approx.detach()))

    def _finish(self) -> dict[str, float]:
        if self._sums is None:
            keys = ["", *self.names]
            rows = [self.signal] + [self.noise[n] for n in self.names]
            if not self.signal:
                self._sums = {}
                return self._sums
            norms = torch.stack([torch.stack(r) if r else torch.full_like(self.signal[0], math.nan) for r in rows])
            sums = (norms.double() ** 2).sum(dim=1).tolist()
            self._sums = dict(zip(keys, sums))
        return self._sums

    def result(self, name: str, what: str = "output") -> Sqnr:
        sums = self._finish()
        if not sums or not self.noise.get(name):
            return Sqnr.undefined("never called on the probe batches")
        return _from_sums(sums[""], sums[name], what)


def _from_sums(signal: float, noise: float, what: str) -> Sqnr:
    if not math.isfinite(signal):
        return Sqnr.undefined(f"the float {what} holds NaN or infinite values")
    if not math.isfinite(noise):
        return Sqnr.undefined(f"the quantized {what} holds NaN or infinite values")
    if signal == 0.0:
        return Sqnr.undefined(f"the float {what} is all zeros")
    if noise == 0.0:
        return Sqnr(None, UNDEFINED + f"the quantized {what} equals the float {what} exactly (no error)", True)
    return Sqnr(10.0 * math.log10(signal / noise))


def sqnr_db(reference: torch.Tensor, approx: torch.Tensor) -> Sqnr:
    """SQNR of ``approx`` against ``reference``: 20 log10(||y|| / ||y - y_hat||), in float64."""
    acc = SqnrAccumulator()
    acc.add(reference, approx)
    return acc.result()

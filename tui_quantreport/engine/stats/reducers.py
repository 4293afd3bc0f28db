"""Pluggable statistics: what a detector (or a later analysis) asks calibration to keep.

Every observed point records its *core* statistics (calls, shapes, axis, the
per-call and overall ranges, channel min and max; see :mod:`.accumulator`).
Anything more is a :class:`Reducer`, declared by whoever needs it in its
:class:`~.snapshot.PointRequest`: the outlier detector declares
``OutlierRatio(0.975)`` beside its own code, the dead-channel detector
``ZeroCalls()`` beside its. A reducer is a small frozen (hashable) dataclass
whose fields are its arguments, so two detectors asking for the same one at the
same point share it, and it is computed once.

A reducer's life during one calibration, per point:

1. :meth:`Reducer.contribution`: once per *distinct tensor* per batch, from the
   shared :class:`~.accumulator.TensorSummary` (channel min, max, the
   percentiles the reducers asked for, via :attr:`Reducer.percentiles`) and, if
   it must, the ``(A, C, B)`` tensor itself (``tensor()``: built only when called). Arrays stay where the tensor is
   (NumPy for host tensors, torch on the device): no host read per batch.
2. :meth:`Reducer.start` / :meth:`Reducer.update`: fold one call's contribution
   into running arrays, in place, with :class:`Ops` (O(channels) memory).
3. :meth:`Reducer.freeze`: once at the end, to a frozen :class:`Reduced`
   result of CPU tensors.

Results merge exactly (:meth:`Reduced.merge`: two calibrations on disjoint
batches give the result of all batches) and have a plain serializable form,
so stats can be saved without pickle (e.g. with safetensors):

- ``reducer.spec()`` is JSON-able (``{"kind": ..., **fields}``) and
  :func:`reducer_from_spec` rebuilds the reducer;
- ``result.state()`` returns ``(tensors, meta)``: a ``dict[str, torch.Tensor]``
  of CPU tensors and a JSON-able ``dict``; ``type(result).from_state(tensors,
  meta)`` rebuilds it. :meth:`Reducer.result_from_state` finds the type.

The same ``state() / from_state()`` pair exists on
:class:`~.accumulator.PointStats`, :class:`~.snapshot.WeightRange` and
:class:`~.snapshot.Stats` (keys of nested tensors are prefixed with their
path, e.g. ``"points/3/fc1/pre/channel_min"``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import namedtuple
from collections.abc import Callable
from dataclasses import asdict, fields
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

import numpy as np
import torch
from typing_extensions import Self

if TYPE_CHECKING:
    from tui_quantreport.engine.stats.accumulator import TensorSummary

#: One array library's in-place operations, so one reducer serves both paths:
#: NumPy for host tensors (a small op costs a third of a torch op there) and torch
#: for device tensors (which never leave the device).
Ops = namedtuple("Ops", "minimum maximum add copy counts to_cpu")
HOST_OPS = Ops(
    np.minimum,
    np.maximum,
    np.add,
    np.copy,
    lambda a: a.astype(np.float32),
    torch.from_numpy,
)
DEVICE_OPS = Ops(
    torch.minimum,
    torch.maximum,
    torch.add,
    torch.clone,
    lambda t: t.to(torch.float32),
    lambda t: t.cpu(),
)

R = TypeVar("R", bound="Reduced")


class Reduced(Protocol):
    """A reducer's frozen result: CPU tensors, exact merge, plain serializable state."""

    def merge(self, other: Self) -> Self: ...

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]: ...

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Self: ...


_KINDS: dict[str, type[Reducer]] = {}


class Reducer(ABC):
    """One statistic kept per observation point (subclasses are frozen dataclasses)."""

    #: The name in :meth:`spec`; unique among reducers.
    kind: ClassVar[str]
    #: The type of :meth:`freeze`'s result (it has ``from_state``).
    result: ClassVar[Any]
    #: True when :meth:`contribution` reads only the summary's arrays, elementwise (never
    #: ``tensor()``), and :meth:`start`/:meth:`update` keep arrays (or a list of arrays) that
    #: follow the contribution's shape: the calibration may then apply it to many tensors'
    #: summaries stacked along a leading axis at once (see :mod:`.grouped`).
    elementwise: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if kind is not None:
            known = _KINDS.get(kind)
            if known is not None and known.__qualname__ != cls.__qualname__:
                raise RuntimeError(f"two reducers declare the kind {kind!r}")
            _KINDS[kind] = cls

    @property
    def percentiles(self) -> tuple[float, ...]:
        """Per-channel percentiles this reducer reads from the shared summary."""
        return ()

    @abstractmethod
    def contribution(self, summary: TensorSummary, tensor: Callable[[], torch.Tensor]) -> Any:
        """This call's contribution, from the tensor's summary (``tensor()``: the ``(A, C, B)`` float32 view, if needed)."""

    @abstractmethod
    def start(self, contribution: Any, ops: Ops) -> Any:
        """The running state after the first call (copies: contributions are shared)."""

    @abstractmethod
    def update(self, state: Any, contribution: Any, ops: Ops) -> Any:
        """Fold one more call in, in place where possible; returns the state."""

    @abstractmethod
    def freeze(self, state: Any, ops: Ops) -> Any:
        """The frozen result (CPU tensors): the only host read, once per calibration."""

    def spec(self) -> dict[str, Any]:
        """This reducer as JSON-able data: its kind and its fields."""
        return {"kind": self.kind, **asdict(self)}  # type: ignore[call-overload]

    def result_from_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Any:
        return self.result.from_state(tensors, meta)


def reducer_from_spec(spec: dict[str, Any]) -> Reducer:
    """The reducer :meth:`Reducer.spec` described.

    Reducers register themselves when their class is defined: the detectors' reducers when
    :mod:`tui_quantreport.engine.detectors` is imported (the statistics never import the detectors;
    whoever reads saved statistics imports them first, as :mod:`~..statsfile` does).
    """
    kind = spec.get("kind")
    cls = _KINDS.get(str(kind))
    if cls is None:
        raise ValueError(f"unknown statistic {kind!r}")
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in spec.items() if k in names})


def encode_float(x: float) -> float | str:
    """A float as JSON can hold it: non-finite values as strings."""
    return x if math.isfinite(x) else repr(x)


def decode_float(x: float | str) -> float:
    return float(x)

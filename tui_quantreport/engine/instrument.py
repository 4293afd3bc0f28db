"""How a calibration instruments a model: observing wrappers and hooks, and the eval switch
(the state a calibration must give back is :mod:`~.model_state`'s).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
from torch import nn

from tui_quantreport.engine.batches import ObserverFault, first_tensor
from tui_quantreport.engine.observer import _Observer
from tui_quantreport.engine.stats import (
    Point,
    PointLayout,
    PointRequest,
)

_END = object()
_TENSOR = torch.Tensor


def _guarded_hook(run):
    """Run a hook body; an exception there is ours, not the model's, and says so."""
    try:
        run()
    except Exception as exc:
        raise ObserverFault(f"tui-quantreport failed while observing: {type(exc).__name__}: {exc}") from exc


def _pop_into(stack: list[str]) -> Callable[..., None]:
    """A forward hook that leaves the module it returns from (and returns None: a value would
    replace the module's output)."""

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        stack.pop()

    return hook


def _fault(exc: Exception) -> ObserverFault:
    return ObserverFault(f"tui-quantreport failed while observing: {type(exc).__name__}: {exc}")


def _no_op(*args: Any) -> None:
    return None


def _global_hooks() -> bool:
    """Whether module hooks registered for every module exist (torch.nn.modules.module.register_module_*)."""
    from torch.nn.modules import module as torch_module

    return any(getattr(torch_module, name, None) for name in ("_global_forward_hooks", "_global_forward_pre_hooks"))


def _wrappable(module: nn.Module) -> bool:
    """Whether ``module`` can be observed through an instance-level ``forward``."""
    if isinstance(module, torch.jit.ScriptModule):
        return False
    return not (
        module._forward_hooks or module._forward_pre_hooks or getattr(module, "_forward_hooks_always_called", None)
    )


def _nothing() -> None:
    return None


def _signature(value: Any) -> Any:
    """What a batch looks like to the model: tensors by shape, dtype, device and layout; plain
    values by value; None for anything else (then no earlier layout is reused)."""
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.dtype, value.device, value.layout, value.is_quantized)
    if value is None or isinstance(value, (bool, int, float, str)):
        return (type(value).__name__, value)
    if isinstance(value, Mapping):
        items = tuple((key, _signature(item)) for key, item in value.items())
        return None if any(sig is None for _, sig in items) else (type(value).__name__, items)
    if isinstance(value, (tuple, list)):
        parts = tuple(_signature(item) for item in value)
        return None if any(sig is None for sig in parts) else (type(value).__name__, parts)
    return None


class _Layouts(NamedTuple):
    """Channel-axis decisions a calibration's first batch discovered, and what they were made for."""

    signature: Any
    #: point -> its axis override (request.axis, request.axis_rule), for every point observed
    overrides: dict[Point, tuple[int | None, str]]
    decisions: dict[Point, Any]
    #: The points that batch held, with what their tensors looked like, and every point's layout.
    steady: dict[Point, tuple[torch.Size, torch.dtype, int, tuple[int, ...]]]
    layouts: dict[Point, PointLayout]

    @classmethod
    def learned(
        cls,
        signature: Any,
        plan: Mapping[Point, PointRequest],
        decisions: Mapping[Point, Any],
        steady: Mapping[Point, tuple[torch.Size, torch.dtype, int, tuple[int, ...]]],
        layouts: Mapping[Point, PointLayout],
    ) -> _Layouts:
        overrides = {point: (request.axis, request.axis_rule) for point, request in plan.items()}
        return cls(signature, overrides, dict(decisions), dict(steady), dict(layouts))

    def fits(self, signature: Any, plan: Mapping[Point, PointRequest]) -> bool:
        """Whether a calibration starting with a batch like ``signature`` would discover the same:
        the same input shapes, and only points these decisions were made among, with the same overrides."""
        if signature is None or signature != self.signature:
            return False
        overrides = self.overrides
        return all(overrides.get(point, _END) == (request.axis, request.axis_rule) for point, request in plan.items())


class _Holder:
    """The observer of the calibration running now, read by the kept wrappers at each call."""

    observer: _Observer | None = None


def _wrapper(
    holder: _Holder,
    fqn: str,
    module: nn.Module,
    forward: Callable[..., Any],
    pre: tuple[Point, ...],
    post: tuple[Point, ...],
    propagate: tuple[str, ...],
    traced: bool,
) -> Callable[..., Any]:
    """The observing forward of one module: discovery (first batch), pre points, forward, post points."""

    def observed_forward(*args: Any, **kwargs: Any) -> Any:
        observer = holder.observer
        if observer is None or not observer.active:
            return forward(*args, **kwargs)
        discovering = traced and observer.tracker.discovering
        try:
            if discovering:
                observer.tracker.consume(fqn, args, kwargs)
            if pre:
                tensor = (
                    args[0]
                    if args and type(args[0]) is _TENSOR
                    else (first_tensor(args) if args else first_tensor(kwargs))
                )
                for point in pre:
                    observer.observe(point, tensor)
        except ObserverFault:
            raise
        except Exception as exc:
            raise _fault(exc) from exc
        output = forward(*args, **kwargs)
        try:
            if discovering:
                observer.tracker.produce(fqn, args, kwargs, output)
            if propagate and observer._last_input:  # only a summary computed at once propagates
                for name in propagate:
                    observer.propagate(name, forward, output)
            if post:
                tensor = output if type(output) is _TENSOR else first_tensor(output)
                for point in post:
                    observer.observe(point, tensor)
        except ObserverFault:
            raise
        except Exception as exc:
            raise _fault(exc) from exc
        return output

    functools.update_wrapper(observed_forward, forward)
    return observed_forward


def _hook(
    module: nn.Module, observer: _Observer, pre: tuple[Point, ...], post: tuple[Point, ...], propagate: tuple[str, ...]
) -> list:
    """Observe ``module`` with forward hooks (where an instance-level forward will not do)."""
    forward = module.forward

    def pre_hook(module, args, kwargs):
        if observer.active:
            tensor = first_tensor(args) if args else first_tensor(kwargs)
            _guarded_hook(lambda: [observer.observe(point, tensor) for point in pre])

    def post_hook(module, args, output):
        if observer.active:
            tensor = first_tensor(output)

            def run() -> None:
                for fqn in propagate:
                    observer.propagate(fqn, forward, output)
                for point in post:
                    observer.observe(point, tensor)

            _guarded_hook(run)

    handles = []
    if pre:
        handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
    if post or propagate:
        handles.append(module.register_forward_hook(post_hook))
    return handles


_SETATTR = nn.Module.__setattr__
_TRAIN = nn.Module.train


def _eval(model: nn.Module) -> None:
    """``model.eval()``; where no module's class overrides ``train`` or ``__setattr__``, only the
    modules still in training mode have their flag set (the same modules ``train`` visits, the
    same end state: ``nn.Module.train`` only sets each module's ``training`` flag)."""
    modules = list(model.modules())
    if type(model).eval is not nn.Module.eval or any(
        type(m).train is not _TRAIN or type(m).__setattr__ is not _SETATTR for m in modules
    ):
        model.eval()
        return
    for module in modules:
        if module.__dict__.get("training") is not False:
            module.training = False

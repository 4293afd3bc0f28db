"""The state running a model may change and a measurement must give back: every module's
training flag, and the buffers and attributes of ``torch.ao``'s observers and stubs.

Calibration and the simulation both run the user's model and leave it as it was; they share this
(the model layer: it knows what a model is, not who runs it).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from tui_quantreport.engine.modules import is_quant_helper


def freeze_model_state(
    model: nn.Module, modules: list[nn.Module] | None = None, helpers: list[nn.Module] | None = None
) -> Callable[[], None]:
    """Remember what calibration could change, and return a function that restores it.

    ``modules`` (default: all of ``model``'s) and ``helpers`` (the torch.ao observers and stubs
    among them) may be given by a caller that keeps them. A training flag or helper attribute
    still holding its remembered value is not set again (each ``Module.__setattr__`` costs more
    than a small model's ops); observer buffers are copied back in place.
    """
    if modules is None:
        modules = list(model.modules())
    if helpers is None:
        helpers = [module for module in modules if is_quant_helper(module)]
    flags = [module.training for module in modules]
    buffers = [
        (module, name, buffer, buffer.detach().clone())
        for module in helpers
        for name, buffer in module._buffers.items()
        if buffer is not None
    ]
    attributes = [
        (module, {k: v for k, v in vars(module).items() if not k.startswith("_") and not isinstance(v, torch.Tensor)})
        for module in helpers
    ]

    def restore() -> None:
        for module, flag in zip(modules, flags):
            if module.training != flag:
                module.training = flag
        # In place: a tensor the user holds (model.obs.min_val) is the module's buffer again,
        # with its old values, also after an observer resized it (a fresh per-channel observer).
        with torch.no_grad():
            for module, name, original, copy in buffers:
                if original.shape != copy.shape:
                    original.resize_(copy.shape)
                original.copy_(copy)
                module._buffers[name] = original
        for module, attrs in attributes:
            now = vars(module)
            for name, value in attrs.items():
                if now.get(name, _UNSET) is not value:
                    setattr(module, name, value)

    return restore


_UNSET = object()

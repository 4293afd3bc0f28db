"""Module kinds the simulation can quantize.

A :class:`ModuleKind` says how to run a module with a substituted input and
weight (its functional form), which weight axis holds the output channels
(per-channel weight scales) and which the input channels (equalization), which
axis of its input tensor holds the features, and whether activations can be
quantized at all (an embedding's input is indices).

Axes and capabilities come from the catalog's weighted-layer registry
(``engine/module_kinds.py``, ``WEIGHTED_KINDS``); this file adds, per kind, the
functional form (:data:`SIMULATED`). A module is simulated only when its class's ``forward`` is one the kind knows
(the plain and QAT forwards): a subclass with its own forward (a fused
conv-batchnorm QAT module, say) would not be reproduced by the functional form,
so it is reported as unsupported instead of being measured wrongly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tui_quantreport.engine.module_kinds import weighted_kind


def _linear(module: Any, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return F.linear(x, w, module.bias)


def _conv(module: Any, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return module._conv_forward(x, w, module.bias)  # handles padding modes and groups


def _hf_conv1d(module: Any, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    # transformers.pytorch_utils.Conv1D: weight is (in_features, out_features).
    size_out = x.shape[:-1] + (w.shape[1],)
    out = (
        torch.addmm(module.bias, x.reshape(-1, x.shape[-1]), w)
        if module.bias is not None
        else x.reshape(-1, x.shape[-1]) @ w
    )
    return out.reshape(size_out)


def _embedding(module: Any, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return F.embedding(
        x, w, module.padding_idx, module.max_norm, module.norm_type, module.scale_grad_by_freq, module.sparse
    )


@dataclass(frozen=True)
class ModuleKind:
    """How the simulation treats one kind of weighted module.

    The axes come from the catalog's :class:`~tui_quantreport.engine.modules.WeightedKind`
    (one definition of what a layer is); the simulation adds its functional form.
    """

    name: str
    #: The module with a substituted input and weight.
    call: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
    weight_out_axis: int = 0
    weight_in_axis: int | None = 1
    #: The feature axis of the input tensor: last (Linear-like) or 1 (convolutions).
    input_last_axis: bool = True
    #: Whether the input is a float activation that can be quantized (False: indices).
    quantizes_input: bool = True
    #: Backends with a dynamic int8 kernel (only there is "dynamic" recommended).
    dynamic_backends: frozenset[str] = frozenset()
    #: The class forwards this functional form reproduces.
    forwards: tuple[Callable, ...] = field(default=(), repr=False)

    @property
    def dynamic_kernel(self) -> bool:
        return bool(self.dynamic_backends)

    def bind(self, module: Any) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """``call`` with the module's attributes read once (for the per-batch path)."""
        if self.call is _linear:
            bias = module.bias
            return lambda x, w: F.linear(x, w, bias)
        if self.call is _conv:
            conv, bias = module._conv_forward, module.bias
            return lambda x, w: conv(x, w, bias)
        call = self.call
        return lambda x, w: call(module, x, w)

    def supports(self, module: nn.Module) -> bool:
        """The module's forward is one this kind reproduces (not a subclass's own)."""
        return type(module).forward in self.forwards

    def input_axis(self, ndim: int) -> int:
        if ndim <= 1:
            return 0
        return ndim - 1 if self.input_last_axis else 1


def _qat_forwards(*names: str) -> tuple[Callable, ...]:
    try:
        import torch.ao.nn.qat as nnqat
    except ImportError:  # a torch build without torch.ao
        return ()
    return tuple(getattr(nnqat, n).forward for n in names if hasattr(nnqat, n))


def _hf_conv1d_forwards() -> tuple[Callable, ...]:
    import sys

    module = sys.modules.get("transformers.pytorch_utils")  # only if the model already imported it
    conv1d = getattr(module, "Conv1D", None) if module is not None else None
    return (conv1d.forward,) if conv1d is not None else ()


#: The simulation's functional form per catalog kind (``WeightedKind.name``), and the
#: class forwards it reproduces. Kinds missing here are reported as unsupported.
SIMULATED: dict[str, tuple[Callable, Callable[[], tuple[Callable, ...]]]] = {
    "linear": (_linear, lambda: (nn.Linear.forward, *_qat_forwards("Linear"))),
    "multihead_attention_out_proj": (_linear, lambda: (nn.Linear.forward,)),
    "conv": (
        _conv,
        lambda: (nn.Conv1d.forward, nn.Conv2d.forward, nn.Conv3d.forward, *_qat_forwards("Conv1d", "Conv2d", "Conv3d")),
    ),
    "hf_conv1d": (_hf_conv1d, _hf_conv1d_forwards),
    "embedding": (_embedding, lambda: (nn.Embedding.forward,)),
}


def kind_of(module: nn.Module) -> ModuleKind | None:
    """The simulation's view of ``module``: None when the catalog has no weighted kind for it."""
    weighted = weighted_kind(module)
    if weighted is None:
        return None
    call, forwards = SIMULATED.get(weighted.name, (None, lambda: ()))
    key = (id(weighted), weighted.name, call, forwards)
    cached = _KINDS.get(key)
    if cached is None or cached[0] is not weighted:
        cached = _KINDS[key] = (weighted, _kind(weighted, call, forwards()))
    return cached[1]


#: ModuleKind per registered kind (built once: a model has thousands of modules of a few kinds).
_KINDS: dict[tuple, tuple[object, ModuleKind]] = {}


def _kind(weighted, call, forwards) -> ModuleKind:
    return ModuleKind(
        name=weighted.name,
        call=call if call is not None else _unsupported,
        weight_out_axis=weighted.out_axis,
        weight_in_axis=weighted.in_axis,
        input_last_axis=weighted.layout == "last",
        quantizes_input=weighted.in_axis is not None,
        dynamic_backends=frozenset(weighted.dynamic_backends),
        forwards=forwards if call is not None else (),
    )


def _unsupported(module: nn.Module, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    raise NotImplementedError(f"no functional form for {type(module).__name__}")

"""Module kinds the simulation can quantize: one entry each, in one place.

A :class:`ModuleKind` says how to run a module with a substituted input and
weight (its functional form), which weight axis holds the output channels
(per-channel weight scales) and which the input channels (equalization), which
axis of its input tensor holds the features, and whether activations can be
quantized at all (an embedding's input is indices). Adding a kind (say, a
library's own linear layer) is one entry in :data:`KINDS`.

A module is simulated only when its class's ``forward`` is one the kind knows
(the plain and QAT forwards): a subclass with its own forward (a fused
conv-batchnorm QAT module, say) would not be reproduced by the functional form,
so it is reported as unsupported instead of being measured wrongly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


def _linear(module: nn.Module, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return F.linear(x, w, module.bias)


def _conv(module: nn.Module, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return module._conv_forward(x, w, module.bias)  # handles padding modes and groups


def _hf_conv1d(module: nn.Module, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    # transformers.pytorch_utils.Conv1D: weight is (in_features, out_features).
    size_out = x.shape[:-1] + (w.shape[1],)
    out = torch.addmm(module.bias, x.reshape(-1, x.shape[-1]), w) if module.bias is not None else x.reshape(-1, x.shape[-1]) @ w
    return out.reshape(size_out)


def _embedding(module: nn.Module, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return F.embedding(x, w, module.padding_idx, module.max_norm, module.norm_type, module.scale_grad_by_freq, module.sparse)


@dataclass(frozen=True)
class ModuleKind:
    """How the simulation treats one kind of weighted module."""

    name: str
    #: Classes of this kind, matched by isinstance (or by qualified name for optional libraries).
    types: tuple[type[nn.Module], ...] = ()
    qualnames: tuple[str, ...] = ()
    #: The module with a substituted input and weight.
    call: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] = _linear
    weight_out_axis: int = 0
    weight_in_axis: int = 1
    #: The feature axis of the input tensor: "last" (Linear-like) or 1 (convolutions).
    input_last_axis: bool = True
    #: Whether the input is a float activation that can be quantized (False: indices).
    quantizes_input: bool = True
    #: Whether torch ships a dynamic int8 kernel (only then is "dynamic" recommended).
    dynamic_kernel: bool = False
    #: Extra class forwards that behave like the base one (QAT variants).
    forwards: tuple[Callable, ...] = field(default=(), repr=False)

    def matches(self, module: nn.Module) -> bool:
        if self.types and isinstance(module, self.types):
            return True
        return bool(self.qualnames) and any(
            f"{c.__module__}.{c.__qualname__}" in self.qualnames for c in type(module).__mro__
        )

    def supports(self, module: nn.Module) -> bool:
        """The module's forward is one this kind reproduces (not a subclass's own)."""
        forward = type(module).forward
        known = {t.forward for t in self.types} | set(self.forwards)
        if self.qualnames and not self.types:
            return any(
                f"{c.__module__}.{c.__qualname__}" in self.qualnames and c.forward is forward
                for c in type(module).__mro__
            )
        return forward in known

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


KINDS: tuple[ModuleKind, ...] = (
    ModuleKind("linear", (nn.Linear,), call=_linear, dynamic_kernel=True, forwards=_qat_forwards("Linear")),
    ModuleKind("conv", (nn.Conv1d, nn.Conv2d, nn.Conv3d), call=_conv, input_last_axis=False,
               forwards=_qat_forwards("Conv1d", "Conv2d", "Conv3d")),
    ModuleKind("hf_conv1d", qualnames=("transformers.pytorch_utils.Conv1D",), call=_hf_conv1d,
               weight_out_axis=1, weight_in_axis=0, dynamic_kernel=False),
    ModuleKind("embedding", (nn.Embedding,), call=_embedding, weight_out_axis=0, weight_in_axis=1,
               quantizes_input=False),
)


def kind_of(module: nn.Module) -> ModuleKind | None:
    """The kind of ``module``, or None when the simulation does not quantize it."""
    for kind in KINDS:
        if kind.matches(module):
            return kind
    return None

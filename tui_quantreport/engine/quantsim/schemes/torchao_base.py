"""What the schemes built on torchao's own primitives share: torchao imported lazily (when
a scheme is measured or exported, never at import), Linear-only eligibility with the
shape rules torchao enforces, weights returned in the module's dtype."""

from __future__ import annotations

import functools
import importlib
import math

import torch

from tui_quantreport.engine.core.library import quietly_importing, require_torchao
from tui_quantreport.engine.errors import UserError
from tui_quantreport.engine.quantsim.kinds import ModuleKind
from tui_quantreport.engine.quantsim.schemes.base import LINEAR_KINDS, InputContext, Scheme

#: The weight dtypes torchao's quantization primitives accept.
TORCHAO_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@functools.cache
def torchao_missing() -> str | None:
    """Why torchao cannot be used here (None when torchao 0.18 imports), importing it once, quietly
    (its optional-kernel load warnings are not the report's output)."""
    try:
        require_torchao("measuring torchao's number formats")
    except UserError as exc:
        return str(exc)
    try:
        with quietly_importing():
            for module in PROTOTYPE_MODULES:  # they register their enums with torch's pytree on import
                importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - a broken install is a reason, in one line
        return f"torchao's prototype formats failed to import: {type(exc).__name__}: {exc}"
    return None


#: The torchao modules the schemes' recipes and configs use beyond ``torchao.quantization``.
PROTOTYPE_MODULES = (
    "torchao.prototype.mx_formats.mx_tensor",
    "torchao.prototype.mx_formats.nvfp4_tensor",
    "torchao.prototype.mx_formats.inference_workflow",
    "torchao.prototype.quantization.int4.inference_workflow",
    "torchao.prototype.quantization.quant_api",
    "torchao.prototype._nf4tensor_api",
)


class TorchaoScheme(Scheme):
    """A scheme whose recipe comes from torchao (Linear modules only unless it says otherwise)."""

    #: Catalog kinds it takes.
    kinds: tuple[str, ...] = LINEAR_KINDS
    #: Both weight dims must be multiples of this (0: no rule), with the rule's owner.
    dims_multiple: int = 0
    #: The input dim K must be a multiple of the group size (block formats).
    block: int | None = None
    #: Whether its real kernel (here or on CUDA) only takes bfloat16 models.
    bf16_only: bool = False

    def eligible(
        self, kind: ModuleKind, weight_shape: tuple[int, ...] | None = None, dtype: torch.dtype | None = None
    ) -> str | None:
        refused = self.unsupported(kind)
        if refused is not None:
            return refused
        missing = torchao_missing()
        if missing is not None:
            return missing
        if dtype is not None and dtype not in TORCHAO_DTYPES:
            return f"torchao's {self.name} recipe takes float32, bfloat16 or float16 weights, not {str(dtype).removeprefix('torch.')}"
        if kind.name not in self.kinds:
            names = ", ".join(k.replace("_", " ") for k in self.kinds)
            return f"torchao's {self.name} config quantizes {names} modules only, not {kind.name.replace('_', ' ')}"
        if weight_shape is None:
            return None
        if len(weight_shape) != 2 and not (len(weight_shape) == 4 and "conv" in self.kinds):
            return f"{self.name} needs a 2-D weight, not {len(weight_shape)}-D"
        n, k = weight_shape[0], weight_shape[1]
        if self.dims_multiple and (n % self.dims_multiple or k % self.dims_multiple):
            return (
                f"{self.name} needs both weight dims to be multiples of {self.dims_multiple}, "
                f"not {n} x {k} (torchao would skip or refuse it)"
            )
        group = self.block if self.block is not None else self.facts.weight.group_size
        if group and k % group:
            return f"K = {k} in-features is not a multiple of the group size {group} (torchao would skip it)"
        return self.shape_reason(n, k)

    def shape_reason(self, n: int, k: int) -> str | None:
        """A further shape rule of this scheme's kernel (None: none applies)."""
        return None

    def input(self, x: torch.Tensor, ctx: InputContext) -> torch.Tensor:
        return x


def per_group_bits(bits: int, group: int, stored_bits_per_group: int) -> float:
    """``bits + stored / group``: values plus the scale (and zero point) stored per group."""
    return bits + stored_bits_per_group / group


def per_tensor_extra(weight_shape: tuple[int, ...], bits: int = 32) -> float:
    """One per-tensor value of ``bits`` spread over the weight."""
    numel = math.prod(weight_shape)
    return bits / numel if numel else 0.0

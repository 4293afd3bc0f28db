"""The float model every measurement is held against.

A model prepared for quantization-aware training (``prepare_qat`` /
``prepare_qat_fx``) runs fake quantizers on its weights and activations: its
output is already quantized, so it is not the float reference. The reference
is then a copy of the model with every fake quantizer's fake quantization and
observer disabled (``torch.ao.quantization.disable_fake_quant`` /
``disable_observer``): the QAT-trained float weights, run in float. The model
the user gave is not changed.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

#: What a plain float model is called as a reference.
FLOAT_MODEL = "the float model"


def _fake_quantizers(model: nn.Module) -> list[nn.Module]:
    try:
        from torch.ao.quantization import FakeQuantizeBase
    except ImportError:  # a torch build without torch.ao: nothing can be fake-quantizing
        return []
    return [m for m in model.modules() if isinstance(m, FakeQuantizeBase)]


def _enabled(fake_quant: nn.Module) -> bool:
    flag: Any = getattr(fake_quant, "fake_quant_enabled", None)
    try:
        return bool(flag is None or int(flag[0]) == 1)
    except (TypeError, IndexError, ValueError):
        return True


def float_reference(model: nn.Module) -> tuple[nn.Module, str]:
    """``(model to measure against, what it is)``: ``model`` itself when nothing in it fake-quantizes,
    else a copy with fake quantization and observers disabled."""
    running = [m for m in _fake_quantizers(model) if _enabled(m)]
    if not running:
        return model, FLOAT_MODEL
    try:
        reference = copy.deepcopy(model)
    except Exception as exc:  # noqa: BLE001 - a model that cannot be copied: said in the report
        return model, (
            f"the model as given, with its {len(running)} fake quantizers running (it could not be copied "
            f"to disable them: {type(exc).__name__})"
        )
    from torch.ao.quantization import disable_fake_quant, disable_observer

    reference.apply(disable_fake_quant)
    reference.apply(disable_observer)
    return reference, (
        f"the float model: a copy of this QAT model with its {len(running)} fake quantizers and their "
        "observers disabled"
    )

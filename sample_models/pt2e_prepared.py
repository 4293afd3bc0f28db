"""A small conv/linear model exported with torch.export and prepared by torchao's PT2E flow.

``torch.export.export(model, example).module()`` gives a GraphModule whose
``conv1``, ``fc1``… are plain containers of weights; the work is done by
``aten.conv2d``/``aten.linear`` nodes that remember their original module in
``node.meta["nn_module_stack"]``. ``prepare_pt2e`` with an
``X86InductorQuantizer`` then inserts observers between the nodes:

- the default x86 config (static activations, per-channel weights) everywhere,
- a static config with a *per-tensor* weight observer on ``conv2`` (the
  per-channel detector flags it),
- ``fc2`` left unannotated (kept in float).

(X86InductorQuantizer refuses to mix static and dynamic configs in one model; a
dynamic one, ``get_default_x86_inductor_quantization_config(is_dynamic=True)``,
annotates every Linear's input as dynamic, and the dynamic-vs-static detector
reads that.) The calibration images grow brighter from batch to batch, so every
activation range moves: the dynamic-vs-static detector recommends dynamic
quantization for the Linear layers (and notes it for the convolutions, which have
no dynamic kernel).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

DESCRIPTION = (
    "torch.export graph prepared by torchao's PT2E flow (X86InductorQuantizer; conv2 with per-tensor "
    "weights, fc2 left float): exercises exported graphs"
)


class SmallConvLinear(nn.Module):
    """(N, 3, 16, 16) images -> (N, 10) logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16, 32)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(32, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.relu2(self.conv2(self.relu1(self.conv1(images))))
        x = self.flatten(self.pool(x))
        return self.fc2(self.relu3(self.fc1(x)))


def _images(generator: torch.Generator, batch_size: int, brightness: float) -> torch.Tensor:
    coarse = torch.rand(batch_size, 3, 4, 4, generator=generator)
    images = F.interpolate(coarse, size=(16, 16), mode="bilinear", align_corners=False)
    return brightness * (images + 0.05 * torch.randn(images.shape, generator=generator))


def float_model() -> nn.Module:
    """The float model before export (the same weights every time)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SmallConvLinear()
    return model.eval()


def per_tensor_weight_config():
    """X86InductorQuantizer's default config with per-tensor symmetric int8 weights (tests use it too)."""
    from torchao.quantization.pt2e.observer import MinMaxObserver
    from torchao.quantization.pt2e.quantizer import QuantizationSpec
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        get_default_x86_inductor_quantization_config,
    )

    config = get_default_x86_inductor_quantization_config()
    weight = QuantizationSpec(
        dtype=torch.int8,
        quant_min=-128,
        quant_max=127,
        qscheme=torch.per_tensor_symmetric,
        is_dynamic=False,
        observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12),
    )
    return type(config)(config.input_activation, config.output_activation, weight, config.bias, config.is_qat)


def build_model() -> nn.Module:
    """Export the float model and prepare it with X86InductorQuantizer (observers inserted, not converted)."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    example = (_images(torch.Generator().manual_seed(0), 2, 1.0),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The batch axis stays dynamic: calibration batches need not match the example's size.
        batch = torch.export.Dim("batch", min=1)
        graph = torch.export.export(float_model(), example, dynamic_shapes={"images": {0: batch}}).module()
        quantizer = X86InductorQuantizer()
        quantizer.set_global(get_default_x86_inductor_quantization_config())
        quantizer.set_module_name_qconfig("conv2", per_tensor_weight_config())
        quantizer.set_module_name_qconfig("fc2", None)
        return prepare_pt2e(graph, quantizer)


def calibration_batches(num_batches: int = 16, batch_size: int = 8) -> list[torch.Tensor]:
    """Images (batch, 3, 16, 16) whose brightness grows from batch to batch."""
    generator = torch.Generator().manual_seed(1)
    return [_images(generator, batch_size, 0.25 * 1.5**i) for i in range(num_batches)]

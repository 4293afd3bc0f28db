"""A CIFAR-sized conv net, fused and prepared with a per-tensor weight qconfig.

Three Conv-BatchNorm-ReLU blocks and a two-layer classifier. BatchNorm statistics
are warmed up on a few synthetic batches, then Conv+BN+ReLU and Linear+ReLU are
fused (``torch.ao.quantization.fuse_modules``) and the model is prepared for
eager-mode static quantization with ``default_weight_observer``: a per-tensor
weight observer. All backends quantize Conv2d and Linear weights per channel,
so the per-channel detector flags every conv and linear layer, including the
float modules inside the fused ``ConvReLU2d`` and ``LinearReLU``.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.ao.quantization import (
    DeQuantStub,
    MinMaxObserver,
    QConfig,
    QuantStub,
    default_weight_observer,
    fuse_modules,
    prepare,
)

DESCRIPTION = (
    "CIFAR-sized conv net (fused Conv-BN-ReLU blocks, Linear head), torch.ao-prepared with a per-tensor "
    "weight observer: exercises the per-channel detector"
)

PER_TENSOR_QCONFIG = QConfig(
    activation=MinMaxObserver.with_args(dtype=torch.quint8),
    weight=default_weight_observer,  # per-tensor symmetric qint8
)


def _conv_block(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    block = nn.Sequential()
    block.add_module("conv", nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False))
    block.add_module("bn", nn.BatchNorm2d(out_channels))
    block.add_module("relu", nn.ReLU())
    return block


class SmallConvNet(nn.Module):
    """(N, 3, 32, 32) images -> (N, 10) logits."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.quant = QuantStub()
        self.features = nn.Sequential()
        self.features.add_module("block1", _conv_block(3, 16))  # 32x32
        self.features.add_module("block2", _conv_block(16, 32, stride=2))  # 16x16
        self.features.add_module("pool", nn.MaxPool2d(2))  # 8x8
        self.features.add_module("block3", _conv_block(32, 64, stride=2))  # 4x4
        self.features.add_module("avgpool", nn.AdaptiveAvgPool2d(1))
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential()
        self.classifier.add_module("fc1", nn.Linear(64, 64))
        self.classifier.add_module("relu", nn.ReLU())
        self.classifier.add_module("fc2", nn.Linear(64, num_classes))
        self.dequant = DeQuantStub()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.quant(images)
        x = self.flatten(self.features(x))
        return self.dequant(self.classifier(x))


FUSION_GROUPS = [
    ["features.block1.conv", "features.block1.bn", "features.block1.relu"],
    ["features.block2.conv", "features.block2.bn", "features.block2.relu"],
    ["features.block3.conv", "features.block3.bn", "features.block3.relu"],
    ["classifier.fc1", "classifier.relu"],
]


def _images(generator: torch.Generator, batch_size: int) -> torch.Tensor:
    """Smooth natural-ish images, normalized per channel like CIFAR inputs."""
    coarse = torch.rand(batch_size, 3, 8, 8, generator=generator)
    images = F.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)
    images = images + 0.05 * torch.randn(images.shape, generator=generator)
    mean = torch.tensor([0.49, 0.48, 0.45]).view(1, 3, 1, 1)
    std = torch.tensor([0.25, 0.24, 0.26]).view(1, 3, 1, 1)
    return (images - mean) / std


def build_model() -> nn.Module:
    """Warm up BatchNorm, fuse, then prepare (observers inserted, not converted); eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SmallConvNet()
    generator = torch.Generator().manual_seed(7)
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(_images(generator, 32))
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization deprecation notices
        model = fuse_modules(model, FUSION_GROUPS)
        model.qconfig = PER_TENSOR_QCONFIG
        prepare(model, inplace=True)
    return model.eval()  # the observers prepare() inserted start in training mode


def calibration_batches(num_batches: int = 16, batch_size: int = 8) -> list[torch.Tensor]:
    """Images (batch, 3, 32, 32)."""
    generator = torch.Generator().manual_seed(1)
    return [_images(generator, batch_size) for _ in range(num_batches)]

"""Showcase: a two-stream RGB + thermal image classifier, prepared with torch.ao.

The model is a small conv + MLP network: an RGB stem and a thermal stem, each
pooled, flattened and projected by a Linear layer, then fused (LayerNorm) and
classified by a two-layer MLP head. It is prepared for static quantization in
eager mode with a per-tensor weight observer, and its calibration stream is a
day of camera frames, so that every detector has something to say:

- per-channel: every Conv2d / Linear carries a qconfig whose weight observer is
  per-tensor (``default_weight_observer``), although the backends quantize
  these weights per channel.
- dynamic vs static: the RGB exposure rises fiftyfold from dawn to noon, so
  the RGB stem and ``rgb_proj`` see a drifting scale (non-stationary output,
  S about 0.25); the thermal sensor warms up slowly and now and then shows hot
  pixels, which puts ``thermal_proj`` just under the default tolerance
  (S about 0.47: a tolerance of 0.45 flips it to static); after the
  LayerNorm, ``head.fc`` sees stationary data (S about 0.75).
- outlier: the thermal sensor has hot pixels now and then; the two
  hot-spot (Laplacian) filters of ``thermal_stem.conv`` turn them into rare,
  large spikes in 2 of the 8 channels that enter ``thermal_stem.relu``.
- input-weight equalization: ``rgb_stem.conv1`` (three balanced colour
  channels) is recommended; ``thermal_proj``, whose max-pooled input is
  dominated by the two hot-spot channels, is not.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.ao.quantization import DeQuantStub, MinMaxObserver, QConfig, QuantStub, default_weight_observer, prepare

DESCRIPTION = (
    "RGB + thermal conv/MLP classifier, torch.ao-prepared with per-tensor weights; exposure drift, "
    "thermal hot pixels and unbalanced ranges: exercises all four detectors"
)

IMAGE_SIZE = 16
NUM_CLASSES = 10

PER_TENSOR_QCONFIG = QConfig(
    activation=MinMaxObserver.with_args(dtype=torch.quint8),
    weight=default_weight_observer,  # per-tensor symmetric qint8
)


class RGBThermalClassifier(nn.Module):
    """Classify 4-band frames: channels 0-2 are RGB, channel 3 is thermal."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.quant = QuantStub()
        self.rgb_stem = nn.Sequential()
        self.rgb_stem.add_module("conv1", nn.Conv2d(3, 16, 3, padding=1, bias=False))
        self.rgb_stem.add_module("relu1", nn.ReLU())
        self.rgb_stem.add_module("conv2", nn.Conv2d(16, 16, 3, padding=1, stride=2, bias=False))
        self.rgb_stem.add_module("relu2", nn.ReLU())
        self.rgb_stem.add_module("pool", nn.AvgPool2d(2))  # 16x16 -> 8x8 -> 4x4
        self.rgb_stem.add_module("flatten", nn.Flatten())
        self.thermal_stem = nn.Sequential()
        self.thermal_stem.add_module("conv", nn.Conv2d(1, 8, 3, padding=1))
        self.thermal_stem.add_module("relu", nn.ReLU())
        self.thermal_stem.add_module("pool", nn.MaxPool2d(4))  # hot spots survive max pooling
        self.thermal_stem.add_module("flatten", nn.Flatten())
        self.rgb_proj = nn.Linear(16 * 4 * 4, 32)
        self.thermal_proj = nn.Linear(8 * 4 * 4, 32)
        self.head = nn.Sequential()
        self.head.add_module("norm", nn.LayerNorm(64))
        self.head.add_module("dropout", nn.Dropout(0.1))
        self.head.add_module("fc", nn.Linear(64, 64))
        self.head.add_module("relu", nn.ReLU())
        self.head.add_module("classifier", nn.Linear(64, num_classes))
        self.dequant = DeQuantStub()

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.quant(frames)
        rgb = self.rgb_proj(self.rgb_stem(x[:, :3]))
        thermal = self.thermal_proj(self.thermal_stem(x[:, 3:]))
        return self.dequant(self.head(torch.cat([rgb, thermal], dim=1)))


def _init_thermal_filters(conv: nn.Conv2d) -> None:
    """Six smoothing filters and two hot-spot (Laplacian) detectors."""
    with torch.no_grad():
        conv.weight.uniform_(0.06, 0.14)  # positive blurs: follow the temperature
        conv.bias.zero_()
        laplacian = torch.full((3, 3), -1.0 / 8.0)
        laplacian[1, 1] = 1.0
        for channel in (2, 5):
            conv.weight[channel, 0] = laplacian + 0.02 * conv.weight[channel, 0]


def build_model() -> nn.Module:
    """The prepared (observed, not converted) classifier, in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = RGBThermalClassifier()
        _init_thermal_filters(model.thermal_stem.conv)
        nn.init.zeros_(model.rgb_proj.bias)
    model.eval()
    model.qconfig = PER_TENSOR_QCONFIG
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization deprecation notices
        prepare(model, inplace=True)
    return model.eval()  # the observers prepare() inserted start in training mode


def _scenes(generator: torch.Generator, batch_size: int, channels: int) -> torch.Tensor:
    """Smooth random scenes in [0, 1]: coarse noise, bilinearly upsampled."""
    coarse = torch.rand(batch_size, channels, 4, 4, generator=generator)
    return F.interpolate(coarse, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)


def calibration_batches(num_batches: int = 24, batch_size: int = 16) -> list[torch.Tensor]:
    """Frames (batch, 4, 16, 16) from dawn to noon.

    RGB exposure grows geometrically from 0.02 to 1.0; the thermal band warms
    up linearly from 0.5 to 1.0; one batch in three carries three hot pixels
    (+10) in the thermal band.
    """
    generator = torch.Generator().manual_seed(20240601)
    batches = []
    for index in range(num_batches):
        progress = index / max(num_batches - 1, 1)
        exposure = 0.02 * 50.0**progress
        warm_up = 0.5 + 0.5 * progress
        rgb = exposure * _scenes(generator, batch_size, 3)
        thermal = warm_up * (0.5 + 0.5 * _scenes(generator, batch_size, 1))
        frames = torch.cat([rgb, thermal], dim=1)
        frames += 0.01 * torch.randn(frames.shape, generator=generator)
        if index % 3 == 1:
            sample, row, col = (
                torch.randint(0, size, (3,), generator=generator) for size in (batch_size, IMAGE_SIZE, IMAGE_SIZE)
            )
            frames[sample, 3, row, col] += 10.0
        batches.append(frames)
    return batches

"""A 1-D conv net over multichannel sensor signals, two of whose channels glitch.

Twelve sensor channels (accelerometer, gyroscope, ...) are sampled 128 times per
window. Channels 3 and 9 come from a flaky sensor: in every other batch a few
samples saturate at a large value (40, on signals of amplitude about 1). The
signals are dense (an offset sine plus noise), so each channel's 97.5th
percentile is well above zero, and the outlier detector flags exactly
channels 3 and 9 at the input of ``encoder.conv1`` (percentile ratio about 8.5,
threshold 3.5; the clean channels stay near 1.05). Channels further in, mixing
the glitches through the convolutions, may be flagged too.
"""

from __future__ import annotations

import math

import torch
from torch import nn

DESCRIPTION = (
    "1-D conv net over 12 sensor channels, 2 of which carry rare large glitches: "
    "exercises the outlier detector (channels 3 and 9 of encoder.conv1's input)"
)

NUM_CHANNELS = 12
WINDOW = 128
GLITCHY_CHANNELS = (3, 9)


class SensorClassifier(nn.Module):
    """(N, 12, 128) windows -> (N, 6) activity logits."""

    def __init__(self, num_classes: int = 6) -> None:
        super().__init__()
        self.encoder = nn.Sequential()
        self.encoder.add_module("conv1", nn.Conv1d(NUM_CHANNELS, 32, 5, padding=2))
        self.encoder.add_module("relu1", nn.ReLU())
        self.encoder.add_module("conv2", nn.Conv1d(32, 32, 5, stride=2, padding=2))
        self.encoder.add_module("relu2", nn.ReLU())
        self.encoder.add_module("pool", nn.AdaptiveAvgPool1d(1))
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(32, num_classes)

    def forward(self, signals: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.encoder(signals)))


def build_model() -> nn.Module:
    """The float classifier in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SensorClassifier()
    return model.eval()


def calibration_batches(num_batches: int = 16, batch_size: int = 32) -> list[torch.Tensor]:
    """Windows (32, 12, 128): 1.5 + sin(random frequency and phase) + noise; glitches in odd batches."""
    generator = torch.Generator().manual_seed(5)
    time = torch.arange(WINDOW, dtype=torch.float32) / WINDOW
    batches = []
    for index in range(num_batches):
        frequency = 1.0 + 4.0 * torch.rand(batch_size, NUM_CHANNELS, 1, generator=generator)
        phase = 2.0 * math.pi * torch.rand(batch_size, NUM_CHANNELS, 1, generator=generator)
        signals = 1.5 + torch.sin(2.0 * math.pi * frequency * time + phase)
        signals += 0.05 * torch.randn(signals.shape, generator=generator)
        if index % 2 == 1:
            for channel in GLITCHY_CHANNELS:
                sample = torch.randint(0, batch_size, (3,), generator=generator)
                step = torch.randint(0, WINDOW, (3,), generator=generator)
                signals[sample, channel, step] = 40.0
        batches.append(signals)
    return batches

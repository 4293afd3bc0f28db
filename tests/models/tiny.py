"""A tiny conv + MLP model: the smallest complete model file."""

import torch
from torch import nn


def build_model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 16), nn.ReLU(), nn.Linear(16, 4)
    ).eval()


def calibration_batches():
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(4, 3, 8, 8, generator=gen) * (1 + i) for i in range(6)]

"""A tiny MLP whose third calibration batch has the wrong width, so the model rejects it."""

import torch
from torch import nn


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()


def calibration_batches():
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(2, 4, generator=generator), torch.randn(2, 4, generator=generator), torch.randn(2, 5)]
